"""Build a board's flash image: every firmware module compiled with mpy-cross.

    python -m tools.build rpi_pico            # -> build/rpi_pico/
    python -m tools.build sim --out /tmp/flash

The image holds ``main.py`` (boards run it as source), ``alarmpost/*.mpy`` and
the board file as ``board.json``.  The board file is checked first: a bad one
stops the build, naming the field.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from tools.boards import SettingsError, board_path, load_board
from tools.paths import BUILD_DIR, FIRMWARE_DIR, tool

PACKAGE = "alarmpost"
# -O2 drops asserts and __debug__ code; line numbers stay so tracebacks still point at the source
MPY_CROSS_FLAGS: list[str] = []


def firmware_modules() -> list[Path]:
    return sorted((FIRMWARE_DIR / PACKAGE).glob("*.py"))


def build(board: str, out: Path, compiled: bool = True) -> int:
    """Write the flash image for ``board`` into ``out``; return the size of the package in bytes."""
    load_board(board)
    package = out / PACKAGE
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    mpy_cross = tool("mpy-cross") if compiled else None
    total = 0
    for source in firmware_modules():
        if mpy_cross is None:
            target = package / source.name
            shutil.copyfile(source, target)
        else:
            target = package / (source.stem + ".mpy")
            subprocess.run(
                [mpy_cross, *MPY_CROSS_FLAGS, "-s", f"{PACKAGE}/{source.name}", "-o", str(target), str(source)],
                check=True,
                capture_output=True,
                text=True,
            )
        total += target.stat().st_size
    shutil.copyfile(FIRMWARE_DIR / "main.py", out / "main.py")
    shutil.copyfile(board_path(board), out / "board.json")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.build", description=__doc__.splitlines()[0])
    parser.add_argument("board")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or BUILD_DIR / Path(args.board).stem
    try:
        total = build(args.board, out)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"mpy-cross failed:\n{exc.stderr}", file=sys.stderr)
        return 1
    count = len(firmware_modules())
    print(f"{args.board}: {count} modules compiled into {out}, {total} bytes of .mpy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
