"""Output devices: strobe, siren, status LED and the hard-wired alarm line.

Each patterned output plays one pattern at a time in its own asyncio task.
``show(pattern)`` switches at once: the first step is driven before it returns,
so a press lights the strobe and starts the siren without waiting for the
scheduler; the task then carries the pattern on.

A blink pattern is a tuple of on/off durations in ms, starting with "on"; ``()``
is off.  Siren patterns are ``("sweep",)`` (a wail between the configured low and
high tones), ``("beep", on_ms, off_ms)`` or ``()``.

>>> strobe = Strobe(15, pwm_hz=1000)
>>> strobe.show(patterns.STROBE_ALARM)
"""

import asyncio

from machine import PWM, Pin

FULL = 65535


class DigitalOutput:
    """A GPIO output with an active level."""

    def __init__(self, pin, active_low=False):
        self._active_low = active_low
        self.pin = Pin(pin, Pin.OUT, value=1 if active_low else 0)
        self.is_on = False

    def set(self, on):
        self.is_on = bool(on)
        self.pin.value(self.is_on ^ self._active_low)


class PwmOutput:
    """A PWM output; ``level`` is 0..65535 of full drive, inverted for active-low wiring."""

    def __init__(self, pin, freq, active_low=False):
        self._active_low = active_low
        self.pwm = PWM(Pin(pin, Pin.OUT), freq=freq, duty_u16=FULL if active_low else 0)

    def drive(self, level):
        self.pwm.duty_u16(FULL - level if self._active_low else level)


class Patterned:
    """Mixin: plays a pattern in a task; ``show`` restarts it from its first step."""

    pattern = ()
    _task = None

    def show(self, pattern):
        if pattern == self.pattern and self._task is not None:
            return
        self.pattern = pattern
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.step(pattern, 0)
        if len(pattern) > 1 or (pattern and pattern[0] == "sweep"):
            self._task = asyncio.create_task(self._play(pattern))

    def alive(self):
        return self._task is None or not self._task.done()

    async def _play(self, pattern):
        index = 0
        while True:
            await asyncio.sleep_ms(pattern[index])
            index = (index + 1) % len(pattern)
            self.step(pattern, index)


class Blinker(Patterned, DigitalOutput):
    """An on/off output (status LED) that plays blink patterns."""

    def step(self, pattern, index):
        self.set(bool(pattern) and index % 2 == 0 and pattern[index] > 0)


class Strobe(Patterned, PwmOutput):
    """The strobe: blink patterns, each flash at ``duty_pct`` of full drive."""

    duty_pct = 100

    def step(self, pattern, index):
        on = bool(pattern) and index % 2 == 0 and pattern[index] > 0
        self.is_on = on
        self.drive(FULL * self.duty_pct // 100 if on else 0)


class Siren(Patterned, PwmOutput):
    """The siren: a PWM tone between ``low_hz`` and ``high_hz`` at ``duty_pct``."""

    low_hz = 700
    high_hz = 1600
    sweep_ms = 1200
    step_ms = 40
    duty_pct = 50
    sense = None  # its current-sense input, where the board has one (wiring sets it)
    check = "none"  # the last check (Post.check_siren): none, pending, ok, open, sounding

    is_on = False

    def tone(self, hz):
        self.pwm.freq(hz)

    def sound(self, on):
        self.is_on = on
        self.drive(FULL * self.duty_pct // 100 if on else 0)

    def step(self, pattern, index):
        if not pattern:
            if self.check != "pending":  # a check's chirp owns the silent siren until it ends
                self.sound(False)
        elif pattern[0] == "sweep":
            self.tone(self.low_hz)
            self.sound(True)
        else:
            self.tone(self.high_hz)
            self.sound(index == 0)

    def sweep_tones(self):
        """The tones of one rise-and-fall of the wail, one per ``step_ms``."""
        steps = max(2, self.sweep_ms // (2 * self.step_ms))
        span = self.high_hz - self.low_hz
        rise = [self.low_hz + span * i // steps for i in range(steps)]
        return rise + [self.high_hz - span * i // steps for i in range(steps)]

    async def _play(self, pattern):
        if pattern[0] != "sweep":
            on_ms, off_ms = pattern[1], pattern[2]
            while True:
                await asyncio.sleep_ms(on_ms)
                self.sound(False)
                await asyncio.sleep_ms(off_ms)
                self.sound(True)
        tones = self.sweep_tones()
        while True:
            for hz in tones:
                self.tone(hz)
                await asyncio.sleep_ms(self.step_ms)


class NullOutput:
    """Stands in for an output whose pin is missing or invalid in the board file."""

    is_on = False
    pattern = ()
    sense = None
    check = "none"

    def show(self, pattern):
        self.pattern = pattern

    def set(self, on):
        pass

    def alive(self):
        return True
