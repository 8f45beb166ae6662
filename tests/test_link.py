"""The board-Pi link under faults: every event in the Pi's store exactly once, in order."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from alarmpost import codec
from alarmpost import events as ev
from hw_sim.bench import Bench
from hw_sim.linked import PiProcess, linked_bench, toggle_tamper

from .conftest import require


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    require("micropython")
    bench = linked_bench(tmp_path)
    assert bench.wire is not None
    pi = PiProcess(bench.wire.path, tmp_path)
    pi.start()
    yield bench, pi
    pi.stop()
    bench.stop()


def board_seqs(bench: Bench) -> list[int]:
    return [x.event.seq for x in bench.logged]


def assert_exactly_once(bench: Bench, pi: PiProcess) -> None:
    expected = sorted(set(board_seqs(bench)))
    stored = pi.wait_stored(expected)
    assert stored == list(range(1, len(stored) + 1)), "stored out of order, twice or with a gap"
    assert stored[: len(expected)] == expected
    board = {x.event.seq: x.event for x in bench.logged}
    for seq, code, qualifier, zone in pi.rows():
        if seq in board:
            e = board[seq]
            assert (e.code, e.qualifier, e.zone) == (code, qualifier, zone)


def test_events_reach_the_store_in_order(rig) -> None:  # type: ignore[no-untyped-def]
    bench, pi = rig
    toggle_tamper(bench, 10)
    bench.press()
    bench.wait_event(ev.PANIC)
    assert_exactly_once(bench, pi)
    assert pi.rows()[-1][1] == ev.PANIC


def test_bit_errors_drops_and_duplicates(rig) -> None:  # type: ignore[no-untyped-def]
    bench, pi = rig
    wire = bench.wire
    wire.bit_error_rate = 2e-3
    wire.drop_rate = 2e-3
    wire.duplicate_rate = 2e-3
    toggle_tamper(bench, 60)
    assert_exactly_once(bench, pi)
    assert wire.flipped_bits and wire.dropped and wire.duplicated


def test_uart_cut_is_detected_by_both_sides_and_events_follow(rig) -> None:  # type: ignore[no-untyped-def]
    bench, pi = rig
    toggle_tamper(bench, 2)
    assert_exactly_once(bench, pi)
    mark = len(bench.logged)
    cut_at = time.monotonic()
    bench.wire.cut()
    lost = bench.wait_event(ev.COMM_TROUBLE, ev.NEW, zone=ev.ZONE_LINK, since=mark, timeout=5)
    noticed = next(x.t for x in bench.logged if x.event == lost)
    assert noticed - cut_at <= 3.0  # the board shows a lost link within 3 s
    toggle_tamper(bench, 5)  # raised while the wire is cut: kept in the board's journal
    deadline = time.monotonic() + 5
    while not any(r[1] == ev.COMM_TROUBLE and r[2] == ev.NEW for r in pi.rows("daemon")):
        assert time.monotonic() < deadline, "the Pi did not notice the lost link"
        time.sleep(0.02)  # polling another process's store
    bench.wire.mend()
    bench.wait_event(ev.COMM_TROUBLE, ev.RESTORE, zone=ev.ZONE_LINK, since=mark)
    assert_exactly_once(bench, pi)
    stored_codes = [(r[1], r[2]) for r in pi.rows()]
    assert (ev.COMM_TROUBLE, ev.NEW) in stored_codes and (ev.COMM_TROUBLE, ev.RESTORE) in stored_codes


def test_board_reset_in_the_middle_of_frames(rig) -> None:  # type: ignore[no-untyped-def]
    bench, pi = rig
    rng = random.Random(3)
    for boot in range(2, 6):
        toggle_tamper(bench, 3)
        deadline = time.monotonic() + rng.uniform(0.0, 0.004)
        bench.set_switch("tamper", not bench.input_active("tamper"))
        while time.monotonic() < deadline:
            time.sleep(0)
        bench.restart()  # mid-write or mid-frame: whatever was on the wire ends short
        bench.wait_boot(boot)
    toggle_tamper(bench, 2)
    assert_exactly_once(bench, pi)


def test_daemon_killed_and_restarted(rig) -> None:  # type: ignore[no-untyped-def]
    bench, pi = rig
    toggle_tamper(bench, 3)
    pi.kill()
    toggle_tamper(bench, 6)  # the Pi is down: the board keeps them
    pi.start()
    toggle_tamper(bench, 2)
    assert_exactly_once(bench, pi)


def test_unknown_frame_type_is_answered_with_an_error(rig) -> None:  # type: ignore[no-untyped-def]
    bench, pi = rig
    pi.stop()
    import serial

    with serial.Serial(bench.wire.path, 115200, timeout=0.2) as port:
        port.write(codec.encode(0x55, b"hello?"))
        decoder = codec.Decoder()
        deadline = time.monotonic() + 5
        errors: list[tuple[int, ...]] = []
        while not errors and time.monotonic() < deadline:
            for frame in decoder.feed(port.read(256)):
                if frame.type == codec.ERROR:
                    errors.append(codec.unpack(codec.ERROR, frame.payload)[0])
    assert errors and errors[0][:2] == (codec.ERR_UNKNOWN_TYPE, 0x55)
    toggle_tamper(bench, 1)  # the board is still working
    assert bench.state == "idle"


def test_bad_daemon_config_refuses_to_start_naming_the_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "edge.toml"
    config.write_text('[serial]\nport = "/dev/null"\nbaud = 12345\n[link]\nheartbeat_s = "often"\n')
    result = subprocess.run(
        [sys.executable, "-m", "edge_daemon", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "serial.baud: 12345 is not a standard baud rate" in result.stderr
    assert "link.heartbeat_s" in result.stderr


def test_daemon_tells_systemd_ready_feeds_the_watchdog_and_stops_cleanly(tmp_path: Path) -> None:
    import socket

    require("micropython")
    bench = linked_bench(tmp_path)
    assert bench.wire is not None
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    pi = PiProcess(bench.wire.path, tmp_path)
    try:
        pi.start(NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000")
        seen = [notify.recv(256).decode() for _ in range(3)]
        assert seen[0] == "READY=1"
        assert "WATCHDOG=1" in seen[1:]
        toggle_tamper(bench, 2)
        assert_exactly_once(bench, pi)
        assert pi.stop() == 0  # SIGTERM: a clean stop
        messages = []
        while "STOPPING=1" not in messages:
            messages.append(notify.recv(256).decode())
    finally:
        notify.close()
        pi.stop()
        bench.stop()
