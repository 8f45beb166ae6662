"""Feeds the hardware watchdog only while the firmware is healthy.

Healthy means: the main loop has turned within ``stale_ms`` and every service
task (button, switches, supply, output patterns) is still running.  A task that
died from an exception, or a main loop stuck in a call that never returns, stops
the feeding, and the watchdog resets the board ``timeout_ms`` later.  The board
then reports the reset cause at boot and re-raises a latched alarm from its
journal.

>>> supervisor = Supervisor(machine.WDT(timeout=5000), timeout_ms=5000)
>>> supervisor.watch("button", button_task.done)
>>> asyncio.create_task(supervisor.run())
"""

import asyncio
import time


class Supervisor:
    def __init__(self, wdt, timeout_ms):
        self.wdt = wdt
        self.timeout_ms = timeout_ms
        self.stale_ms = timeout_ms // 2
        self._dead = []
        self._last_turn = time.ticks_ms()
        self.failed = None

    def watch(self, name, is_dead):
        """Stop feeding once ``is_dead()`` returns True."""
        self._dead.append((name, is_dead))

    def main_loop_turned(self):
        self._last_turn = time.ticks_ms()

    def healthy(self):
        if time.ticks_diff(time.ticks_ms(), self._last_turn) > self.stale_ms:
            self.failed = "main loop"
            return False
        for name, is_dead in self._dead:
            if is_dead():
                self.failed = name
                return False
        return True

    async def run(self):
        while self.healthy():
            self.wdt.feed()
            await asyncio.sleep_ms(self.timeout_ms // 4)
        # once unhealthy, never feed again: the watchdog resets the board
        print("TR watchdog: %s stopped, the board resets" % self.failed)
