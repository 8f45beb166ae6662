"""Where the project's parts live, and the tools the bench runs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
BOARDS_DIR = ROOT / "boards"
SIM_MACHINE_DIR = Path(__file__).resolve().parent / "mpy"
BUILD_DIR = ROOT / "build"
# Daemons such as mosquitto install into sbin, which is not on an ordinary user's PATH.
SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class MissingTool(RuntimeError):
    """A tool the bench needs is not installed (``make install`` brings it)."""


def tool(name: str) -> str:
    """The path of a command installed beside this Python (the venv), on PATH or in the system's sbin folders.

    ``ALARMPOST_<NAME>`` (e.g. ``ALARMPOST_MOSQUITTO``) overrides the search.
    """
    env = os.environ.get("ALARMPOST_" + name.upper().replace("-", "_"))
    if env:
        return env
    found = (
        shutil.which(name, path=str(Path(sys.executable).parent))
        or shutil.which(name)
        or shutil.which(name, path=os.pathsep.join(SYSTEM_BIN_DIRS))
    )
    if not found:
        raise MissingTool(f"{name} is not installed: run 'make install'")
    return found
