"""Input devices: the alarm button and the two-position switches (key switch, tamper).

Timing, all tunable as class attributes or per instance:

* ``glitch_ms`` (button, default 3 ms): an input must hold steady this long after
  its last edge to count.  A spike shorter than that raises nothing.
* The first steady press raises the alarm at once; contact bounce after it is
  masked for ``debounce_ms`` (50 ms), like a micropython-async Switch.
* ``long_press_ms`` (2 s) and ``stuck_ms`` (60 s) are measured from the press.

A press reaches the alarm ``glitch_ms`` after the contacts stop bouncing:
typically 4-7 ms for a real push button.

>>> button = Button(2, active_low=True, on_press=alarm.press)
>>> asyncio.create_task(button.run())
"""

import asyncio
import time

from machine import Pin

_PULLS = {"up": Pin.PULL_UP, "down": Pin.PULL_DOWN, "none": None}


def _ignore(*args):
    pass


class SenseInput:
    """A plain input read when asked, no debounce: the siren's current sense (active while current flows)."""

    def __init__(self, pin, active_low=False, pull="none"):
        self.active_value = 0 if active_low else 1
        self.pin = Pin(pin, Pin.IN, _PULLS[pull])

    @property
    def is_active(self):
        return self.pin.value() == self.active_value


class DigitalInput:
    """A GPIO input that records its last edge and wakes its task on every edge."""

    poll_ms = 50  # how often a held input is looked at

    def __init__(self, pin, active_low=True, pull="up"):
        self.active_value = 0 if active_low else 1
        self.pin = Pin(pin, Pin.IN, _PULLS[pull])
        self.last_edge = time.ticks_ms()
        self._edge = asyncio.ThreadSafeFlag()
        self.pin.irq(self._on_edge, Pin.IRQ_RISING | Pin.IRQ_FALLING)

    def _on_edge(self, pin):
        self.last_edge = time.ticks_ms()
        self._edge.set()

    @property
    def is_active(self):
        return self.pin.value() == self.active_value

    def _quiet_ms(self):
        return time.ticks_diff(time.ticks_ms(), self.last_edge)

    async def settle(self, steady_ms):
        """Wait until the input has had no edge for ``steady_ms``; return whether it is active."""
        while True:
            quiet = self._quiet_ms()
            if quiet >= steady_ms:
                return self.is_active
            await asyncio.sleep_ms(steady_ms - quiet)

    async def wait_edge(self, timeout_ms):
        """Wait for an edge or ``timeout_ms``, whichever comes first."""
        try:
            await asyncio.wait_for_ms(self._edge.wait(), timeout_ms)
        except asyncio.TimeoutError:
            pass

    def forget_edges(self):
        self._edge.clear()


class Button(DigitalInput):
    """The alarm button: glitch filter, latching press, long press and stuck detection.

    Callbacks: ``on_press(at_boot)``, ``on_long_press()``, ``on_stuck(stuck)``,
    ``on_release()``.
    """

    glitch_ms = 3
    debounce_ms = 50
    long_press_ms = 2000
    stuck_ms = 60000

    def __init__(self, pin, active_low=True, pull="up", **callbacks):
        super().__init__(pin, active_low, pull)
        self.on_press = callbacks.get("on_press", _ignore)
        self.on_long_press = callbacks.get("on_long_press", _ignore)
        self.on_stuck = callbacks.get("on_stuck", _ignore)
        self.on_release = callbacks.get("on_release", _ignore)
        self.presses = 0

    async def run(self):
        if self.is_active and await self.settle(self.glitch_ms):
            await self._pressed(at_boot=True)
        while True:
            await self._edge.wait()
            if await self.settle(self.glitch_ms):
                await self._pressed(at_boot=False)

    async def _pressed(self, at_boot):
        pressed_at = time.ticks_ms()
        self.presses += 1
        self.on_press(at_boot)
        await asyncio.sleep_ms(self.debounce_ms)
        long_sent = stuck = False
        while self.is_active or await self.settle(self.debounce_ms):
            held = time.ticks_diff(time.ticks_ms(), pressed_at)
            if not long_sent and held >= self.long_press_ms:
                long_sent = True
                self.on_long_press()
            if not stuck and held >= self.stuck_ms:
                stuck = True
                self.on_stuck(True)
            await self.wait_edge(self.poll_ms)
        if stuck:
            self.on_stuck(False)
        self.forget_edges()
        self.on_release()


class Switch(DigitalInput):
    """A two-position contact (key switch, tamper loop), debounced; calls ``on_change(active)``."""

    debounce_ms = 50

    def __init__(self, pin, active_low=True, pull="up", on_change=_ignore):
        super().__init__(pin, active_low, pull)
        self.on_change = on_change
        self.active = self.is_active

    async def run(self, report_initial=False):
        if report_initial and self.active:
            self.on_change(True)
        while True:
            await self._edge.wait()
            now_active = await self.settle(self.debounce_ms)
            if now_active != self.active:
                self.active = now_active
                self.on_change(now_active)
