"""`make sim` headless and the bench CLI: a person's keys reach the firmware and back, and the Pi beside it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import require


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    require("micropython")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120, check=False)


def test_sim_console_script_raises_and_resets_the_alarm() -> None:
    result = _run("hw_sim.console", "--script", "b,wait:0.3,b,wait:0.3,k,wait:0.5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "state: idle -> alarm" in out
    assert "siren: silent -> sounding" in out
    assert "panic, button (first press)" in out
    assert "panic reset, key switch (1 press)" in out
    assert out.index("state: idle -> alarm") < out.index("state: alarm -> idle")


def test_sim_console_reads_keys_from_a_pipe_and_quits() -> None:
    require("micropython")
    result = subprocess.run(
        [sys.executable, "-m", "hw_sim.console"], input="t\nwait:0.3\nq\n", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "tamper, tamper" in result.stdout


def test_sim_console_refuses_an_unknown_key() -> None:
    result = _run("hw_sim.console", "--script", "b,z")
    assert result.returncode == 2
    assert "unknown key 'z'" in result.stderr


def _pi_folder(out: str) -> Path:
    found = re.search(r"the Pi's daemon logs to (\S+) \(removed on exit\)", out)
    assert found, out
    return Path(found[1]).parent


def test_sim_console_runs_the_pi_daemon_beside_the_board() -> None:
    result = _run("hw_sim.console", "--script", "b,wait:1,a,wait:0.5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pi daemon: running (start 1)" in out
    assert "pi link: not yet -> up" in out
    assert "pi hello: - -> firmware " in out
    # the panic reaches the Pi twice: the board's event over the UART, and the alarm line on its GPIO
    stored = re.search(r"pi stored #\d+ \((\d+) in the store\): board .*panic, button \(first press\)", out)
    assert stored, out
    counts = [int(n) for n in re.findall(r"pi stored #\d+ \((\d+) in the store\)", out)]
    assert counts == list(range(1, len(counts) + 1)) and len(counts) >= 3
    assert re.search(r"pi stored #\d+ \(\d+ in the store\): daemon .*panic, alarm line", out)
    assert "pi alarm line: inactive -> active" in out
    assert "> a: acknowledge: ok (0)" in out
    assert out.index("pi link: not yet -> up") < out.index("> b:") < out.index("> a:")
    assert "state: alarm -> acknowledged" in out
    # the final status shows the Pi's side too
    status = out[out.index("Alarm post on the simulated bench") :]
    assert "PI  link UP" in status
    assert f"in the Pi's store: {counts[-1]}" in status
    assert not _pi_folder(out).exists()  # the store, the log and their folder are gone


def test_sim_console_cuts_the_wire_and_restarts_the_daemon() -> None:
    result = _run("hw_sim.console", "--script", "u,wait:3.5,u,wait:2,d,wait:1.5,o")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "uart wire: connected -> CUT" in out
    assert "pi link: up -> down" in out
    assert "communication trouble, serial link" in out
    assert "pi link: down -> up" in out
    assert "pi daemon: running (start 1) -> running (start 2)" in out
    assert out.count("pi link: not yet -> up") == 2
    assert "> o: operator reset: refused (1)" in out  # nothing is latched
    assert not _pi_folder(out).exists()


def test_press_test_cli() -> None:
    result = _run("hw_sim", "press-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "press-test passed" in result.stdout
