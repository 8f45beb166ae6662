"""The edge daemon's config: every bad key refused by name, all at once; defaults; the example file; the CLI.

Also the logging setup the config's [log] section drives.
"""

from __future__ import annotations

import dataclasses
import doctest
import io
import json
import logging
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_daemon import config as edge_config
from edge_daemon import logs
from edge_daemon.config import (
    SECTIONS,
    Config,
    ConfigError,
    GpioConfig,
    LinkConfig,
    SerialConfig,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "edge_daemon" / "edge.example.toml"
MINIMAL = '[serial]\nport = "/dev/serial0"\n'


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "edge.toml")
    return info.value.errors


def test_minimal_config_takes_every_default() -> None:
    config = parse_config(MINIMAL, "edge.toml")
    assert config == Config(serial=SerialConfig(port="/dev/serial0"))
    assert config.serial.baud == 115200
    assert config.store.path == "/var/lib/alarmpost/events.db"
    assert (config.link.heartbeat_s, config.link.timeout_s, config.link.ack_timeout_s) == (1.0, 2.5, 0.5)
    assert config.gpio == GpioConfig(True, 17, "high", 27, "low", 100)
    assert (config.log.level, config.log.format) == ("info", "json")
    assert config.board.name == "post-1"


def test_example_config_parses_and_shows_every_key_with_its_default() -> None:
    config = load_config(EXAMPLE)
    assert config == Config(serial=SerialConfig(port="/dev/serial0"))
    data = tomllib.loads(EXAMPLE.read_text())
    assert {name: set(table) for name, table in data.items()} == {
        name: set(checks) for name, (_, checks) in SECTIONS.items()
    }
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[number - 1].lstrip().startswith("#"), f"example line {number + 1} has no comment: {line}"


def test_schema_checks_exactly_the_dataclass_fields() -> None:
    for name, (cls, checks) in SECTIONS.items():
        assert [f.name for f in dataclasses.fields(cls)] == list(checks), name


def test_every_value_set_is_kept() -> None:
    config = parse_config(
        """
        [serial]
        port = "/dev/ttyUSB0"
        baud = 921600
        [store]
        path = "/tmp/events.db"
        [link]
        heartbeat_s = 2
        timeout_s = 4.5
        ack_timeout_s = 0.25
        [gpio]
        enabled = false
        alarm_line_pin = 0
        alarm_line_active = "low"
        board_reset_pin = 26
        board_reset_active = "high"
        reset_pulse_ms = 5000
        [log]
        level = "debug"
        format = "text"
        [board]
        name = "Gate_3.north-A"
        """,
        "edge.toml",
    )
    assert config.serial == SerialConfig("/dev/ttyUSB0", 921600)
    assert config.store.path == "/tmp/events.db"
    assert config.link == LinkConfig(2.0, 4.5, 0.25)
    assert isinstance(config.link.heartbeat_s, float)
    assert config.gpio == GpioConfig(False, 0, "low", 26, "high", 5000)
    assert (config.log.level, config.log.format) == ("debug", "text")
    assert config.board.name == "Gate_3.north-A"


def test_config_is_frozen() -> None:
    config = parse_config(MINIMAL, "edge.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.serial.baud = 9600  # type: ignore[misc]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (
            "[serial]\nbaud = 12345",
            "serial.baud: 12345 is not a standard baud rate"
            " (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)",
        ),
        ("[serial]\nbaud = true", "serial.baud: true is not a standard baud rate"),
        ('[serial]\nbaud = "115200"', 'serial.baud: "115200" is not a standard baud rate'),
        ("[gpio]\nalarm_line_pin = 40", "gpio.alarm_line_pin: 40 is not a BCM GPIO (0-27)"),
        ("[gpio]\nboard_reset_pin = -1", "gpio.board_reset_pin: -1 is not a BCM GPIO (0-27)"),
        ("[gpio]\nalarm_line_pin = 17.0", "gpio.alarm_line_pin: 17.0 is not a BCM GPIO (0-27)"),
        ('[gpio]\nalarm_line_active = "HIGH"', 'gpio.alarm_line_active: "HIGH" is not one of high, low'),
        ("[gpio]\nboard_reset_active = 0", "gpio.board_reset_active: 0 is not one of high, low"),
        ('[gpio]\nenabled = "yes"', 'gpio.enabled: "yes" is not true or false'),
        ("[gpio]\nreset_pulse_ms = 9", "gpio.reset_pulse_ms: 9 is below the minimum 10"),
        ("[gpio]\nreset_pulse_ms = 5001", "gpio.reset_pulse_ms: 5001 is above the maximum 5000"),
        ("[gpio]\nreset_pulse_ms = 100.5", "gpio.reset_pulse_ms: 100.5 is not an integer"),
        ("[gpio]\nalarm_line_pin = 27", "gpio.board_reset_pin: 27 is also gpio.alarm_line_pin"),
        ("[link]\nheartbeat_s = 0.05", "link.heartbeat_s: 0.05 is below the minimum 0.1"),
        ("[link]\nheartbeat_s = 11\ntimeout_s = 30", "link.heartbeat_s: 11 is above the maximum 10"),
        ("[link]\ntimeout_s = 31", "link.timeout_s: 31 is above the maximum 30"),
        ("[link]\ntimeout_s = nan", "link.timeout_s: nan is not a finite number"),
        ('[link]\ntimeout_s = "3"', 'link.timeout_s: "3" is not a number'),
        ("[link]\ntimeout_s = 1.5", "link.timeout_s: must be at least 2 × link.heartbeat_s (1.5 < 2 × 1)"),
        ("[link]\nack_timeout_s = 2.5", "link.ack_timeout_s: must be less than link.timeout_s (2.5 >= 2.5)"),
        ('[log]\nlevel = "verbose"', 'log.level: "verbose" is not one of debug, info, warning, error'),
        ('[log]\nformat = "xml"', 'log.format: "xml" is not one of json, text'),
        ('[board]\nname = "post 1"', 'board.name: "post 1" must be 1-64 characters of A-Z a-z 0-9 . _ -'),
        ('[board]\nname = ""', 'board.name: "" must be 1-64 characters of A-Z a-z 0-9 . _ -'),
        (f'[board]\nname = "{"p" * 65}"', "board.name: "),
        ('[store]\npath = ""', "store.path: must not be empty"),
        ("[store]\npath = 5", "store.path: 5 is not a string"),
        ("[serial]\nparity = 'N'", "serial.parity: unknown key (known: port, baud)"),
        (
            "[sirial]\nport = 'x'",
            "sirial: unknown section (known: serial, store, link, gpio, log, board, uplink, camera, selftest)",
        ),
        ("name = 'post-1'", "name: unknown section"),
        ("gpio = 5", "gpio: 5 is not a table (write it as [gpio])"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(lines: str, error: str) -> None:
    if lines.startswith("[serial]"):
        text = lines.replace("[serial]", MINIMAL.rstrip())
    elif lines.startswith("["):
        text = MINIMAL + lines
    else:  # a top-level key goes before the first table
        text = lines + "\n" + MINIMAL
    errors = errors_of(text)
    assert len(errors) == 1, errors
    assert errors[0].startswith(error), errors


def test_serial_port_is_required() -> None:
    assert errors_of("") == ["serial.port: required"]
    assert errors_of("[serial]\nbaud = 9600") == ["serial.port: required"]


def test_several_bad_keys_are_all_reported_at_once() -> None:
    text = """
        [serial]
        baud = 12345
        parity = "N"
        [link]
        heartbeat_s = 2.0
        timeout_s = 3.0
        [gpio]
        alarm_line_pin = 40
        reset_pulse_ms = 1
        [log]
        level = "loud"
        [board]
        name = "post/1"
        [sirial]
        port = "/dev/serial0"
    """
    with pytest.raises(ConfigError) as info:
        parse_config(text, "edge.toml")
    keys = [error.split(":")[0] for error in info.value.errors]
    assert sorted(keys) == sorted(
        [
            "sirial",
            "serial.parity",
            "serial.port",
            "serial.baud",
            "link.timeout_s",
            "gpio.alarm_line_pin",
            "gpio.reset_pulse_ms",
            "log.level",
            "board.name",
        ]
    )
    message = str(info.value)
    assert message.startswith("edge.toml is refused:\n")
    for error in info.value.errors:
        assert f"\n  {error}" in message


def test_timeout_of_exactly_twice_the_heartbeat_is_accepted() -> None:
    config = parse_config(MINIMAL + "[link]\nheartbeat_s = 1.5\ntimeout_s = 3.0\n", "edge.toml")
    assert config.link.timeout_s == 2 * config.link.heartbeat_s


def test_cross_check_waits_for_valid_values() -> None:
    # A heartbeat out of range is reported once, not again as a timeout problem.
    assert errors_of(MINIMAL + "[link]\nheartbeat_s = 20\n") == ["link.heartbeat_s: 20 is above the maximum 10"]


def test_not_toml_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[serial\nport = "/dev/serial0"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("not valid TOML: ")
    assert str(path) in str(info.value)

    path.write_bytes(b'[serial]\nport = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_missing_file_and_directory_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.errors == ["file not found"]
    assert str(missing) in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.errors == ["is a directory, not a file"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_daemon.config", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_cli_check_says_ok_for_a_good_file() -> None:
    result = run_cli("check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EXAMPLE}: ok\n"


def test_cli_check_prints_every_error_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[serial]\nport = "/dev/serial0"\nbaud = 12345\n[gpio]\nalarm_line_pin = 40\n')
    result = run_cli("check", str(EXAMPLE), str(bad))
    assert result.returncode == 1
    assert result.stdout == f"{EXAMPLE}: ok\n"
    assert f"{bad} is refused:" in result.stderr
    assert "serial.baud: 12345 is not a standard baud rate" in result.stderr
    assert "gpio.alarm_line_pin: 40 is not a BCM GPIO (0-27)" in result.stderr


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored to its handlers and level after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_docstring_examples_run(root_logger: logging.Logger) -> None:
    for module in (edge_config, logs):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_json_logs_carry_the_fields_and_extras(root_logger: logging.Logger) -> None:
    config = parse_config(MINIMAL + '[log]\nlevel = "info"\nformat = "json"\n', "edge.toml")
    out = io.StringIO()
    logs.setup(config.log.level, config.log.format, stream=out)
    log = logging.getLogger("edge_daemon.store")
    log.debug("not shown at info")
    log.info("event stored", extra={"seq": 5, "code": 120})
    try:
        raise RuntimeError("serial port gone")
    except RuntimeError:
        log.exception("link failed", extra={"port": "/dev/serial0"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"ts", "level", "logger", "msg", "seq", "code"}
    assert first["level"] == "info" and first["logger"] == "edge_daemon.store" and first["msg"] == "event stored"
    assert (first["seq"], first["code"]) == (5, 120)
    assert first["ts"].endswith("Z") and first["ts"][10] == "T"
    assert second["level"] == "error" and second["port"] == "/dev/serial0"
    assert "RuntimeError: serial port gone" in second["exc"]


def test_text_logs_and_a_second_setup_replaces_the_first(root_logger: logging.Logger) -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.setup("debug", "json", stream=first)
    logs.setup("warning", "text", stream=second)
    log = logging.getLogger("edge_daemon.link")
    log.info("hidden")
    log.warning("link lost", extra={"silent_s": 3.2})
    assert first.getvalue() == ""
    line = second.getvalue().rstrip("\n")
    assert line.endswith("Z warning edge_daemon.link: link lost silent_s=3.2")
    with pytest.raises(ValueError, match="log.level"):
        logs.setup("verbose", "json")
    with pytest.raises(ValueError, match="log.format"):
        logs.setup("info", "xml")


# -- secret files ------------------------------------------------------------------------------------------------


def _secret(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _not_root_owned(path: Path) -> None:
    """Owned by an ordinary user (it is already, unless the tests run as root)."""
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o620, 0o602])
def test_a_command_key_others_may_read_or_change_is_refused_naming_the_fix(tmp_path: Path, mode: int) -> None:
    from edge_daemon.auth import KeyFileError, load_key

    key = _secret(tmp_path / "command.key", "ab" * 32, mode)
    _not_root_owned(key)
    with pytest.raises(KeyFileError) as refused:
        load_key(key)
    assert str(refused.value).startswith(f"{key}: mode {mode:04o} lets group or others read or change it")
    assert f"chmod 600 {key}" in str(refused.value)
    key.chmod(0o600)
    assert load_key(key) == bytes.fromhex("ab" * 32)


def test_a_root_owned_key_only_its_group_may_read_is_accepted(tmp_path: Path) -> None:
    """root:alarmpost 0640, as the install guide makes it: the daemon reads it through its group, cannot change it."""
    from edge_daemon.auth import KeyFileError, load_key, secret_file_problem

    key = _secret(tmp_path / "command.key", "ab" * 32, 0o640)
    if os.geteuid() == 0:
        assert load_key(key) == bytes.fromhex("ab" * 32)
        key.chmod(0o644)
        assert "chmod 600" in (secret_file_problem(key) or "")
    else:  # not root: the file is the test user's own, and so owner-only is the rule
        with pytest.raises(KeyFileError, match="chmod 600"):
            load_key(key)


def _uplink_config(tmp_path: Path, **files: Path) -> str:
    key = _secret(tmp_path / "command.key", "ab" * 32, 0o600)
    lines = "".join(f'{name} = "{path}"\n' for name, path in files.items())
    return (
        f'[serial]\nport = "/dev/serial0"\n[uplink]\nenabled = true\ntls = false\ncommand_key_file = "{key}"\n{lines}'
    )


def test_a_broker_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    password = _secret(tmp_path / "mqtt.password", "hunter2\n", 0o644)
    _not_root_owned(password)
    errors = errors_of(_uplink_config(tmp_path, password_file=password))
    assert errors == [
        f"uplink.password_file: {password}: mode 0644 lets group or others read or change it; fix: chmod 600 {password}"
    ]
    password.chmod(0o600)
    assert parse_config(_uplink_config(tmp_path, password_file=password), "edge.toml").uplink.password_file == str(
        password
    )


def test_a_command_key_others_may_read_is_refused_by_the_config_check(tmp_path: Path) -> None:
    text = _uplink_config(tmp_path)
    key = tmp_path / "command.key"
    key.chmod(0o644)
    _not_root_owned(key)
    (error,) = errors_of(text)
    assert error.startswith(f"uplink.command_key_file: {key}: mode 0644") and f"chmod 600 {key}" in error


def test_a_ptz_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    ptz = _secret(tmp_path / "ptz.password", "s3cret\n", 0o644)
    _not_root_owned(ptz)
    camera = f'[camera]\nenabled = true\nbackend = "sim"\nptz_password_file = "{ptz}"\n'
    (error,) = errors_of(_uplink_config(tmp_path) + camera)
    assert error.startswith(f"camera.ptz_password_file: {ptz}: mode 0644") and f"chmod 600 {ptz}" in error
