"""Flashing a board (``tools/flash.py``, ``make flash``) with the real mpremote, on a simulated board's pty.

The board is ``hw_sim.pty_board.PtyBoard``: the MicroPython unix port running a board's
raw REPL on a pty, in a folder that stands for its flash.  What the tool wrote is read
back from that folder and booted on the bench as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from alarmpost import events as ev
from hw_sim.bench import Bench
from hw_sim.paths import ROOT
from hw_sim.pty_board import PtyBoard
from tools import flash as flash_tool
from tools.flash import STAMP, FlashError, check_board, flash, image

from .conftest import require


def quiet(line: str) -> None:
    pass


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its SHA-256: what the board holds."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def board_folder(tmp_path: Path) -> Path:
    require("micropython")
    require("mpy-cross")
    return tmp_path / "flash"


def flash_sim(folder: Path, board: str = "sim", **options: object) -> flash_tool.FlashReport:
    with PtyBoard(folder) as device:
        try:
            return flash(board, device.port, say=quiet, **options)  # type: ignore[arg-type]
        finally:
            # refused or not, a board holding firmware was reset and runs it: its REPL process ended
            if (folder / "main.py").exists():
                assert device.wait_reset() == 0, "the board was left stopped in its REPL"


def test_a_board_is_flashed_verified_and_boots_what_was_flashed(board_folder: Path) -> None:
    """Catches: files missing or changed on the way, no stamp, no reset, an image that does not boot."""
    report = flash_sim(board_folder)
    expected = {path: hashlib.sha256(data).hexdigest() for path, data in image("sim").items()}
    assert report.copied == report.files == report.verified == len(expected)
    assert contents(board_folder) == expected, "the board holds other files than the image"
    stamp = json.loads((board_folder / STAMP).read_text())
    assert stamp["board"] == "sim" and stamp["build"] == report.build and stamp["files"] == len(expected) - 1
    with Bench("sim", flash=board_folder, flashed=True) as bench:
        bench.wait_boot(1)  # its tasks run: a press now is taken
        mark = len(bench.logged)
        bench.press()
        bench.wait_event(ev.PANIC, ev.NEW, since=mark, zone=ev.ZONE_BUTTON)
        bench.wait_output("siren", True)
    assert contents(board_folder) == expected or STAMP in contents(board_folder)


def test_the_same_build_again_copies_nothing_and_leaves_the_board_running(board_folder: Path) -> None:
    """Catches: a second flash that rewrites every file (wearing the flash)."""
    first = flash_sim(board_folder)
    before = {path: (board_folder / path).stat().st_mtime_ns for path in contents(board_folder)}
    second = flash_sim(board_folder)
    assert (second.copied, second.build) == (0, first.build)
    assert {path: (board_folder / path).stat().st_mtime_ns for path in contents(board_folder)} == before


def test_only_a_file_that_differs_is_copied(board_folder: Path) -> None:
    """Catches: a changed file left in place because its name is there, or everything copied for one file."""
    flash_sim(board_folder)
    damaged = board_folder / "alarmpost" / "alarm.mpy"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    untouched = (board_folder / "alarmpost" / "link.mpy").stat().st_mtime_ns
    report = flash_sim(board_folder)
    assert report.copied == 1 and report.verified == report.files
    assert contents(board_folder) == {path: hashlib.sha256(data).hexdigest() for path, data in image("sim").items()}
    assert (board_folder / "alarmpost" / "link.mpy").stat().st_mtime_ns == untouched


def test_a_board_of_another_kind_is_refused_and_nothing_on_it_changes(board_folder: Path) -> None:
    """Catches: RP2040 firmware and pin map written onto another board (here the unix port, 'linux')."""
    flash_sim(board_folder)
    before = contents(board_folder)
    with pytest.raises(FlashError, match=r"is a linux board, not the RP2040 \(rp2\) that BOARD=rpi_pico is for"):
        flash_sim(board_folder, "rpi_pico")
    assert contents(board_folder) == before


def test_a_config_the_board_refuses_is_refused_before_anything_is_written(board_folder: Path, tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"siren_duty_pct": 500}))
    with pytest.raises(FlashError, match="siren_duty_pct"):
        flash_sim(board_folder, config=bad)
    assert contents(board_folder) == {}


def test_a_good_config_goes_onto_the_board(board_folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"siren_cutoff_s": 300}))
    flash_sim(board_folder, config=config)
    assert json.loads((board_folder / "config.json").read_text()) == {"siren_cutoff_s": 300}


@pytest.mark.parametrize(
    ("mpy", "problem"),
    [(0x0305, "loads .mpy v5, the image is v6"), (0x0307, "loads .mpy v7, the image is v6"), (0, "loads .mpy v0")],
)
def test_a_board_whose_micropython_cannot_load_the_image_is_refused(mpy: int, problem: str) -> None:
    """Catches: .mpy files the board's MicroPython cannot import (the post would not boot at all)."""
    files = image("sim")
    with pytest.raises(FlashError, match=problem):
        check_board("sim", {"platform": "linux", "mpy": mpy, "hashlib": True}, files, "/dev/ttyACM0")
    for loads_v6 in (0x0206, 0x0306, 0x0B06):  # any v6 sub-version and architecture loads bytecode
        check_board("sim", {"platform": "linux", "mpy": loads_v6, "hashlib": True}, files, "/dev/ttyACM0")


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A serial port with nothing answering behind it."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_a_port_with_no_micropython_behind_it_is_refused(silent_port: str) -> None:
    with pytest.raises(FlashError, match="no MicroPython REPL answers"):
        flash("sim", silent_port, say=quiet, timeout=1.0)


def test_make_flash_without_a_board_plugged_in_fails_clearly(tmp_path: Path) -> None:
    """Catches: a traceback (or a silent success) for the technician who forgot the cable or PORT."""
    missing = tmp_path / "ttyACM9"
    done = subprocess.run(
        ["make", "--no-print-directory", "flash", "BOARD=sim", f"PORT={missing}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"flash: {missing}: no such device. Plug the board in by USB" in done.stderr
    assert "Traceback" not in done.stderr
    no_port = subprocess.run([sys.executable, "-m", "tools.flash", "sim"], capture_output=True, text=True, cwd=ROOT)
    assert no_port.returncode == 1 and "no port given: make flash BOARD=rpi_pico PORT=/dev/ttyACM0" in no_port.stderr


def test_a_stale_module_left_in_the_package_is_removed(board_folder: Path) -> None:
    """Catches: an old alarmpost/*.py left on the board, which MicroPython imports before the new .mpy."""
    flash_sim(board_folder)
    stale = board_folder / "alarmpost" / "alarm.py"
    stale.write_text("raise RuntimeError('the old alarm module')\n")
    report = flash_sim(board_folder)
    assert not stale.exists()
    assert report.copied == 0 and report.verified == report.files
