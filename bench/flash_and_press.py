"""Flash and press: flash a simulated board on a pty with the real mpremote, boot what was flashed, press it.

The simulated board is the MicroPython unix port running a board's raw REPL on a pty
(``hw_sim/pty_board.py``) in an empty folder that stands for its flash.  The flash
tool (``tools/flash.py``, what ``make flash`` runs) builds the ``sim`` image, copies it
with mpremote's serial transport, verifies every file by SHA-256 and resets the board.
It is then flashed again with the same build (nothing should be copied), and the
flashed folder, as it is, boots on the bench: one press must raise the alarm.

JSON: ``files`` (in the image), ``copied`` and ``verified`` (files whose hash on the
board matched) of the first flash, ``flash_s``, ``second_flash_s`` and
``second_copied`` (the same build again), ``press_ok``, ``press_ms`` (press to siren).
Exits 1 unless every file verified, the second flash copied nothing and the press
raised the alarm.

    python bench/flash_and_press.py

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from alarmpost import events as ev
from hw_sim.bench import Bench
from hw_sim.pty_board import PtyBoard
from tools.flash import flash


def flash_once(folder: Path) -> dict[str, object]:
    with PtyBoard(folder) as board:
        report = flash("sim", board.port, say=lambda line: None)
        board.wait_reset()  # the board boots its firmware: the REPL ends
    return {"files": report.files, "copied": report.copied, "verified": report.verified, "s": report.flash_s}


def press(folder: Path) -> tuple[bool, float]:
    with Bench("sim", flash=folder, flashed=True) as bench:
        bench.wait_boot(1)  # its tasks run: a press now is taken
        mark = len(bench.logged)
        pressed = bench.press()
        siren = bench.wait_output("siren", True, after=pressed)
        bench.wait_event(ev.PANIC, ev.NEW, since=mark, zone=ev.ZONE_BUTTON)
        return True, (siren - pressed) * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "flash"
        first = flash_once(folder)
        second = flash_once(folder)
        press_ok, press_ms = press(folder)
    result = {
        "benchmark": "flash_and_press",
        "files": first["files"],
        "copied": first["copied"],
        "verified": first["verified"],
        "flash_s": round(float(str(first["s"])), 2),
        "second_flash_s": round(float(str(second["s"])), 2),
        "second_copied": second["copied"],
        "press_ok": press_ok,
        "press_ms": round(press_ms, 2),
    }
    print(json.dumps(result))
    good = result["verified"] == result["files"] and result["second_copied"] == 0 and press_ok
    raise SystemExit(0 if good else 1)


if __name__ == "__main__":
    main()
