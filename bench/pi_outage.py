"""Pi outage: the Pi's daemon down for a minute while the board keeps raising events; nothing may be lost.

A Pi reboots in 30-60 s.  Meanwhile the board goes on: here tamper-loop changes at
``--rate`` a second (as when someone forces the housing), with a button press
among every 20 of them.  The board's journal must keep every event the Pi has not
stored until the Pi is back and has them; the Pi then sends them to the centre,
whose receipts close them.  The whole path is real: firmware under the MicroPython
unix port with the board's own journal size, the UART wire on a pty, the daemon
process (SIGKILLed, started again after ``--outage-s``), mosquitto and the
reference centre recording to SQLite.

``events`` counts what the board raised; ``stored`` the distinct ones in the Pi's
store; ``lost`` the ones that never reached the centre; ``confirmed_by_centre``
those whose receipt reached the post.  ``panics``/``panics_lost`` the same for
presses, and ``log_full_reported``/``log_overflow_reported`` whether the centre got
Contact ID 623 (journal 90 % full) and 624 (journal overflow).

Exits 1 when a panic was lost, or any event without Contact ID 624 reaching the centre.

``--board`` picks the board file, whose ``journal_bytes`` sets the journal's size;
``--journal-bytes`` and ``--fs-block-bytes`` override them, and ``--config KEY=VALUE``
changes a firmware setting, for a deliberately tiny journal that must overflow::

    python bench/pi_outage.py [--outage-s 60] [--rate 5] [--board rpi_pico]
    python bench/pi_outage.py --board sim --journal-bytes 2816 --fs-block-bytes 256 --config journal_records=8

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from alarmpost import events as ev
from hw_sim.bench import Bench
from hw_sim.linked import toggle_tamper
from hw_sim.mosquitto import Mosquitto
from hw_sim.uplinked import UplinkedPost, press_burst
from tools.boards import board_variant

WARM_UP_S = 5.0  # events flowing normally before the daemon goes
AFTER_S = 10.0  # and after it is back


def raise_events(post: UplinkedPost, seconds: float, rate: float) -> None:
    """Tamper changes at ``rate`` a second for ``seconds``, a press after every 20."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        toggle_tamper(post.bench, 20, rate)
        press_burst(post.bench, 1)


def settle(post: UplinkedPost, timeout: float) -> None:
    """Wait until the Pi holds the board's newest event and the centre has confirmed all the Pi holds."""
    deadline = time.monotonic() + timeout
    newest = max(post.board_seqs())
    while time.monotonic() < deadline:
        stored = post.pi.seqs()
        if stored and max(stored) >= newest and not post.unconfirmed_seqs():
            return
        time.sleep(0.2)  # polling another process's store


def run(
    outage_s: float, rate: float, board: str, config: dict[str, Any], board_fields: dict[str, int]
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        settings = {"switch_debounce_ms": 5, "link_timeout_ms": 2500, **config}
        board_file = str(board_variant(board, Path(tmp), **board_fields)) if board_fields else board
        bench = Bench(board=board_file, config=settings, flash=Path(tmp) / "flash", seed=1, wire=True)
        bench.start()
        bench.wait_boot(1)
        post = UplinkedPost(Path(tmp), broker.host, broker.port, bench=bench)
        post.start()
        try:
            centre = post.centre()
            post.wait_online(centre)
            load = threading.Thread(target=raise_events, args=(post, WARM_UP_S + outage_s + AFTER_S, rate))
            load.start()
            time.sleep(WARM_UP_S)  # the load runs; this is the outage's start time, not a wait for a result
            post.pi.kill()
            down_at = time.monotonic()
            time.sleep(outage_s)  # the outage's length
            post.pi.start()
            outage = time.monotonic() - down_at
            load.join()
            settle(post, timeout=120)
            raised = post.board_seqs()
            stored = set(post.pi.seqs())
            at_centre = set(post.centre_seqs(centre))
            confirmed = set(post.confirmed_at())
            panics = {e.seq for e in bench.events(ev.PANIC)}
            codes = {m.payload["code"] for m in centre.events}
        finally:
            post.stop()
    return {
        "benchmark": "pi_outage",
        "board": board,
        "board_changes": board_fields,
        "config": config,
        "outage_s": round(outage, 1),
        "rate": rate,
        "events": len(raised),
        "stored": len(stored & set(raised)),
        "lost": len(set(raised) - at_centre),
        "lost_seqs": sorted(set(raised) - at_centre)[:20],
        "confirmed_by_centre": len(confirmed & set(raised)),
        "panics": len(panics),
        "panics_lost": len(panics - at_centre),
        "log_full_reported": ev.LOG_FULL in codes,
        "log_overflow_reported": ev.LOG_OVERFLOW in codes,
        "duplicates": centre.duplicates,
    }


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--board", default="rpi_pico")
    parser.add_argument("--journal-bytes", type=int, help="flash for the journal (default: the board file's)")
    parser.add_argument("--fs-block-bytes", type=int, help="the flash's block size (default: the board file's)")
    parser.add_argument("--config", type=_setting, action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    fields = {"journal_bytes": args.journal_bytes, "fs_block_bytes": args.fs_block_bytes}
    board_fields = {key: value for key, value in fields.items() if value is not None}
    result = run(args.outage_s, args.rate, args.board, dict(args.config), board_fields)
    print(json.dumps(result))
    # The promise: no panic lost, and nothing lost at all unless the journal overflowed and said so.
    kept = result["panics_lost"] == 0 and (result["lost"] == 0 or result["log_overflow_reported"] is True)
    raise SystemExit(0 if kept else 1)


if __name__ == "__main__":
    main()
