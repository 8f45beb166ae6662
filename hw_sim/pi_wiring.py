"""The Pi's GPIO side of the bench: gpiozero mock pins wired to the simulated board.

The board's alarm line drives the Pi's alarm-line input pin, and the Pi's
board-reset output, when asserted, resets the simulated board.  The daemon gets
``wiring.factory`` as its gpiozero pin factory, exactly where a Pi would use
lgpio.

>>> wiring = PiWiring(bench, alarm_line_pin=17, reset_pin=27)
>>> daemon = Daemon(config, pin_factory=wiring.factory)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from hw_sim.bench import Bench

HARD_RESET = 2


class BenchPin(MockPin):  # type: ignore[misc]
    """A mock pin that reports the Pi driving it."""

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        listener: Callable[[int, bool], None] | None = getattr(self.factory, "on_output", None)
        if changed and self._function == "output" and listener is not None:
            listener(int(self.info.name.removeprefix("GPIO")), value)
        return changed


class PiWiring:
    def __init__(self, bench: Bench, alarm_line_pin: int = 17, reset_pin: int = 27, reset_active_high: bool = False):
        self.bench = bench
        self.alarm_line_pin = alarm_line_pin
        self.reset_pin = reset_pin
        self.reset_active_high = reset_active_high
        self.factory: Any = MockFactory(pin_class=BenchPin)
        self.factory.on_output = self._pi_output
        self.resets = 0
        bench.output_listeners.append(self._board_output)

    def _board_output(self, device: str, on: bool) -> None:
        if device != "alarm_line":
            return
        pin = self.factory.pin(self.alarm_line_pin)
        if pin.function == "input":
            pin.drive_high() if on else pin.drive_low()

    def _pi_output(self, pin: int, state: bool) -> None:
        if pin == self.reset_pin and state == self.reset_active_high:
            self.resets += 1
            threading.Thread(target=self.bench.restart, args=(HARD_RESET,), daemon=True).start()
