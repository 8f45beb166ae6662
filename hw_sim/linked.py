"""A board on the bench linked to a real edge daemon process over the bench's UART wire.

Used by the link tests and ``bench/link_faults.py``.

The daemon runs as ``python -m edge_daemon`` (so it can be killed for real) with
its store in a SQLite file that the test reads with its own connection.  The
daemon is a separate process, so its store is polled; everything on the board
side is awaited through the bench.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from alarmpost import events as ev
from hw_sim.bench import Bench, BenchError
from hw_sim.camera import add_sim_backend


def write_secret(path: Path, text: str) -> Path:
    """Write a key or password file as an installer should: readable and writable by its owner only (0600).

    The daemon refuses a secret that group or others may read.  The file is made
    0600 before its text is written, so the secret is never readable by others.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    return path


class PiProcess:
    """The edge daemon as its own process, with GPIO off."""

    def __init__(
        self,
        port: str,
        folder: Path,
        board: str = "post-1",
        extra: str = "",
        selftest: dict[str, Any] | None = None,
        **link: float,
    ) -> None:
        """``extra`` is more TOML for the config (e.g. an ``[uplink]`` section); ``link`` sets ``[link]`` keys;
        ``selftest`` changes ``[selftest]`` (its socket and reports are the test's, no periodic self-test)."""
        self.folder = folder
        self.db = folder / "events.db"
        self.config = folder / "edge.toml"
        settings = "".join(f"{key} = {value}\n" for key, value in link.items())
        # a unix socket's path is at most 107 bytes: a folder of its own in /tmp, not the test's
        self.selftest_socket = Path(tempfile.mkdtemp(prefix="alarmpost-selftest-")) / "selftest.sock"
        tests: dict[str, Any] = {
            "socket": str(self.selftest_socket),
            "report_dir": str(folder / "selftest"),
            "every_h": 0,
        }
        tests.update(selftest or {})
        tests_toml = "\n[selftest]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in tests.items())
        self.config.write_text(
            f'[serial]\nport = "{port}"\n[store]\npath = "{self.db}"\n[gpio]\nenabled = false\n'
            f'[board]\nname = "{board}"\n[link]\n{settings}{extra}{tests_toml}'
        )
        self.board = board
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **env: str) -> None:
        """Start the daemon; ``env`` adds environment variables (e.g. ``NOTIFY_SOCKET``)."""
        self.starts += 1
        log = open(self.folder / f"daemon{self.starts}.log", "wb")  # noqa: SIM115 - kept for the process's life
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=add_sim_backend(dict(os.environ, PYTHONUNBUFFERED="1", **env)),
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=10)
        self.proc = None
        return code

    def rows(self, source: str = "board") -> list[tuple[int, int, int, int]]:
        """(seq, code, qualifier, zone) of stored events, in the order they were stored."""
        if not self.db.exists():
            return []
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as db:
            try:
                return db.execute(
                    "SELECT seq, code, qualifier, zone FROM events WHERE board = ? AND source = ? ORDER BY id",
                    (self.board, source),
                ).fetchall()
            except sqlite3.OperationalError:  # the daemon has not created the table yet
                return []

    def seqs(self) -> list[int]:
        return [row[0] for row in self.rows()]

    def wait_stored(self, seqs: list[int], timeout: float = 20.0) -> list[int]:
        """Poll the store (another process's file) until it holds ``seqs``."""
        deadline = time.monotonic() + timeout
        while True:
            stored = self.seqs()
            if set(seqs) <= set(stored):
                return stored
            if time.monotonic() > deadline:
                missing = sorted(set(seqs) - set(stored))
                log = (self.folder / f"daemon{self.starts}.log").read_text()[-2000:]
                raise BenchError(f"events {missing} not stored after {timeout} s; daemon log:\n{log}")
            time.sleep(0.02)  # polling another process's database file


def toggle_tamper(bench: Bench, count: int, per_second: float | None = None) -> list[ev.Event]:
    """Raise ``count`` tamper events (open, close, ...) and return them as the board logged them.

    ``per_second`` paces them like a load generator; by default they come as fast
    as the board takes them (about 70 a second).
    """
    made = []
    start = time.monotonic()
    for index in range(count):
        if per_second:
            while time.monotonic() < start + index / per_second:
                time.sleep(0.001)  # pacing the load, not waiting for a result
        mark = len(bench.logged)
        opening = not bench.input_active("tamper")
        bench.set_switch("tamper", opening)
        made.append(bench.wait_event(ev.TAMPER, ev.NEW if opening else ev.RESTORE, since=mark))
    return made


class EventLoad:
    """Tamper-loop changes at a steady rate in the background, e.g. while a benchmark kills the Pi.

    Each change is awaited on the board's console before the next is due, so the
    rate holds as long as the board keeps up (about 70 a second with a 5 ms
    ``switch_debounce_ms``, 15 with the default 50 ms).

    >>> load = EventLoad(bench, per_second=5).start()
    >>> pi.kill(); time.sleep(40); pi.start()
    >>> events = load.stop()
    """

    def __init__(self, bench: Bench, per_second: float) -> None:
        self.bench = bench
        self.per_second = per_second
        self.events: list[ev.Event] = []
        self.error: BaseException | None = None
        self.started = self.stopped = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="event-load")

    def start(self) -> EventLoad:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(max(0.0, self.started + len(self.events) / self.per_second - time.monotonic())):
                self.events.extend(toggle_tamper(self.bench, 1))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by stop()
            self.error = exc

    def stop(self) -> list[ev.Event]:
        """Stop the load; the events it raised, as the board logged them (BenchError if the board stopped)."""
        self._stop.set()
        self._thread.join()
        self.stopped = time.monotonic()
        if self.error is not None:
            raise self.error
        return self.events

    @property
    def rate(self) -> float:
        """Events a second so far."""
        end = self.stopped or time.monotonic()
        return len(self.events) / max(end - self.started, 1e-9)


def linked_bench(tmp: Path, **kwargs: Any) -> Bench:
    config = {"switch_debounce_ms": 5, "link_timeout_ms": 2500}
    config.update(kwargs.pop("config", {}))
    bench = Bench(config=config, seed=kwargs.pop("seed", 1), flash=tmp / "flash", wire=True, **kwargs)
    bench.start()
    bench.wait_boot(1)
    return bench
