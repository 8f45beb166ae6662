"""Operator commands from the Pi to the board: acknowledge, silence, reset, test, status, config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alarmpost import codec, patterns
from alarmpost import events as ev
from hw_sim.bench import Bench
from hw_sim.linked import linked_bench
from hw_sim.pi_wiring import PiWiring

from .conftest import require
from .test_alarm_line import DaemonThread


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Bench, DaemonThread]]:
    require("micropython")
    bench = linked_bench(tmp_path)
    daemon = DaemonThread(bench, tmp_path, PiWiring(bench))
    yield bench, daemon
    daemon.stop()
    bench.stop()


def command(daemon: DaemonThread, code: int, args: bytes = b"") -> tuple[int, bytes]:
    assert daemon.daemon is not None
    future = asyncio.run_coroutine_threadsafe(daemon.daemon.link.command(code, args), daemon.loop)
    return future.result(timeout=5)


def test_acknowledge_silence_and_operator_reset(rig) -> None:  # type: ignore[no-untyped-def]
    bench, daemon = rig
    assert command(daemon, codec.CMD_ACKNOWLEDGE)[0] == codec.REFUSED  # nothing to acknowledge
    mark = len(bench.shown)
    bench.press()
    bench.wait_state(patterns.ALARM, since=mark)
    assert command(daemon, codec.CMD_ACKNOWLEDGE) == (codec.OK, b"")
    bench.wait_state(patterns.ACKNOWLEDGED, since=mark)
    assert command(daemon, codec.CMD_SILENCE) == (codec.OK, b"")
    silenced = bench.wait_state(patterns.SILENCED, since=mark)
    assert silenced.siren is False
    bench.wait_for(lambda: not bench.is_on("siren"), 2, "the siren off")
    assert command(daemon, codec.CMD_RESET) == (codec.OK, b"")
    reset = bench.wait_event(ev.PANIC_RESET)
    assert reset.zone == ev.ZONE_OPERATOR
    bench.wait_state(patterns.IDLE, since=mark)


def test_status_and_test_pattern(rig) -> None:  # type: ignore[no-untyped-def]
    bench, daemon = rig
    status, data = command(daemon, codec.CMD_STATUS)
    assert status == codec.OK
    report = json.loads(data)
    assert report["state"] == "idle" and report["boot"] == 1 and report["supply_cv"] == 1380
    assert command(daemon, codec.CMD_TEST_PATTERN)[0] == codec.OK
    bench.wait_event(ev.MANUAL_TEST, zone=ev.ZONE_OPERATOR)
    assert command(daemon, 99)[0] == codec.UNKNOWN_COMMAND


def test_config_set_is_checked_and_written_atomically(rig) -> None:  # type: ignore[no-untyped-def]
    bench, daemon = rig
    status, data = command(daemon, codec.CMD_CONFIG_SET, b"siren_cutoff_s=5000")
    assert status == codec.BAD_ARGS
    assert b"siren_cutoff_s: 5000 is above the maximum 1200" in data
    status, data = command(daemon, codec.CMD_CONFIG_SET, b"siren_cutof=60")
    assert status == codec.BAD_ARGS and b"siren_cutof: unknown field" in data
    assert command(daemon, codec.CMD_CONFIG_SET, b"siren_cutoff_s")[0] == codec.BAD_ARGS
    assert command(daemon, codec.CMD_CONFIG_SET, b"siren_cutoff_s=600") == (codec.OK, b"applies at the next boot")
    written = json.loads((bench.flash / "config.json").read_text())
    assert written["siren_cutoff_s"] == 600
    assert written["switch_debounce_ms"] == 5  # the rest of the config is kept
    assert not (bench.flash / "config.tmp").exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (b"siren_cutoff_s=5", b"siren_cutoff_s: 5 is below the minimum 180 for a remote change"),
        (b"siren_cutoff_s=179", b"siren_cutoff_s: 179 is below the minimum 180 for a remote change"),
        (b"siren_duty_pct=1", b"siren_duty_pct: 1 is below the minimum 25 for a remote change"),
        (b"strobe_duty_pct=24", b"strobe_duty_pct: 24 is below the minimum 25 for a remote change"),
    ],
)
def test_a_remote_config_set_cannot_make_the_alarm_nearly_silent(rig, args: bytes, reason: bytes) -> None:  # type: ignore[no-untyped-def]
    bench, daemon = rig
    before = (bench.flash / "config.json").read_bytes()
    assert command(daemon, codec.CMD_CONFIG_SET, args) == (codec.BAD_ARGS, reason)
    assert (bench.flash / "config.json").read_bytes() == before  # nothing written
    assert not (bench.flash / "config.tmp").exists()


def test_a_remote_config_set_may_go_down_to_the_floors_and_leaves_the_local_values_alone(rig) -> None:  # type: ignore[no-untyped-def]
    bench, daemon = rig
    # A technician's short cut-off in config.json at the post stays, and does not stop a remote
    # change of another field: only the field being set is held to its floor.
    local = json.loads((bench.flash / "config.json").read_text())
    (bench.flash / "config.json").write_text(json.dumps(dict(local, siren_cutoff_s=5)))
    for args in (b"siren_duty_pct=25", b"strobe_duty_pct=25"):
        assert command(daemon, codec.CMD_CONFIG_SET, args) == (codec.OK, b"applies at the next boot")
    written = json.loads((bench.flash / "config.json").read_text())
    assert (written["siren_cutoff_s"], written["siren_duty_pct"], written["strobe_duty_pct"]) == (5, 25, 25)
    assert command(daemon, codec.CMD_CONFIG_SET, b"siren_cutoff_s=180") == (codec.OK, b"applies at the next boot")
    assert json.loads((bench.flash / "config.json").read_text())["siren_cutoff_s"] == 180
