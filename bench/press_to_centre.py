"""Press to centre: the time from a press on the sim board to the event at a subscriber of the broker.

The whole path is real: the board's firmware under the MicroPython unix port
(glitch filter, journal), the UART wire on a pty at 115200 baud, the edge
daemon process (SQLite commit with ``synchronous=FULL``, then MQTT 5 QoS 1), a
real mosquitto on loopback, and the reference centre's subscriber.  The clock
starts at the press's first contact edge and stops when the centre's MQTT
thread has the event; both times come from this process's monotonic clock.

Every press is a new event: the first raises the alarm, the next ones while it
is latched are repeat presses (each journaled and reported); every
``--reset-every`` presses the key switch resets the post.  Every arrival counts
in the figures, however late; ``lost`` counts presses whose event never reached
the centre, ``unconfirmed`` those whose receipt never came back to the post;
``duplicates`` copies the centre dropped by event id.  Alongside the total,
``board_p50_ms`` (press to the board's console line) and ``pi_p50_ms`` (press to
the daemon's store) split where the time goes, and ``p99_receipt_ms`` is the
press to the centre's receipt back at the post (the event is then delivered:
the centre has committed it to its record and confirmed it).

    python bench/press_to_centre.py [--presses 200]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from alarmpost import events as ev
from edge_daemon.centre import CentreError, Message
from hw_sim.bench import BenchError
from hw_sim.mosquitto import Mosquitto
from hw_sim.uplinked import UplinkedPost, press_once


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(presses: int, reset_every: int) -> dict[str, object]:
    pressed: dict[int, tuple[float, float]] = {}  # board seq -> (press, board's console line), monotonic
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        post = UplinkedPost(Path(tmp), "127.0.0.1", broker.port)
        post.start()
        try:
            centre = post.centre()
            post.wait_online(centre)
            bench = post.bench
            wall_minus_mono = time.time() - time.monotonic()
            for index in range(presses):
                since = len(centre.received)
                t_press, logged = press_once(bench)
                pressed[logged.event.seq] = (t_press, logged.t)

                def is_this(m: Message, seq: int = logged.event.seq) -> bool:
                    return m.channel == "events" and m.payload["seq"] == seq and m.payload["source"] == "board"

                with contextlib.suppress(CentreError):  # paces the presses; a late event still counts below
                    centre.wait_for(is_this, 10, since=since)
                if (index + 1) % reset_every == 0:
                    mark = len(bench.logged)
                    bench.turn_key(hold_s=0.08)
                    bench.wait_event(ev.PANIC_RESET, since=mark)
            post.wait_delivered(centre, timeout=60)
            post.wait_confirmed(timeout=60)
            confirmed = post.confirmed_at()
        except BenchError:
            print(post.log_tail())
            raise
        finally:
            post.stop()
    arrivals = {m.payload["seq"]: m for m in centre.events if m.payload["source"] == "board"}
    totals, at_board, at_pi, receipts = [], [], [], []
    for seq, (t_press, t_board) in pressed.items():
        if seq in confirmed:
            receipts.append((confirmed[seq] - wall_minus_mono - t_press) * 1000)
        got = arrivals.get(seq)
        if got is None:
            continue
        totals.append((got.received - t_press) * 1000)
        at_board.append((t_board - t_press) * 1000)
        at_pi.append((_unix(got.payload["pi_time"]) - wall_minus_mono - t_press) * 1000)
    return {
        "benchmark": "press_to_centre",
        "presses": presses,
        "p50_ms": round(statistics.median(totals), 2),
        "p99_ms": round(percentile(totals, 0.99), 2),
        "max_ms": round(max(totals), 2),
        "board_p50_ms": round(statistics.median(at_board), 2),
        "pi_p50_ms": round(statistics.median(at_pi), 2),
        "p50_receipt_ms": round(statistics.median(receipts), 2),
        "p99_receipt_ms": round(percentile(receipts, 0.99), 2),
        "lost": len(set(pressed) - set(arrivals)),  # pressed, and never at the centre
        "unconfirmed": len(set(pressed) - set(confirmed)),  # at the post, no receipt from the centre
        "duplicates": centre.duplicates,
        "broker": "mosquitto",
    }


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--reset-every", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.presses, args.reset_every)))


if __name__ == "__main__":
    main()
