"""Uplink faults: a stream of events from the sim board to the centre while the uplink is broken again and again.

A real mosquitto runs inside a network namespace reached over a veth pair (the
post's "cable" to the broker); the edge daemon and the reference centre connect
to it through that cable.  While the board raises events (tamper-loop changes at
``--rate`` a second, and button presses), faults come one after another, every
``--every`` seconds, in turn:

* ``broker_kill``: mosquitto is SIGKILLed (no persistence: what it held is gone)
  and started again a second later;
* ``daemon_kill``: the edge daemon is SIGKILLed and started again at once;
* ``network_cut``: the cable is cut (packets dropped, no RST) for 2 s, or for 9 s
  every second time so that the keepalive ends the connection.

``events`` counts what the board raised; ``received`` the distinct ones at the
centre; ``lost`` the difference; ``confirmed_by_centre`` the board's events whose
receipt from the centre reached the post's store (delivery, as the post counts
it); ``duplicates`` the copies the centre dropped by event id; ``replays`` how
often the centre asked a post to replay a gap.  Without network namespaces (not
root) the cuts are left out and ``network_cuts`` is 0, except under
``ALARMPOST_STRICT=1``, where that is an error.

``--runs N`` repeats the whole run N times (a fresh broker, post and centre each
time) and prints the totals, with each run's figures under ``per_run``.  Exits 1
when any run lost an event or left one unconfirmed.

    python bench/uplink_faults.py [--runs 1] [--events 400] [--rate 8] [--every 4]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from hw_sim import netns
from hw_sim.linked import toggle_tamper
from hw_sim.mosquitto import Mosquitto
from hw_sim.netns import NetnsLink
from hw_sim.uplinked import UplinkedPost, press_burst


@contextlib.contextmanager
def cable() -> Iterator[NetnsLink | None]:
    why = netns.why_unavailable()
    if why:
        if os.environ.get("ALARMPOST_STRICT") == "1":
            raise SystemExit(f"uplink_faults: no network cuts possible: {why} (ALARMPOST_STRICT=1)")
        print(f"uplink_faults: network cuts left out: {why}", file=sys.stderr)
        yield None
        return
    with NetnsLink() as link:
        yield link


def raise_events(post: UplinkedPost, count: int, rate: float) -> None:
    """``count`` tamper changes at ``rate`` a second, with a few presses among them."""
    done = 0
    while done < count:
        batch = min(20, count - done)
        toggle_tamper(post.bench, batch, rate)
        press_burst(post.bench, 1)
        done += batch + 1


def inject(kind: str, round_: int, post: UplinkedPost, broker: Mosquitto, link: NetnsLink | None) -> None:
    if kind == "broker_kill":
        broker.kill()
        time.sleep(1.0)  # the broker stays down a moment (a fault's duration, not a wait for a result)
        broker.start()
    elif kind == "daemon_kill":
        post.pi.kill()
        post.pi.start()
    elif kind == "network_cut" and link is not None:
        link.cut()
        time.sleep(9.0 if round_ % 2 else 2.0)  # the cut's duration
        link.restore()


def run(events: int, rate: float, every: float) -> dict[str, object]:
    faults: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp, cable() as link:
        host = link.inner_ip if link is not None else "127.0.0.1"
        names = link.name if link is not None else None
        with Mosquitto(Path(tmp) / "broker", host=host, netns=names) as broker:
            post = UplinkedPost(Path(tmp), broker.host, broker.port)
            post.start()
            try:
                centre = post.centre()
                post.wait_online(centre)
                load = threading.Thread(target=raise_events, args=(post, events, rate))
                load.start()
                kinds = ["broker_kill", "daemon_kill"] + (["network_cut"] if link is not None else [])
                round_ = 0
                while load.is_alive():
                    load.join(every)
                    if load.is_alive():
                        kind = kinds[round_ % len(kinds)]
                        inject(kind, round_ // len(kinds), post, broker, link)
                        faults[kind] += 1
                        round_ += 1
                missing = post.wait_delivered(centre, timeout=90)
                unconfirmed = post.wait_confirmed(timeout=60)
                raised = len(post.board_seqs())
                received = len(set(post.centre_seqs(centre)))
            finally:
                post.stop()
    return {
        "benchmark": "uplink_faults",
        "events": raised,
        "received": received,
        "lost": len(missing),
        "missing_seqs": missing[:20],  # the board's sequence numbers that never reached the centre
        "confirmed_by_centre": raised - len(unconfirmed),
        "unconfirmed_seqs": unconfirmed[:20],
        "duplicates": centre.duplicates,
        "replays": centre.replays_asked,
        "faults": sum(faults.values()),
        "broker_kills": faults["broker_kill"],
        "daemon_kills": faults["daemon_kill"],
        "network_cuts": faults["network_cut"],
        "contract_violations": len(centre.invalid),
    }


TOTALS = (
    "events",
    "received",
    "lost",
    "confirmed_by_centre",
    "duplicates",
    "replays",
    "faults",
    "broker_kills",
    "daemon_kills",
    "network_cuts",
    "contract_violations",
)


def totals(runs: list[dict[str, object]]) -> dict[str, object]:
    summed: dict[str, object] = {"benchmark": "uplink_faults", "runs": len(runs)}
    for key in TOTALS:
        summed[key] = sum(int(str(r[key])) for r in runs)
    summed["runs_with_loss"] = sum(1 for r in runs if r["lost"] or r["confirmed_by_centre"] != r["events"])
    summed["per_run"] = [{k: v for k, v in r.items() if k != "benchmark"} for r in runs]
    return summed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--every", type=float, default=4.0)
    args = parser.parse_args()
    runs = []
    for index in range(args.runs):
        runs.append(run(args.events, args.rate, args.every))
        if args.runs > 1:
            print(json.dumps(dict(runs[-1], run=index + 1)), flush=True)  # progress; the totals come last
    summary = totals(runs)
    print(json.dumps(summary))
    raise SystemExit(1 if summary["runs_with_loss"] else 0)  # one loss in any run fails the benchmark


if __name__ == "__main__":
    main()
