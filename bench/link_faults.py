"""Link faults: events from the sim board to the Pi's store through a faulty wire.

Two runs, each with a fresh board and a real edge daemon process on the bench's
pty at 115200 baud (bytes paced at ten bit times each):

* fault-free: ``--clean`` events (default 300); the time from the board's
  console line for an event to its commit in the daemon's SQLite store gives
  ``p50_event_ms`` / ``p99_event_ms``;
* faulty: ``--events`` events (default 1000) with a bit-error rate of 1e-3 in
  both directions, the board reset every ``--reset-every`` events and the
  daemon killed (SIGKILL) and restarted every ``--kill-every`` events.

Events are tamper-loop changes (each one a journaled event), 20 a second.  ``lost`` counts
events the board committed that never reached the store; ``duplicates_passed_on``
counts store rows for an event already stored.

    python bench/link_faults.py [--events 1000] [--clean 300]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from hw_sim.linked import PiProcess, linked_bench, toggle_tamper

RATE = 20  # events a second: a storm far beyond a real post, which sees a few an hour


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stored_times(db: Path) -> dict[int, float]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT seq, received_at FROM events WHERE source = 'board'").fetchall()
    return {seq: at for seq, at in rows}


def clean_run(folder: Path, count: int) -> dict[str, float]:
    bench = linked_bench(folder)
    assert bench.wire is not None
    pi = PiProcess(bench.wire.path, folder)
    pi.start()
    try:
        toggle_tamper(bench, 1)
        pi.wait_stored([x.event.seq for x in bench.logged])  # the link is up
        start = len(bench.logged)
        toggle_tamper(bench, count, RATE)
        measured = bench.logged[start:]
        pi.wait_stored([x.event.seq for x in measured])
        wall_minus_mono = time.time() - time.monotonic()
        stored = stored_times(pi.db)
        latencies = [(stored[x.event.seq] - wall_minus_mono - x.t) * 1000 for x in measured]
    finally:
        pi.stop()
        bench.stop()
    return {
        "clean_events": len(latencies),
        "p50_event_ms": round(percentile(latencies, 0.5), 2),
        "p99_event_ms": round(percentile(latencies, 0.99), 2),
        "max_event_ms": round(max(latencies), 2),
    }


def faulty_run(folder: Path, count: int, reset_every: int, kill_every: int) -> dict[str, int]:
    bench = linked_bench(folder, seed=2)
    assert bench.wire is not None
    bench.wire.bit_error_rate = 1e-3
    pi = PiProcess(bench.wire.path, folder)
    pi.start()
    resets = kills = made = 0
    try:
        while made < count:
            batch = min(25, count - made)
            toggle_tamper(bench, batch, RATE)
            made += batch
            if made % reset_every < batch:
                bench.restart()
                resets += 1
                bench.wait_boot(resets + 1)
            if made % kill_every < batch:
                pi.kill()
                kills += 1
                toggle_tamper(bench, 5, RATE)
                made += 5
                pi.start()
        committed = sorted({x.event.seq for x in bench.logged})
        try:
            pi.wait_stored(committed, timeout=60)
        except Exception:  # noqa: BLE001 - counted below as lost
            pass
        with sqlite3.connect(f"file:{pi.db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT seq FROM events WHERE source = 'board'").fetchall()
    finally:
        pi.stop()
        bench.stop()
    stored = [seq for (seq,) in rows]
    return {
        "events": len(committed),
        "delivered": len(set(committed) & set(stored)),
        "lost": len(set(committed) - set(stored)),
        "duplicates_passed_on": len(stored) - len(set(stored)),
        "faults": bench.wire.faults + resets + kills,
        "bit_errors": bench.wire.flipped_bits,
        "board_resets": resets,
        "daemon_kills": kills,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--clean", type=int, default=300)
    parser.add_argument("--reset-every", type=int, default=150)
    parser.add_argument("--kill-every", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alarmpost-link-") as tmp:
        clean_dir, faulty_dir = Path(tmp, "clean"), Path(tmp, "faulty")
        clean_dir.mkdir()
        faulty_dir.mkdir()
        result: dict[str, object] = {"benchmark": "link_faults", "baud": 115200}
        result.update(faulty_run(faulty_dir, args.events, args.reset_every, args.kill_every))
        result.update(clean_run(clean_dir, args.clean))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
