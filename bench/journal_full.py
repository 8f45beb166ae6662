"""Journal full: a board's journal filled to capacity, then opened, read and written, under the board's heap limit.

The journal gets the flash the board file gives it (``journal_bytes``, in blocks of
``fs_block_bytes``) in segments of the default ``journal_records``.  A MicroPython
unix-port process with the board's ``heap_bytes`` (``-X heapsize``) fills it with
an outage's mix of events (tamper changes, presses, supply), none acknowledged,
up to the event that would need room.  Fresh processes then measure, on that full
journal:

* ``open_ms``: opening it as the firmware does at boot (index, checks, the newest
  segment of each ring read through, the boot-time visit); ``repair_ms``: the same
  with a torn record at the end of each ring's newest segment, rewritten away;
* ``open_heap_bytes``: the heap the open needs at its peak: the least ``-X heapsize``
  with which a process opens the journal, less the least with which it only imports
  the modules (found by bisection to 256 bytes); ``index_heap_bytes``: what stays
  allocated after it (the index);
* ``events_after_us``: ``events_after(seq, 8)`` for random seqs (what the link asks
  when the Pi catches up);
* ``append_us`` while filling, and ``append_full_ms`` once full (each event then
  may have to fold or drop to make room).

Then the firmware itself boots on the bench with that flash (``firmware_boot_ms``,
power on to ``UP``, against ``firmware_boot_empty_ms`` with an empty journal) and
reports its live heap (``firmware_heap_live``, the simulated ``machine`` not
counted).  A board whose heap cannot hold the firmware on the 64-bit unix port
(``esp32_devkitc``: freeze the package there, see docs/benchmarks.md) gets null.

The unix port runs on the host's filesystem, so flash timings on a board differ;
the counts of reads and files are the same.

    python bench/journal_full.py [--board rpi_pico] [--samples 2000]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from alarmpost import settings
from hw_sim.bench import Bench, BenchError
from hw_sim.paths import tool
from tools.boards import load_board
from tools.build import build

_COMMON = """
import gc, json, os, sys, time
from alarmpost import events as ev
from alarmpost.journal import Journal, klass
folder, records, journal_bytes, block_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
MIX = ("open", "close", "open", "close", "panic", "open", "close", "ac", "open", "close", "ac back", "test")

def event(seq):
    kind = MIX[seq % len(MIX)]
    if kind == "panic":
        return ev.Event(seq, 7, seq * 200, ev.PANIC, ev.NEW, ev.ZONE_BUTTON, ev.PRESS_REPEAT)
    if kind in ("open", "close"):
        return ev.Event(seq, 7, seq * 200, ev.TAMPER, ev.NEW if kind == "open" else ev.RESTORE, ev.ZONE_TAMPER)
    if kind == "test":
        return ev.Event(seq, 7, seq * 200, ev.MANUAL_TEST, ev.NEW, ev.ZONE_KEY_SWITCH)
    return ev.Event(seq, 7, seq * 200, ev.AC_LOSS, ev.NEW if kind == "ac" else ev.RESTORE, ev.ZONE_SUPPLY, 1250)

def journal():
    return Journal(folder, records, journal_bytes, block_bytes)

class Spread:
    # every stride-th time in a list allocated once, and the maximum of all: no heap in proportion to the journal
    def __init__(self, expected):
        self.stride = max(1, expected // 500)
        self.kept = [0] * 500
        self.n = self.used = self.top = 0

    def add(self, us):
        self.top = max(self.top, us)
        if self.n % self.stride == 0 and self.used < 500:
            self.kept[self.used] = us
            self.used += 1
        self.n += 1

    def summary(self):
        values = self.kept
        del values[self.used :]
        values.sort()  # in place: no second list
        return {"p50": values[len(values) // 2], "p99": values[len(values) * 99 // 100], "max": self.top}

"""

_FILL = (
    _COMMON
    + """
j = journal()
j.open()
seq = 0
times = Spread(j.capacity())
while True:
    e = event(seq + 1)
    if j._full(klass(e)) and j.segments() >= j.max_segments:
        break  # the next event needs room: full
    seq += 1
    gc.collect() if seq % 500 == 0 else None
    t = time.ticks_us()
    j.append(e)
    times.add(time.ticks_diff(time.ticks_us(), t))
print(json.dumps({"kept": seq, "segments": j.segments(), "max_segments": j.max_segments,
    "capacity": j.capacity(), "fill_pct": j.fill_pct(), "dropped": j.dropped, "append_us": times.summary()}))
"""
)

_OPEN = (
    _COMMON
    + """
torn = sys.argv[5] == "torn"
if torn:  # what a cut during a record write leaves at the end of each ring's newest segment
    newest = [0, 0, 0]
    for entry in os.ilistdir(folder + "/journal"):
        ring, _, n = entry[0].partition(".")
        newest[int(ring)] = max(newest[int(ring)], int(n))
    for ring in range(3):
        with open(folder + "/journal/%d.%d" % (ring, newest[ring]), "ab") as f:
            f.write(event(1).pack()[:9])
visited = [0]

def visit(e):
    visited[0] += 1

gc.collect()
base = gc.mem_alloc()
t = time.ticks_us()
j = journal()
j.open(visit)
took = time.ticks_diff(time.ticks_us(), t)
gc.collect()
live = gc.mem_alloc() - base
result = {"open_us": took, "index_heap_bytes": live, "visited": visited[0], "last_seq": j.last.seq}
if not torn:
    import random
    random.seed(1)
    after = Spread(0)
    for _ in range(int(sys.argv[5])):
        start = random.getrandbits(30) % (j.last.seq + 1)
        t = time.ticks_us()
        found = j.events_after(start, 8)
        after.add(time.ticks_diff(time.ticks_us(), t))
        assert found and found[0].seq > start or start >= j.last.seq
    result["events_after_us"] = after.summary()
    full = Spread(0)
    for seq in range(j.last.seq + 1, j.last.seq + 1 + 6 * records):
        gc.collect() if seq % 100 == 0 else None
        t = time.ticks_us()
        j.append(event(seq))
        full.add(time.ticks_diff(time.ticks_us(), t))
    result["append_full_us"] = full.summary()
    result["dropped_while_full"] = j.dropped
print(json.dumps(result))
"""
)


# Opening, for the search of the least heap it needs; "import" stops before it, for the baseline.
_NEED = (
    _COMMON
    + """
if sys.argv[5] != "import":
    journal().open(lambda e: None)
print(json.dumps({"ok": 1}))
"""
)


def _least_heap(firmware: Path, flash: Path, sizes: tuple[int, int, int], what: str) -> int:
    """The smallest ``-X heapsize`` (to 256 bytes) with which the script runs: what it needs at its peak."""
    low, high = 8192, 1 << 22
    while high - low > 256:
        mid = (low + high) // 2
        try:
            _micropython(_NEED, mid, firmware, flash, *sizes, what)
            high = mid
        except RuntimeError:
            low = mid
    return high


def _micropython(script: str, heap: int, firmware: Path, *args: object) -> dict[str, Any]:
    done = subprocess.run(
        [tool("micropython"), "-X", f"heapsize={heap}", "-c", script, *[str(a) for a in args]],
        env=dict(os.environ, MICROPYPATH=f".frozen:{firmware}"),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"micropython failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _firmware_boot(board: str, flash: Path, runs: int = 3) -> tuple[float, int]:
    """(median ms from power on to UP, live heap) for the firmware on a copy of ``flash``; BenchError if it fails."""
    times = []
    live = 0
    for run in range(runs):
        copy = flash.with_name(f"{flash.name}-boot{run}")
        shutil.copytree(flash, copy)  # each boot writes its 305 event: start each from the same flash
        bench = Bench(board=board, flash=copy, seed=1)
        try:
            bench.flash_firmware()  # not timed: the build
            start = time.monotonic()
            bench.power_on()
            bench.wait_boot(1, timeout=60)
            times.append((time.monotonic() - start) * 1000)
            live = max(live, bench.heap_stats()[0])
        finally:
            bench.stop()
    return sorted(times)[runs // 2], live


def run(board: str, samples: int) -> dict[str, object]:
    values = load_board(board)
    records = next(default for name, _, default, _, _ in settings.config_fields() if name == "journal_records")
    heap = values["heap_bytes"]
    sizes = (records, values["journal_bytes"], values["fs_block_bytes"])
    result: dict[str, object] = {
        "benchmark": "journal_full",
        "board": values["name"],
        "journal_bytes": values["journal_bytes"],
        "fs_block_bytes": values["fs_block_bytes"],
        "records_per_segment": records,
        "heap_limit": heap,
    }
    with tempfile.TemporaryDirectory(prefix="alarmpost-journal-") as tmp:
        firmware = Path(tmp, "firmware")
        build(board, firmware)
        flash = Path(tmp, "flash")
        flash.mkdir()
        t = time.monotonic()
        filled = _micropython(_FILL, heap, firmware, flash, *sizes)
        fill_s = time.monotonic() - t
        result.update(
            kept=filled["kept"],
            segments=filled["segments"],
            capacity=filled["capacity"],
            fill_pct=filled["fill_pct"],
            fill_s=round(fill_s, 1),
            append_us=filled["append_us"],
        )
        torn = Path(tmp, "torn")
        shutil.copytree(flash, torn)
        booted = Path(tmp, "booted")
        shutil.copytree(flash, booted)  # before anything below opens (and changes) the full journal
        opened = _micropython(_OPEN, heap, firmware, flash, *sizes, samples)
        repaired = _micropython(_OPEN, heap, firmware, torn, *sizes, "torn")
        baseline = _least_heap(firmware, flash, sizes, "import")
        result.update(
            open_ms=round(opened["open_us"] / 1000, 2),
            repair_ms=round(repaired["open_us"] / 1000, 2),
            open_heap_bytes=_least_heap(firmware, flash, sizes, "open") - baseline,
            index_heap_bytes=opened["index_heap_bytes"],
            visited_at_open=opened["visited"],
            events_after_us=opened["events_after_us"],
            append_full_ms={k: round(v / 1000, 2) for k, v in opened["append_full_us"].items()},
            dropped_while_full=opened["dropped_while_full"],
        )
        empty = Path(tmp, "empty")
        empty.mkdir()
        try:
            result["firmware_boot_empty_ms"] = round(_firmware_boot(board, empty)[0], 1)
            took, live = _firmware_boot(board, booted)
            result["firmware_boot_ms"] = round(took, 1)
            result["firmware_heap_live"] = live
        except BenchError as exc:
            result["firmware_boot_empty_ms"] = result["firmware_boot_ms"] = result["firmware_heap_live"] = None
            result["firmware_note"] = str(exc).splitlines()[-1][:200]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="rpi_pico")
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(run(args.board, args.samples)))


if __name__ == "__main__":
    main()
