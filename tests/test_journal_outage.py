"""The journal through a Pi outage, on the bench under real MicroPython: kept, reported, delivered.

The boards here are the ``sim`` board with a small journal (segments of 8 events,
blocks of 256 bytes), so a few hundred tamper changes fill it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from alarmpost import events as ev
from alarmpost.journaltools import read_events, segment_files
from hw_sim.bench import Bench
from hw_sim.linked import EventLoad, PiProcess, linked_bench, toggle_tamper
from tools.boards import board_variant

from .conftest import require

RECORDS = 8
CONFIG = {"journal_records": RECORDS, "switch_debounce_ms": 5, "link_timeout_ms": 30000}


def small_board(folder: Path, segments: int) -> Path:
    """The sim board with room for ``segments`` segments of 8 events (one more block stays free for rewrites)."""
    return board_variant("sim", folder, journal_bytes=(segments + 1) * 256, fs_block_bytes=256)


def settled(bench: Bench) -> list[ev.Event]:
    """What the journal keeps, once the console has shown the newest of it."""
    kept = read_events(str(bench.flash))
    bench.wait_for(lambda: any(x.event.seq == kept[-1].seq for x in bench.logged), 5, "the console")
    return kept


def test_events_the_pi_has_not_stored_are_kept_while_there_is_room(
    make_bench: Callable[..., Bench], tmp_path: Path
) -> None:
    bench = make_bench(config=CONFIG, board=small_board(tmp_path, 20))  # 160 events
    toggle_tamper(bench, 120)  # no Pi: the two-segment journal kept the newest 8 to 16 of them
    kept = settled(bench)
    assert kept == [x.event for x in bench.logged]
    assert len(kept) == 121  # and the boot event
    assert not bench.events(ev.LOG_FULL) and not bench.events(ev.LOG_OVERFLOW)


def test_log_full_is_reported_once_at_90_percent(make_bench: Callable[..., Bench], tmp_path: Path) -> None:
    capacity = 20 * RECORDS
    bench = make_bench(config=CONFIG, board=small_board(tmp_path, 20))
    raised = 0
    while not bench.events(ev.LOG_FULL):
        toggle_tamper(bench, 1)
        raised += 1
        assert raised < capacity, "no 623 with the journal full"
    full = bench.wait_event(ev.LOG_FULL)
    before = [e for e in bench.events() if e.seq < full.seq]  # all kept: nothing had to go yet
    assert len(before) * 100 // capacity >= 90 > (len(before) - 1) * 100 // capacity  # at the event that made 90 %
    assert (full.qualifier, full.zone, full.value) == (ev.NEW, ev.ZONE_SYSTEM, 90)
    toggle_tamper(bench, 8)  # fuller still, not yet overflowing
    assert len(bench.events(ev.LOG_FULL)) == 1
    assert not bench.events(ev.LOG_OVERFLOW)


def test_overflow_folds_reports_624_and_the_latest_state_survives(
    make_bench: Callable[..., Bench], tmp_path: Path
) -> None:
    bench = make_bench(config=CONFIG, board=small_board(tmp_path, 10))  # 80 events
    made = toggle_tamper(bench, 200)
    overflow = bench.wait_event(ev.LOG_OVERFLOW, ev.NEW)
    assert overflow.value >= 1
    assert bench.events(ev.LOG_FULL)[0].seq < overflow.seq  # 623 first
    counts = [e.value for e in bench.events(ev.LOG_OVERFLOW)]
    assert counts == sorted(counts) and counts[-1] > counts[0]  # the latest 624 carries the count so far
    kept = settled(bench)
    assert len(kept) <= 10 * RECORDS < len(bench.logged)
    assert made[-1] in kept  # the tamper loop's latest state
    opened = [e for e in made if e.qualifier == ev.NEW]
    closed = [e for e in made if e.qualifier == ev.RESTORE]
    assert opened[0] in kept and closed[0] in kept  # and when it first opened and closed
    assert opened[-1] in kept and closed[-1] in kept
    assert len(segment_files(str(bench.flash))) <= 10 + 1


def test_events_after_an_outage_reach_the_pi_past_the_holes(tmp_path: Path) -> None:
    """The Pi is killed while the board overflows its journal; back, it gets every event kept, in order."""
    require("micropython")
    bench = linked_bench(tmp_path, board=small_board(tmp_path, 10), config={"journal_records": RECORDS})
    assert bench.wire is not None
    pi = PiProcess(bench.wire.path, tmp_path)
    try:
        pi.start()
        toggle_tamper(bench, 4)
        pi.wait_stored([x.event.seq for x in bench.logged])
        pi.kill()
        made = toggle_tamper(bench, 240)  # three times what the journal holds
        bench.wait_event(ev.LOG_OVERFLOW, ev.NEW)
        kept = settled(bench)
        mark = len(bench.logged)
        pi.start()
        pi.wait_stored([e.seq for e in kept], timeout=60)
        cleared = bench.wait_event(ev.LOG_FULL, ev.RESTORE, since=mark, timeout=10)
        total = bench.wait_event(ev.LOG_OVERFLOW, ev.RESTORE, since=mark, timeout=10)
        pi.wait_stored([cleared.seq, total.seq])
        stored = pi.seqs()
        assert stored == sorted(set(stored)), "stored out of order or twice"
        board = {x.event.seq: x.event for x in bench.logged}
        for seq, code, qualifier, zone in pi.rows():
            assert (board[seq].code, board[seq].qualifier, board[seq].zone) == (code, qualifier, zone)
        # what the board raised up to its overflow report (later events may still be on their way)
        lost = {seq for seq in board if seq <= total.seq} - set(stored)
        assert lost and max(lost) < made[-1].seq  # the holes were passed, up to the latest state
        assert made[-1].seq in stored
        # The count the centre gets covers what it never saw (it may count an event the Pi stored
        # but never acknowledged before it was killed: the board could not know it was safe).
        assert len(lost) <= total.value <= len(board)
        log = (tmp_path / f"daemon{pi.starts}.log").read_text()
        assert "events lost before they could be sent" in log
        # what the Pi stored is freed: back to the newest segment of each ring
        bench.wait_for(lambda: len(segment_files(str(bench.flash))) <= 3, 10, "the journal to shrink")
    finally:
        pi.stop()
        bench.stop()


@pytest.mark.parametrize("per_second", [5.0])
def test_event_load_holds_its_rate(make_bench: Callable[..., Bench], per_second: float) -> None:
    bench = make_bench()  # the default 50 ms switch debounce
    load = EventLoad(bench, per_second).start()
    deadline = time.monotonic() + 3.0
    bench.wait_for(lambda: time.monotonic() >= deadline and len(load.events) >= 15, 10, "15 load events")
    events = load.stop()
    assert abs(load.rate - per_second) <= 0.5, load.rate
    assert [e.code for e in events] == [ev.TAMPER] * len(events)
    assert [e.qualifier for e in events][:2] == [ev.NEW, ev.RESTORE]
