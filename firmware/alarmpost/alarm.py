"""The alarm state machine: idle -> alarm (latched) -> acknowledged -> silenced -> reset.

Rules (GB 50394-2007 5.2.3): the alarm latches on the first press; only a person
resets it, with the key switch at the post or an authenticated operator command;
no timer ever clears it.  Every press is recorded, latched or not.  A press
while latched sounds the siren again (someone is still pressing: the danger is
still there).  The siren stops ``siren_cutoff_s`` after it last started; the
strobe goes on until reset.

The machine decides and reports; ``show`` (the outputs), ``emit`` (the journal)
and ``persist`` (keeps the latch across power cuts) are passed in, so it runs the
same on a board, the bench and in tests.  The order is outputs, latch, record:
a power cut at any point leaves the alarm latched after the restart.

>>> alarm = Alarm(show=outputs.show, emit=post.emit)
>>> alarm.press()
>>> alarm.state
'alarm'
"""

import time

from alarmpost import events
from alarmpost.patterns import ACKNOWLEDGED, ALARM, IDLE, LATCHED, SILENCED


class Alarm:
    siren_cutoff_s = 180

    def __init__(self, show, emit, persist=None):
        self._show = show
        self._emit = emit
        self._persist = persist or (lambda latched: None)
        self.state = IDLE
        self.presses = 0
        self.siren_started = None  # ticks_ms when the siren last started; None when not allowed

    @property
    def latched(self):
        return self.state in LATCHED

    @property
    def siren_allowed(self):
        return self.siren_started is not None

    def _enter(self, state, siren):
        self.state = state
        if siren:
            self.siren_started = time.ticks_ms()
        elif siren is not None:
            self.siren_started = None
        self._show()

    def press(self, value=events.PRESS_FIRST):
        """The button was pressed: light and sound first, then record."""
        was_latched = self.latched
        if was_latched and value == events.PRESS_FIRST:
            value = events.PRESS_REPEAT
        self._enter(ALARM, siren=True)
        if not was_latched:
            self._persist(True)
        self.presses += 1
        self._emit(events.PANIC, events.NEW, events.ZONE_BUTTON, value)

    def long_press(self):
        self._emit(events.PANIC, events.NEW, events.ZONE_BUTTON, events.PRESS_LONG)

    def restore_latched(self, presses):
        """After a reset of the board, raise a latched alarm again (no new event)."""
        self.presses = presses
        self._enter(ALARM, siren=True)

    def acknowledge(self):
        """The centre has seen the alarm: help is coming.  True if the state changed."""
        if self.state != ALARM:
            return False
        self._enter(ACKNOWLEDGED, siren=None)
        return True

    def silence(self):
        if not self.latched or self.state == SILENCED:
            return False
        self._enter(SILENCED, siren=False)
        return True

    def reset(self, zone):
        """A person resets the alarm (key switch or operator).  True if it was latched."""
        if not self.latched:
            return False
        presses = self.presses
        self.presses = 0
        self._enter(IDLE, siren=False)
        self._emit(events.PANIC_RESET, events.NEW, zone, presses)
        self._persist(False)  # after the record: a cut in between re-raises, never loses, the alarm
        return True

    def check_siren_cutoff(self):
        """Stop the siren once it has sounded for ``siren_cutoff_s``; the strobe goes on."""
        if self.siren_started is None:
            return False
        if time.ticks_diff(time.ticks_ms(), self.siren_started) < self.siren_cutoff_s * 1000:
            return False
        self.siren_started = None
        self._show()
        return True
