"""`make sim` headless and the bench CLI: a person's keys reach the firmware and back."""

from __future__ import annotations

import subprocess
import sys

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
    result = _run("hw_sim.console", "--script", "b,x")
    assert result.returncode == 2
    assert "x" in result.stderr


def test_press_test_cli() -> None:
    result = _run("hw_sim", "press-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "press-test passed" in result.stdout
