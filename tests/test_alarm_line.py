"""The hard-wired lines: an alarm seen with the UART dead, and the Pi resetting a hung board.

The daemon runs in this process with gpiozero's MockFactory pins wired to the
bench, exactly where a Pi would use its GPIO.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alarmpost import events as ev
from edge_daemon.config import check_data
from edge_daemon.service import Daemon
from hw_sim.bench import Bench
from hw_sim.linked import linked_bench
from hw_sim.pi_wiring import HARD_RESET, PiWiring

from .conftest import require


class DaemonThread:
    def __init__(self, bench: Bench, folder: Path, wiring: PiWiring) -> None:
        assert bench.wire is not None
        self.db = folder / "events.db"
        config = check_data(
            {
                "serial": {"port": bench.wire.path},
                "store": {"path": str(self.db)},
                "gpio": {"alarm_line_pin": wiring.alarm_line_pin, "board_reset_pin": wiring.reset_pin},
                "log": {"format": "text"},
            }
        )
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.daemon: Daemon | None = None
        self.thread = threading.Thread(target=self._run, args=(config, wiring), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, config, wiring) -> None:  # type: ignore[no-untyped-def]
        async def main() -> None:
            self.daemon = Daemon(config, pin_factory=wiring.factory)
            self.ready.set()
            await self.daemon.run()

        self.loop.run_until_complete(main())

    def call(self, function) -> None:  # type: ignore[no-untyped-def]
        self.loop.call_soon_threadsafe(function)

    def stop(self) -> None:
        assert self.daemon is not None
        self.loop.call_soon_threadsafe(self.daemon.stopping.set)
        self.thread.join(10)

    def own_events(self) -> list[tuple[int, int, int]]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            return db.execute("SELECT code, qualifier, zone FROM events WHERE source = 'daemon' ORDER BY id").fetchall()

    def wait_own(self, wanted: tuple[int, int, int], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.own_events():
            assert time.monotonic() < deadline, f"the daemon did not record {wanted}: {self.own_events()}"
            time.sleep(0.02)  # polling the store the daemon's thread writes


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[tuple[Bench, PiWiring, DaemonThread]]:
    require("micropython")
    bench = linked_bench(tmp_path)
    wiring = PiWiring(bench)
    daemon = DaemonThread(bench, tmp_path, wiring)
    yield bench, wiring, daemon
    daemon.stop()
    bench.stop()


def test_alarm_seen_through_the_alarm_line_with_the_uart_cut(wired) -> None:  # type: ignore[no-untyped-def]
    bench, wiring, daemon = wired
    assert bench.wire is not None
    bench.wire.cut()
    bench.press()
    bench.wait_event(ev.PANIC)
    daemon.wait_own((ev.PANIC, ev.NEW, ev.ZONE_ALARM_LINE))
    assert wiring.factory.pin(wiring.alarm_line_pin).state is True
    # the UART event itself arrives once the wire is mended
    bench.wire.mend()
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT code FROM events WHERE source = 'board' AND code = ?", (ev.PANIC,)).fetchall()
        if rows:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)  # polling the store
    bench.turn_key()
    daemon.wait_own((ev.PANIC, ev.RESTORE, ev.ZONE_ALARM_LINE))


def test_pi_resets_a_hung_board(wired) -> None:  # type: ignore[no-untyped-def]
    bench, wiring, daemon = wired
    bench.hang()
    assert daemon.daemon is not None
    daemon.call(daemon.daemon.reset_board)
    bench.wait_boot(2, timeout=5)
    assert bench.boots[-1][1] == HARD_RESET
    assert wiring.resets == 1
    assert bench.wait_event(ev.SYSTEM_RESET, value=HARD_RESET).boot == 2
