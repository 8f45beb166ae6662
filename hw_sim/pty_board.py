"""A simulated board's USB serial REPL on a pty, so a board is flashed with the real mpremote.

The MicroPython unix port runs ``hw_sim/mpy/rawrepl.py`` on the pty's master side,
in a folder that stands for the board's flash; ``port`` is the pty's other end
(``/dev/pts/N``), which mpremote opens as it opens ``/dev/ttyACM0`` for a Pico.
``machine.reset()`` ends the REPL, as a board's reset ends its USB REPL session:
boot the flashed folder on the bench next (``Bench(flash=folder, flashed=True)``).

Example::

    with PtyBoard(Path("/tmp/flash")) as board:
        subprocess.run(["mpremote", "connect", board.port, "fs", "ls"])
"""

from __future__ import annotations

import os
import pty
import subprocess
import tty
from pathlib import Path

from hw_sim.paths import SIM_MACHINE_DIR, tool

REPL_SCRIPT = SIM_MACHINE_DIR / "rawrepl.py"


class PtyBoard:
    def __init__(self, flash: Path) -> None:
        self.flash = flash
        self.port = ""
        self.proc: subprocess.Popen[bytes] | None = None
        # our own hold on both ends: the REPL never reads EIO between connections, and what it wrote
        # just before a reset ended it (the raw REPL's last "\x04") is still there for mpremote to read
        self._keep: list[int] = []

    def start(self) -> PtyBoard:
        self.flash.mkdir(parents=True, exist_ok=True)
        master, slave = pty.openpty()
        tty.setraw(slave)  # bytes as they are: Ctrl-A, -C, -D reach the REPL and "\n" stays "\n"
        self.port = os.ttyname(slave)
        self.proc = subprocess.Popen(
            [tool("micropython"), str(REPL_SCRIPT)],
            stdin=master,
            stdout=master,
            stderr=subprocess.DEVNULL,  # its tracebacks go to the host over the REPL, as a board's do
            cwd=self.flash,
        )
        self._keep = [master, slave]
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_reset(self, timeout: float = 10.0) -> int:
        """Wait for the board's reset (the REPL process ends); its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        for fd in self._keep:
            os.close(fd)
        self._keep = []

    def __enter__(self) -> PtyBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
