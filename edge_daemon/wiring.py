"""The two wires between the Pi and the board besides the UART, through gpiozero.

The **alarm line** is driven by the board while an alarm is latched, so the Pi
sees an alarm even when the UART or the serial protocol is broken.  The
**board reset** line lets the Pi pulse the board's reset input to recover a
hung board.  On a Pi gpiozero picks its pin factory (lgpio on a Pi 5); tests pass
gpiozero's ``MockFactory`` and wire its pins to the simulated bench.

>>> from gpiozero.pins.mock import MockFactory
>>> line = AlarmLine(17, active_high=True, on_change=print, pin_factory=MockFactory())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice


class AlarmLine:
    """Calls ``on_change(active)`` from gpiozero's thread when the line changes."""

    def __init__(self, pin: int, active_high: bool, on_change: Callable[[bool], object], pin_factory: Any = None):
        self.device = DigitalInputDevice(pin, pull_up=None, active_state=active_high, pin_factory=pin_factory)
        self.device.when_activated = lambda: on_change(True)
        self.device.when_deactivated = lambda: on_change(False)

    @property
    def active(self) -> bool:
        return bool(self.device.is_active)

    def close(self) -> None:
        self.device.close()


class BoardReset:
    """Holds the board's reset input for ``pulse_ms`` when asked."""

    def __init__(self, pin: int, active_high: bool, pulse_ms: int, pin_factory: Any = None):
        self.pulse_s = pulse_ms / 1000
        self.device = DigitalOutputDevice(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)

    def pulse(self) -> None:
        self.device.blink(on_time=self.pulse_s, off_time=0, n=1, background=True)

    def close(self) -> None:
        self.device.close()
