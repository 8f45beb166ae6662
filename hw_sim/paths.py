"""Where the project's parts live (re-exported from ``tools.paths``), and the bench's own files."""

from __future__ import annotations

from pathlib import Path

from tools.paths import (
    BOARDS_DIR,
    BUILD_DIR,
    DEBIAN_PACKAGES,
    FIRMWARE_DIR,
    ROOT,
    SYSTEM_BIN_DIRS,
    VENV_PACKAGES,
    MissingTool,
    install_hint,
    tool,
)

SIM_MACHINE_DIR = Path(__file__).resolve().parent / "mpy"

__all__ = [
    "BOARDS_DIR",
    "BUILD_DIR",
    "DEBIAN_PACKAGES",
    "FIRMWARE_DIR",
    "ROOT",
    "SIM_MACHINE_DIR",
    "SYSTEM_BIN_DIRS",
    "VENV_PACKAGES",
    "MissingTool",
    "install_hint",
    "tool",
]
