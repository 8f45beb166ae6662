"""Board files and configs: refused on the host naming the field; survived on the board."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from alarmpost import events as ev
from alarmpost import patterns, settings
from hw_sim.bench import Bench
from hw_sim.paths import BOARDS_DIR
from tools.boards import SettingsError, board_names, load_board


@pytest.mark.parametrize("name", ["rpi_pico", "esp32_devkitc", "sim"])
def test_every_shipped_board_is_valid(name: str) -> None:
    values = load_board(name)
    assert values["name"] == name
    for device in ("button", "key_switch", "tamper", "strobe", "siren", "status_led", "alarm_line", "supply_adc"):
        assert values[f"pins.{device}.pin"] is not None, device
    assert values["uart.baud"] == 115200


def test_board_names_match_files() -> None:
    assert {"rpi_pico", "esp32_devkitc", "sim"} <= set(board_names())


def _board(**changes: object) -> dict[str, object]:
    data: dict[str, object] = json.loads((BOARDS_DIR / "rpi_pico.json").read_text())
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]  # type: ignore[assignment]
        node[leaf] = value  # type: ignore[index]
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pins__button__pin": 40}, "pins.button.pin: pin 40 is outside 0..29"),
        ({"pins__siren__pin": 2}, "pins.siren.pin: pin 2 is already used by pins.button.pin"),
        ({"pins__button__active": "hi"}, "pins.button.active: 'hi' is not one of high, low"),
        ({"pins__button__pull": True}, "pins.button.pull: True is not one of up, down, none"),
        ({"uart__baud": "fast"}, "uart.baud: 'fast' is not a whole number"),
        ({"heap_bytes": 1024}, "heap_bytes: 1024 is below the minimum 16384"),
        ({"pins__button__pn": 3}, "pins.button.pn: unknown field"),
        ({"siren_min_hz": 5000}, "siren_min_hz: 5000 is above siren_max_hz"),
        ({"journal_bytes": 512}, "journal_bytes: 512 is below the minimum 1024"),
        ({"journal_bytes": 8192}, "journal_bytes: 8192 is less than 5 blocks of fs_block_bytes (20480)"),
        ({"fs_block_bytes": 100}, "fs_block_bytes: 100 is below the minimum 128"),
        ({"journal_bytes": "1M"}, "journal_bytes: '1M' is not a whole number"),
    ],
)
def test_bad_board_is_refused_naming_the_field(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    path = tmp_path / "board.json"
    path.write_text(json.dumps(_board(**changes)))
    with pytest.raises(SettingsError) as caught:
        load_board(path)
    assert message in caught.value.errors


def test_board_check_cli_refuses_and_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_board(pins__strobe__pin=99)))
    result = subprocess.run(
        [sys.executable, "-m", "tools.boards", "check", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "pins.strobe.pin: pin 99 is outside 0..29" in result.stderr
    good = subprocess.run(
        [sys.executable, "-m", "tools.boards", "check", "rpi_pico"], capture_output=True, text=True, check=False
    )
    assert good.returncode == 0, good.stderr


def test_build_refuses_a_bad_board(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "tools.build", str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "not valid JSON" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"siren_cutoff_s": 5000}, "siren_cutoff_s: 5000 is above the maximum 1200"),
        ({"glitch_ms": True}, "glitch_ms: True is a true/false value, expected a number"),
        ({"siren_low_hz": 2000, "siren_high_hz": 1000}, "siren_low_hz: must be below siren_high_hz"),
        ({"siren_high_hz": 9000}, "siren_high_hz: 9000 Hz is outside the board's sounder range 400..4000 Hz"),
        ({"low_battery_v": 13.5}, "low_battery_v: must be below ac_loss_v"),
        ({"sirne_cutoff_s": 60}, "sirne_cutoff_s: unknown field"),
        ({"long_press_ms": 5000, "stuck_ms": 3000}, "long_press_ms: must be below stuck_ms"),
        ({"siren_low_hz": 300, "siren_high_hz": 350}, "siren_low_hz: must be below siren_high_hz"),
    ],
)
def test_bad_config_is_refused_naming_the_field(config: dict[str, object], message: str) -> None:
    values, errors = settings.check_config(config, load_board("rpi_pico"))
    assert message in errors
    # every value the firmware would use is still a valid one
    assert values["siren_cutoff_s"] <= 1200 and values["siren_low_hz"] < values["siren_high_hz"]
    assert values["long_press_ms"] < values["stuck_ms"] and values["low_battery_v"] < values["ac_loss_v"]


def test_journal_segments_must_fit_the_boards_journal(tmp_path: Path) -> None:
    path = tmp_path / "board.json"
    path.write_text(json.dumps(_board(journal_bytes=6 * 4096)))  # 5 segments of one 4 KB block
    board = load_board(path)
    values, errors = settings.check_config({"journal_records": 200}, board)
    assert errors == [] and values["journal_records"] == 200
    values, errors = settings.check_config({"journal_records": 256}, board)  # 5,120 bytes: two blocks a segment
    assert errors[0].startswith("journal_records: 256 a segment leave room for 2 segments in the board's journal_bytes")
    assert values["journal_records"] == 200  # the default, which fits


@pytest.mark.parametrize("name", ["rpi_pico", "esp32_devkitc", "sim"])
def test_every_shipped_board_gives_the_journal_thousands_of_events(name: str) -> None:
    board = load_board(name)
    records = settings.check_config({}, board)[0]["journal_records"]
    segments = settings.journal_segments(records, board["journal_bytes"], board["fs_block_bytes"])
    assert segments * records >= 3000, (name, segments, records)


def test_firmware_survives_a_bad_config_with_defaults_and_trouble(make_bench: Callable[..., Bench]) -> None:
    bench = make_bench(config={"siren_cutoff_s": 5000, "glitch_ms": "fast"})
    trouble = bench.wait_event(ev.SYSTEM_TROUBLE, ev.NEW, zone=ev.ZONE_CONFIG)
    assert trouble.value == 2  # two bad fields
    assert any("siren_cutoff_s: 5000 is above the maximum 1200" in t for t in bench.troubles)
    assert any(t.startswith("config glitch_ms:") for t in bench.troubles)
    t = bench.press()
    bench.wait_output("siren", True, after=t)
    bench.wait_event(ev.PANIC)
    assert bench.state == patterns.ALARM


def test_firmware_survives_config_that_is_not_json(make_bench: Callable[..., Bench]) -> None:
    bench = make_bench(config='{"siren_cutoff_s": 60,')
    bench.wait_event(ev.SYSTEM_TROUBLE, ev.NEW, zone=ev.ZONE_CONFIG)
    assert any("config.json: not valid JSON" in t for t in bench.troubles)
    t = bench.press()
    bench.wait_output("strobe", True, after=t)


def test_firmware_survives_a_bad_board_pin(make_bench: Callable[..., Bench], tmp_path: Path) -> None:
    bench = make_bench()
    board = json.loads((bench.flash / "board.json").read_text())
    board["pins"]["tamper"]["pin"] = 99  # outside the board: the tamper input is disabled
    bench.power_cut()
    (bench.flash / "board.json").write_text(json.dumps(board))
    bench.power_on()
    bench.wait_boot(2)
    bench.wait_event(ev.SYSTEM_TROUBLE, ev.NEW, zone=ev.ZONE_CONFIG, since=1)
    assert any("pins.tamper.pin: pin 99 is outside 0..63" in t for t in bench.troubles)
    t = bench.press()
    bench.wait_output("siren", True, after=t)
    bench.wait_event(ev.PANIC)


def test_config_trouble_is_restored_once_the_config_is_fixed(make_bench: Callable[..., Bench]) -> None:
    bench = make_bench(config={"siren_cutoff_s": 5000})
    bench.wait_event(ev.SYSTEM_TROUBLE, ev.NEW, zone=ev.ZONE_CONFIG)
    bench.power_cut()
    (bench.flash / "config.json").write_text(json.dumps({"siren_cutoff_s": 600}))
    mark = len(bench.logged)
    bench.power_on()
    bench.wait_boot(2)
    restore = bench.wait_event(ev.SYSTEM_TROUBLE, ev.RESTORE, zone=ev.ZONE_CONFIG, since=mark)
    assert restore.boot == 2
    assert not bench.troubles[1:] or all("siren_cutoff_s" in t for t in bench.troubles)


def test_the_config_json_written_at_the_post_keeps_the_whole_range_of_the_outputs() -> None:
    """A technician's config.json may go below the floors a remote config_set has (test_commands.py):
    the bench's short test timings are written there."""
    values, errors = settings.check_config({"siren_cutoff_s": 5, "siren_duty_pct": 1, "strobe_duty_pct": 1})
    assert errors == [] and (values["siren_cutoff_s"], values["siren_duty_pct"], values["strobe_duty_pct"]) == (5, 1, 1)
