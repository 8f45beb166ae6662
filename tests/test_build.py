"""`make firmware`: every module compiled by mpy-cross, in a format the MicroPython port loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.build import firmware_modules

from .conftest import require


def _mpy_version_of_port() -> int:
    out = subprocess.run(
        [require("micropython"), "-c", "import sys; print(sys.implementation._mpy)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out) & 0xFF  # the sub-version matters only for native code


@pytest.mark.parametrize("board", ["rpi_pico", "esp32_devkitc", "sim"])
def test_firmware_compiles_for_board(board: str, tmp_path: Path) -> None:
    require("mpy-cross")
    result = subprocess.run(
        [sys.executable, "-m", "tools.build", board, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    compiled = sorted(p.stem for p in (tmp_path / "alarmpost").glob("*.mpy"))
    assert compiled == sorted(p.stem for p in firmware_modules())
    assert (tmp_path / "main.py").exists() and (tmp_path / "board.json").exists()
    total = sum(p.stat().st_size for p in (tmp_path / "alarmpost").glob("*.mpy"))
    assert f"{total} bytes of .mpy" in result.stdout
    version = _mpy_version_of_port()
    for mpy in (tmp_path / "alarmpost").glob("*.mpy"):
        header = mpy.read_bytes()[:2]
        assert header == bytes([ord("M"), version]), f"{mpy.name}: .mpy version differs from the port"
    # and the port really loads them (modules that need no hardware)
    loaded = subprocess.run(
        [require("micropython"), "-c", "import alarmpost.settings, alarmpost.journal, alarmpost.alarm; print('ok')"],
        cwd=tmp_path,
        env={"MICROPYPATH": f".frozen:{tmp_path}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.stdout.strip() == "ok", loaded.stdout + loaded.stderr
