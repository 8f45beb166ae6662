"""systemd notifications to a real datagram socket (a path and an abstract one), the watchdog
interval from the environment, and the daemon's systemd unit."""

from __future__ import annotations

import configparser
import doctest
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_daemon import sdnotify

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "edge_daemon" / "systemd" / "alarmpost-edge.service"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket at a file path, and that path (kept short: Unix paths max ~107 bytes)."""
    folder = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)  # a bound on a broken test, not a synchronisation: the datagram is queued before send returns
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(folder)


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in the abstract namespace, and its name as systemd writes it ('@...')."""
    name = f"alarmpost-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    assert sdnotify.notify("READY=1") is False
    assert (sdnotify.ready(), sdnotify.watchdog(), sdnotify.status("x"), sdnotify.stopping()) == (False,) * 4


def test_empty_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sdnotify.ready() is False


def test_messages_reach_a_socket_path(listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.ready() is True
    assert sdnotify.status("link up, 3 events pending") is True
    assert sdnotify.watchdog() is True
    assert sdnotify.stopping() is True
    assert sdnotify.notify("RELOADING=1\nMONOTONIC_USEC=1") is True
    received = [sock.recv(4096) for _ in range(5)]
    assert received == [
        b"READY=1",
        b"STATUS=link up, 3 events pending",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"RELOADING=1\nMONOTONIC_USEC=1",
    ]


def test_messages_reach_an_abstract_socket(
    abstract_listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, name = abstract_listener
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    assert sdnotify.ready() is True
    assert sdnotify.watchdog() is True
    assert sdnotify.status("starting") is True
    assert [sock.recv(4096) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"STATUS=starting"]


def test_status_stays_one_assignment(listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.status("link lost\nREADY=1") is True
    assert sock.recv(4096) == b"STATUS=link lost READY=1"


def test_status_text_is_sent_as_utf8(listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.status("报警 120") is True
    assert sock.recv(4096) == "STATUS=报警 120".encode()


def test_a_socket_nobody_listens_on_returns_false_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="edge_daemon.sdnotify"):
        assert sdnotify.ready() is False
    assert "systemd notification failed" in caplog.text


def test_a_non_unix_address_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("10000000", None, 5.0),  # WatchdogSec=10 -> ping every 5 s
        ("10000000", "self", 5.0),
        ("3000000", "self", 1.5),
        ("10000000", "other", None),  # meant for another process
        ("10000000", "abc", None),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("ten", None, None),
    ],
)
def test_watchdog_interval_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, interval: float | None
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid == "self":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    elif pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert sdnotify.watchdog_interval() == interval


def test_a_child_process_notifies_through_the_inherited_environment(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="10000000")
    code = "from edge_daemon import sdnotify; print(sdnotify.watchdog_interval(), sdnotify.ready())"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5.0", "True"]
    assert sock.recv(4096) == b"READY=1"


def test_docstring_examples_run() -> None:
    result = doctest.testmod(sdnotify)
    assert result.failed == 0 and result.attempted > 0


def unit_settings() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_has_the_settings_the_daemon_relies_on() -> None:
    unit = unit_settings()
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "10",
        "ExecStart": "/opt/alarmpost/.venv/bin/python -m edge_daemon --config /etc/alarmpost/edge.toml",
        "Restart": "always",
        "RestartSec": "2",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "10",
        "User": "alarmpost",
        "SupplementaryGroups": "dialout gpio video",
        "StateDirectory": "alarmpost",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/alarmpost",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert "PrivateDevices" not in service  # the daemon needs the UART and the GPIO chip
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"  # restarts never stop
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    # The unit names the installed venv; verify checks that ExecStart is executable, so point it
    # at this interpreter.  Everything else is verified as shipped.
    text = UNIT.read_text()
    assert "/opt/alarmpost/.venv/bin/python " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/opt/alarmpost/.venv/bin/python ", f"{sys.executable} "))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # warnings too: an unknown key is only a warning
