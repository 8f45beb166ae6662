"""Watchdog, power cuts and the flash journal, on the bench under real MicroPython."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from alarmpost import events as ev
from alarmpost import journaltools, patterns
from alarmpost.events import RECORD_SIZE
from hw_sim.bench import WDT_RESET, Bench
from tools.boards import board_variant


def test_hung_main_loop_resets_through_the_watchdog(bench: Bench) -> None:
    boot = bench.wait_event(ev.SYSTEM_RESET)
    assert boot.value == 1  # power on
    bench.hang()
    bench.wait_boot(2, timeout=5)
    assert bench.boots[-1][1] == WDT_RESET
    second = bench.wait_event(ev.SYSTEM_RESET, value=WDT_RESET)
    assert second.boot == boot.boot + 1
    assert second.seq > boot.seq


def test_watchdog_reset_keeps_the_alarm_latched(bench: Bench) -> None:
    t = bench.press()
    bench.wait_event(ev.PANIC)
    bench.hang()
    bench.wait_boot(2, timeout=5)
    t_boot = bench.boots[-1][0]
    assert t_boot > t
    bench.wait_output("siren", True, after=t_boot)
    assert bench.state == patterns.ALARM


def test_events_survive_power_cut_with_sequence_continuing(bench: Bench) -> None:
    bench.set_switch("tamper", True)
    bench.wait_event(ev.TAMPER, ev.NEW)
    bench.press()
    bench.wait_event(ev.PANIC)
    before = [x.event for x in bench.logged]
    bench.power_cut()
    kept = journaltools.read_events(str(bench.flash))
    assert kept == before
    bench.power_on()
    bench.wait_boot(2)
    after = bench.events()
    assert [e.seq for e in after] == list(range(1, len(after) + 1))


def _corrupt_tail(flash: str, how: str) -> None:
    """Leave what a cut in the middle of a record write leaves in the segment written last."""
    segments = [path for _, _, path in journaltools.segment_files(flash)]
    active = max(segments, key=lambda p: (journaltools.read_segment(p) or [ev.Event(0, 0, 0, 0, 0, 0)])[-1].seq)
    with open(active, "ab") as f:
        if how == "half":
            f.write(ev.Event(999, 1, 5, ev.PANIC, ev.NEW, ev.ZONE_BUTTON).pack()[: RECORD_SIZE // 2])
        else:
            record = bytearray(ev.Event(999, 1, 5, ev.PANIC, ev.NEW, ev.ZONE_BUTTON).pack())
            record[5] ^= 0x40  # one flipped bit: a record whose page was half programmed
            f.write(record)


def test_torn_journal_write_loses_and_corrupts_nothing(make_bench: Callable[..., Bench]) -> None:
    for how in ("half", "bad crc"):
        bench = make_bench()
        bench.press()
        bench.wait_event(ev.PANIC)
        committed = [x.event for x in bench.logged]
        bench.power_cut()
        _corrupt_tail(str(bench.flash), how)
        bench.power_on()
        bench.wait_boot(2)
        kept = journaltools.read_events(str(bench.flash))
        assert kept[: len(committed)] == committed, how
        assert [e.seq for e in kept] == list(range(1, len(kept) + 1)), how
        for _, _, path in journaltools.segment_files(str(bench.flash)):
            assert os.path.getsize(path) % RECORD_SIZE == 0, f"{how}: torn tail left in {path}"
        assert bench.state == patterns.ALARM  # the latch survived as well


def _set_tamper(bench: Bench, active: bool) -> None:
    mark = len(bench.logged)
    bench.set_switch("tamper", active)
    bench.wait_event(ev.TAMPER, ev.NEW if active else ev.RESTORE, since=mark)


def test_power_cuts_during_event_bursts_lose_nothing(make_bench: Callable[..., Bench]) -> None:
    """Cut the power at random moments while the board is writing events, many times.

    Segments of 8 events: a new segment is started every few events, so many cuts
    land in or next to one.  No Pi: nothing may be freed, and there is room for all.
    """
    rng = random.Random(7)
    bench = make_bench(config={"journal_records": 8, "switch_debounce_ms": 5})
    for cycle in range(8):
        for i in range(rng.randint(2, 6)):
            _set_tamper(bench, i % 2 == 0)
        if bench.events()[-1].qualifier == ev.NEW:
            _set_tamper(bench, False)
        deadline = time.monotonic() + rng.uniform(0.003, 0.009)  # the write follows the 5 ms debounce
        bench.set_switch("tamper", True)
        while time.monotonic() < deadline:
            time.sleep(0)  # cut at a random instant inside the next write
        bench.power_cut()
        printed = [x.event for x in bench.logged]
        kept = journaltools.read_events(str(bench.flash))
        newest = {e.seq: e for e in kept}
        # everything the board reported as committed is there: the Pi has stored none of it
        assert all(newest.get(e.seq) == e for e in printed), f"cycle {cycle}"
        assert [e.seq for e in kept] == list(range(1, kept[-1].seq + 1)), f"cycle {cycle}"
        mark = len(bench.logged)
        bench.power_on()
        bench.wait_boot(cycle + 2)
        bench.wait_event(ev.TAMPER, ev.NEW, since=mark)  # the loop is open at boot: reported
        _set_tamper(bench, False)
    seqs = [x.event.seq for x in bench.logged]
    assert len(seqs) == len(set(seqs))  # no sequence number used twice across the cuts


def test_journal_is_bounded_by_the_flash_the_board_gives_it(make_bench: Callable[..., Bench], tmp_path: Path) -> None:
    """No Pi ever stores anything: the journal grows to the board's journal_bytes and no further."""
    board = board_variant("sim", tmp_path, journal_bytes=6 * 256, fs_block_bytes=256)  # 5 segments of 8 events
    bench = make_bench(config={"journal_records": 8, "switch_debounce_ms": 5, "link_timeout_ms": 30000}, board=board)
    for i in range(80):
        _set_tamper(bench, i % 2 == 0)
    files = journaltools.segment_files(str(bench.flash))
    assert len(files) <= 5 + 1  # one more only for a moment, while a segment is rewritten
    assert all(os.path.getsize(path) <= 8 * RECORD_SIZE for _, _, path in files)
    kept = journaltools.read_events(str(bench.flash))
    assert len(kept) <= 5 * 8 < len(bench.logged)
    assert kept[-1] == bench.logged[-1].event  # the newest is always kept


def test_press_count_survives_a_power_cut(bench: Bench) -> None:
    for _ in range(2):
        mark = len(bench.inputs_seen)
        bench.press()
        bench.wait_input("button", True, since=mark)
        bench.release()
        bench.wait_input("button", False, since=mark)
    mark = len(bench.shown)
    bench.restart()
    bench.wait_boot(2)
    bench.wait_state(patterns.ALARM, since=mark)
    bench.turn_key()
    assert bench.wait_event(ev.PANIC_RESET).value == 2  # relearned from the journal, not lost with the RAM
