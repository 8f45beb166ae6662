"""The edge daemon's TOML config: read once at start, every key checked, every error named.

A config names the serial port to the board and may change any other setting; every
key it leaves out takes its default.  A bad value, a missing required key, an unknown
key or section refuses the whole file, and :class:`ConfigError` lists every problem at
once, each named by its dotted path (``serial.baud``, ``link.timeout_s``).

>>> config = parse_config('[serial]\\nport = "/dev/serial0"\\n[link]\\nheartbeat_s = 0.5', "edge.toml")
>>> config.serial.port, config.serial.baud, config.link.heartbeat_s, config.link.timeout_s
('/dev/serial0', 115200, 0.5, 2.5)
>>> try:
...     parse_config('[serial]\\nport = "/dev/serial0"\\nbaud = 12345\\n[sirial]', "edge.toml")
... except ConfigError as exc:
...     print(*exc.errors, sep="\\n")
sirial: unknown section (known: serial, store, link, gpio, log, board, uplink, camera, selftest)
serial.baud: 12345 is not a standard baud rate (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)

Check a file from the shell (prints ``FILE: ok``, or the errors and exits 1)::

    python -m edge_daemon.config check /etc/alarmpost/edge.toml
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
BCM_GPIO_MAX = 27  # the 40-pin header carries BCM GPIO 0-27 on every Raspberry Pi since the B+
LEVELS = ("high", "low")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")
# Board names and site ids: also levels of the MQTT topic tree (edge_daemon.contract), so no / + #
BOARD_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

Level = Literal["high", "low"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "text"]


class ConfigError(ValueError):
    """A config the daemon refuses; ``errors`` names each problem by dotted path.

    >>> exc = ConfigError("edge.toml", ["serial.port: required"])
    >>> print(exc)
    edge.toml is refused:
      serial.port: required
    """

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        lines = "\n  ".join(errors)
        super().__init__(f"{source} is refused:\n  {lines}")


@dataclass(frozen=True)
class SerialConfig:
    """The UART to the board: ``port`` (required, e.g. ``/dev/serial0``) and ``baud``."""

    port: str
    baud: int = 115200


@dataclass(frozen=True)
class StoreConfig:
    """Where the durable event store (an SQLite file) lives, and how many events it keeps at most
    (only events the centre has confirmed are ever deleted to keep within it)."""

    path: str = "/var/lib/alarmpost/events.db"
    max_events: int = 100_000


@dataclass(frozen=True)
class SelfTestConfig:
    """The self-test (docs/selftest.md): the socket ``alarmpost-selftest`` reaches the daemon on
    (``""``: none), where reports are kept, and how often the daemon tests the post by itself."""

    socket: str = "/run/alarmpost/edge/selftest.sock"
    report_dir: str = "/var/lib/alarmpost/selftest"
    every_h: float = 24.0
    prompt_s: float = 30.0


@dataclass(frozen=True)
class LinkConfig:
    """Link supervision: heartbeat period, silence that means the link is lost, frame ack wait."""

    heartbeat_s: float = 1.0
    timeout_s: float = 2.5
    ack_timeout_s: float = 0.5


@dataclass(frozen=True)
class GpioConfig:
    """The hard-wired alarm line from the board, and the pin that resets the board."""

    enabled: bool = True
    alarm_line_pin: int = 17
    alarm_line_active: Level = "high"
    board_reset_pin: int = 27
    board_reset_active: Level = "low"
    reset_pulse_ms: int = 100


@dataclass(frozen=True)
class LogConfig:
    """Log level and format (``json``: one object per line; ``text``: for people)."""

    level: LogLevel = "info"
    format: LogFormat = "json"


@dataclass(frozen=True)
class BoardConfig:
    """The post's identity: the name its events are stored and reported under."""

    name: str = "post-1"


@dataclass(frozen=True)
class UplinkConfig:
    """The MQTT uplink to the monitoring centre (off unless ``enabled``).

    Empty ``username`` means ``{site}/{post}``, the post being ``board.name``; the
    pictures' connection has its own account, ``video_username`` (empty:
    ``{site}/{post}/video``) with ``video_password_file`` (empty: ``password_file``).
    Empty ``client_id`` means the account's name.  Empty ``ca_file`` trusts the
    system's certificate authorities.
    """

    enabled: bool = False
    host: str = "localhost"
    port: int = 8883
    site: str = "site-1"
    tls: bool = True
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    username: str = ""
    password_file: str = ""
    video_username: str = ""
    video_password_file: str = ""
    client_id: str = ""
    command_key_file: str = ""
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    window: int = 32
    confirm_timeout_s: float = 5.0
    confirm_timeout_max_s: float = 60.0
    confirm_trouble_s: float = 60.0
    health_s: float = 60.0
    homeassistant: bool = False
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True)
class CameraConfig:
    """The post's camera, its pre-alarm buffer, the live stream and the dome camera's PTZ preset.

    ``backend``: ``pi`` (the camera module), ``ffmpeg`` (an IP camera at ``url``: RTSP or
    HTTP MJPEG) or ``sim`` (the bench's camera).  ``ptz_url`` empty: no PTZ.
    """

    enabled: bool = False
    backend: str = "pi"
    url: str = ""
    width: int = 640
    height: int = 480
    fps: float = 10.0
    quality: int = 75
    pre_alarm_s: float = 5.0
    buffer_mb: float = 16.0
    stream_fps: float = 5.0
    stream_max_s: int = 300
    stream_kbps: int = 2000
    chunk_kb: int = 32
    ptz_url: str = ""
    ptz_profile: str = "Profile_1"
    ptz_preset: str = "1"
    ptz_username: str = ""
    ptz_password_file: str = ""


@dataclass(frozen=True)
class Config:
    """The whole checked config; build it with :func:`load_config` or :func:`parse_config`."""

    serial: SerialConfig
    store: StoreConfig = field(default_factory=StoreConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    log: LogConfig = field(default_factory=LogConfig)
    board: BoardConfig = field(default_factory=BoardConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    selftest: SelfTestConfig = field(default_factory=SelfTestConfig)


# A check takes a TOML value and returns (checked value, None) or (None, what is wrong).
Check = Callable[[Any], tuple[Any, str | None]]


def _show(value: Any) -> str:
    """A value as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if not (_is_int(value) or isinstance(value, float)):
            return None, f"{_show(value)} is not a number"
        if not math.isfinite(value):
            return None, f"{_show(value)} is not a finite number"
        if value < low:
            return None, f"{_show(value)} is below the minimum {low:g}"
        if value > high:
            return None, f"{_show(value)} is above the maximum {high:g}"
        return float(value), None

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if not _is_int(value):
            return None, f"{_show(value)} is not an integer"
        if value < low:
            return None, f"{_show(value)} is below the minimum {low}"
        if value > high:
            return None, f"{_show(value)} is above the maximum {high}"
        return value, None

    return check


def _baud(value: Any) -> tuple[Any, str | None]:
    if not _is_int(value) or value not in BAUD_RATES:
        return None, f"{_show(value)} is not a standard baud rate ({', '.join(map(str, BAUD_RATES))})"
    return value, None


def _bcm_pin(value: Any) -> tuple[Any, str | None]:
    if not _is_int(value) or not 0 <= value <= BCM_GPIO_MAX:
        return None, f"{_show(value)} is not a BCM GPIO (0-{BCM_GPIO_MAX})"
    return value, None


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if value not in options or not isinstance(value, str):
            return None, f"{_show(value)} is not one of {', '.join(options)}"
        return value, None

    return check


def _camera_backend(value: Any) -> tuple[Any, str | None]:
    """pi, ffmpeg, or one the daemon's environment adds (edge_daemon.camera.added_backends)."""
    from edge_daemon.camera import backend_names

    return _choice(backend_names())(value)


def _boolean(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, bool):
        return None, f"{_show(value)} is not true or false"
    return value, None


def _text(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str):
        return None, f"{_show(value)} is not a string"
    if not value.strip():
        return None, "must not be empty"
    if "\0" in value:
        return None, f"{_show(value)} contains a NUL character"
    return value, None


def _board_name(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not BOARD_NAME.fullmatch(value):
        return None, f"{_show(value)} must be 1-64 characters of A-Z a-z 0-9 . _ -"
    return value, None


def _optional_text(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str) and value == "":
        return value, None
    return _text(value)


def _host(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9.:_-]{1,253}", value):
        return None, f"{_show(value)} is not a host name or IP address"
    return value, None


# Each section: its dataclass and a check per key.  Defaults come from the dataclasses.
SECTIONS: dict[str, tuple[type[Any], dict[str, Check]]] = {
    "serial": (SerialConfig, {"port": _text, "baud": _baud}),
    "store": (StoreConfig, {"path": _text, "max_events": _integer(1000, 10_000_000)}),
    "link": (
        LinkConfig,
        {"heartbeat_s": _number(0.1, 10.0), "timeout_s": _number(0.5, 30.0), "ack_timeout_s": _number(0.05, 10.0)},
    ),
    "gpio": (
        GpioConfig,
        {
            "enabled": _boolean,
            "alarm_line_pin": _bcm_pin,
            "alarm_line_active": _choice(LEVELS),
            "board_reset_pin": _bcm_pin,
            "board_reset_active": _choice(LEVELS),
            "reset_pulse_ms": _integer(10, 5000),
        },
    ),
    "log": (LogConfig, {"level": _choice(LOG_LEVELS), "format": _choice(LOG_FORMATS)}),
    "board": (BoardConfig, {"name": _board_name}),
    "uplink": (
        UplinkConfig,
        {
            "enabled": _boolean,
            "host": _host,
            "port": _integer(1, 65535),
            "site": _board_name,
            "tls": _boolean,
            "ca_file": _optional_text,
            "cert_file": _optional_text,
            "key_file": _optional_text,
            "username": _optional_text,
            "password_file": _optional_text,
            "video_username": _optional_text,
            "video_password_file": _optional_text,
            "client_id": _optional_text,
            "command_key_file": _optional_text,
            "keepalive_s": _integer(5, 600),
            "reconnect_min_s": _number(0.1, 60.0),
            "reconnect_max_s": _number(1.0, 3600.0),
            "window": _integer(1, 1000),
            "confirm_timeout_s": _number(0.5, 600.0),
            "confirm_timeout_max_s": _number(0.5, 3600.0),
            "confirm_trouble_s": _number(5.0, 86400.0),
            "health_s": _number(1.0, 3600.0),
            "homeassistant": _boolean,
            "discovery_prefix": _board_name,
        },
    ),
    "camera": (
        CameraConfig,
        {
            "enabled": _boolean,
            "backend": _camera_backend,
            "url": _optional_text,
            "width": _integer(64, 4096),
            "height": _integer(48, 3072),
            "fps": _number(0.5, 30.0),
            "quality": _integer(10, 100),
            "pre_alarm_s": _number(0.0, 60.0),
            "buffer_mb": _number(1.0, 512.0),
            "stream_fps": _number(0.2, 30.0),
            "stream_max_s": _integer(10, 3600),
            "stream_kbps": _integer(64, 100_000),
            "chunk_kb": _integer(4, 256),
            "ptz_url": _optional_text,
            "ptz_profile": _text,
            "ptz_preset": _text,
            "ptz_username": _optional_text,
            "ptz_password_file": _optional_text,
        },
    ),
    "selftest": (
        SelfTestConfig,
        {
            "socket": _optional_text,
            "report_dir": _text,
            "every_h": _number(0.0, 720.0),
            "prompt_s": _number(5.0, 600.0),
        },
    ),
}


Sections = dict[str, tuple[type[Any], dict[str, Check]]]


def _section(name: str, table: Any, errors: list[str], sections: Sections | None = None) -> Any:
    """One section's dataclass from its TOML table, or None after adding its errors."""
    cls, checks = (sections or SECTIONS)[name]
    if not isinstance(table, dict):
        errors.append(f"{name}: {_show(table)} is not a table (write it as [{name}])")
        return None
    values: dict[str, Any] = {}
    ok = True
    for key in table:
        if key not in checks:
            errors.append(f"{name}.{key}: unknown key (known: {', '.join(checks)})")
            ok = False
    for f in dataclasses.fields(cls):
        path = f"{name}.{f.name}"
        if f.name not in table:
            if f.default is dataclasses.MISSING:
                errors.append(f"{path}: required")
                ok = False
            continue
        value, problem = checks[f.name](table[f.name])
        if problem is not None:
            errors.append(f"{path}: {problem}")
            ok = False
        else:
            values[f.name] = value
    return cls(**values) if ok else None


def _cross_checks(sections: dict[str, Any], errors: list[str]) -> None:
    """Rules that tie keys together; each runs only when its keys passed on their own."""
    link: LinkConfig | None = sections.get("link")
    if link is not None:
        if link.timeout_s < 2 * link.heartbeat_s:
            errors.append(
                f"link.timeout_s: must be at least 2 × link.heartbeat_s ({link.timeout_s:g} < 2 × {link.heartbeat_s:g})"
            )
        if link.ack_timeout_s >= link.timeout_s:
            errors.append(
                f"link.ack_timeout_s: must be less than link.timeout_s ({link.ack_timeout_s:g} >= {link.timeout_s:g})"
            )
    uplink: UplinkConfig | None = sections.get("uplink")
    if uplink is not None and uplink.enabled:
        _uplink_checks(uplink, errors)
    camera: CameraConfig | None = sections.get("camera")
    if camera is not None and camera.enabled:
        _camera_checks(camera, uplink, errors)
    gpio: GpioConfig | None = sections.get("gpio")
    if gpio is not None and gpio.alarm_line_pin == gpio.board_reset_pin:
        errors.append(f"gpio.board_reset_pin: {gpio.board_reset_pin} is also gpio.alarm_line_pin")


# The uplink's files that hold secrets: refused when group or others may read or write them.
SECRET_FILES = ("key_file", "password_file", "video_password_file")


def _uplink_checks(uplink: UplinkConfig, errors: list[str], command_key: bool = True) -> None:
    """The uplink's files must be there and usable before the daemon starts, not at the first alarm.

    ``command_key``: the daemon needs one; the portal, which parses anonymous phones' requests,
    must not hold it (the portal's config checks it is left out)."""
    from edge_daemon.auth import secret_file_problem

    if uplink.confirm_timeout_s > uplink.confirm_timeout_max_s:
        errors.append(
            f"uplink.confirm_timeout_max_s: must be at least uplink.confirm_timeout_s"
            f" ({uplink.confirm_timeout_max_s:g} < {uplink.confirm_timeout_s:g})"
        )
    if uplink.reconnect_min_s > uplink.reconnect_max_s:
        errors.append(
            f"uplink.reconnect_max_s: must be at least uplink.reconnect_min_s"
            f" ({uplink.reconnect_max_s:g} < {uplink.reconnect_min_s:g})"
        )
    if command_key:
        _command_key_check(uplink, errors)
    if bool(uplink.cert_file) != bool(uplink.key_file):
        errors.append("uplink.key_file: a client certificate needs both uplink.cert_file and uplink.key_file")
    if not uplink.tls and (uplink.ca_file or uplink.cert_file):
        errors.append("uplink.tls: false, but certificate files are given (set tls = true to use them)")
    for name in ("ca_file", "cert_file", "key_file", "password_file", "video_password_file"):
        path = getattr(uplink, name)
        if path and not Path(path).is_file():
            errors.append(f"uplink.{name}: {_show(path)} is not a readable file")
        elif path and name in SECRET_FILES:
            problem = secret_file_problem(path)
            if problem:
                errors.append(f"uplink.{name}: {problem}")
    if uplink.tls:
        _tls_files_check(uplink, errors)


def _command_key_check(uplink: UplinkConfig, errors: list[str]) -> None:
    from edge_daemon.auth import KeyFileError, load_key

    if not uplink.command_key_file:
        errors.append("uplink.command_key_file: required when the uplink is enabled (commands must be signed)")
    else:
        try:
            load_key(uplink.command_key_file)
        except KeyFileError as exc:
            errors.append(f"uplink.command_key_file: {exc}")


def _tls_files_check(uplink: UplinkConfig, errors: list[str]) -> None:
    """The certificate files must load now, not fail the first connection after an install."""
    import ssl

    context = ssl.create_default_context()
    if uplink.ca_file and Path(uplink.ca_file).is_file():
        try:
            context.load_verify_locations(cafile=uplink.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.append(f"uplink.ca_file: {_show(uplink.ca_file)} is not a PEM certificate: {exc}")
    if uplink.cert_file and uplink.key_file and Path(uplink.cert_file).is_file() and Path(uplink.key_file).is_file():
        try:
            context.load_cert_chain(uplink.cert_file, uplink.key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.append(f"uplink.cert_file: the certificate and uplink.key_file do not load as a pair: {exc}")


def _camera_checks(camera: CameraConfig, uplink: UplinkConfig | None, errors: list[str]) -> None:
    if uplink is not None and not uplink.enabled:
        errors.append("camera.enabled: needs uplink.enabled (the pictures go to the centre over the uplink)")
    if camera.backend == "ffmpeg" and not camera.url:
        errors.append('camera.url: required with backend = "ffmpeg" (the camera\'s rtsp:// or http:// address)')
    if camera.stream_fps > camera.fps:
        errors.append(f"camera.stream_fps: more than camera.fps ({camera.stream_fps:g} > {camera.fps:g})")
    from edge_daemon.auth import secret_file_problem

    if camera.ptz_password_file and not Path(camera.ptz_password_file).is_file():
        errors.append(f"camera.ptz_password_file: {_show(camera.ptz_password_file)} is not a readable file")
    elif camera.ptz_password_file:
        problem = secret_file_problem(camera.ptz_password_file)
        if problem:
            errors.append(f"camera.ptz_password_file: {problem}")


def check_data(data: dict[str, Any], source: str = "config") -> Config:
    """A :class:`Config` from already-parsed TOML data; :class:`ConfigError` lists every problem.

    >>> check_data({"serial": {"port": "/dev/ttyUSB0"}, "gpio": {"alarm_line_pin": 40}}, "test")
    Traceback (most recent call last):
      ...
    edge_daemon.config.ConfigError: test is refused:
      gpio.alarm_line_pin: 40 is not a BCM GPIO (0-27)
    """
    errors: list[str] = []
    sections = check_sections(data, SECTIONS, errors)
    _cross_checks(sections, errors)
    if errors:
        raise ConfigError(source, errors)
    return Config(**sections)


def check_sections(data: dict[str, Any], known: Sections, errors: list[str]) -> dict[str, Any]:
    """Each known section's dataclass (None where it failed); unknown sections and bad keys go to ``errors``.

    The edge daemon's and the portal's configs are both read this way.
    """
    for name in data:
        if name not in known:
            errors.append(f"{name}: unknown section (known: {', '.join(known)})")
    return {name: _section(name, data.get(name, {}), errors, known) for name in known}


def toml_table(text: str, source: str) -> dict[str, Any]:
    """The TOML table in ``text``; :class:`ConfigError` if it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML table in the file at ``path``; :class:`ConfigError` names the file and what is wrong."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a directory, not a file"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"not valid TOML: {exc}"]) from None


def parse_config(text: str, source: str = "config") -> Config:
    """A :class:`Config` from TOML text; ``source`` names the text in errors.

    >>> parse_config('[serial]\\nport = "/dev/ttyAMA0"\\n[board]\\nname = "gate-3"').board.name
    'gate-3'
    """
    return check_data(toml_table(text, source), source)


def load_config(path: Path) -> Config:
    """The checked config in the TOML file at ``path``; :class:`ConfigError` names the file and each problem.

    >>> load_config(Path("/nonexistent/edge.toml"))
    Traceback (most recent call last):
      ...
    edge_daemon.config.ConfigError: /nonexistent/edge.toml is refused:
      file not found
    """
    return check_data(read_toml(path), str(path))


def check_files_main(prog: str, description: str, load: Callable[[Path], Any], argv: list[str] | None) -> int:
    """``PROG check FILE...``: each file's "FILE: ok", or its errors on stderr; 0 when every file is ok, else 1."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check config files; print FILE: ok or the errors")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        try:
            load(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failed = True
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_daemon.config check FILE...``."""
    return check_files_main("python -m edge_daemon.config", "Check edge daemon configs.", load_config, argv)


if __name__ == "__main__":
    sys.exit(main())
