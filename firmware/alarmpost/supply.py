"""Supply monitor: the ADC's view of the supply voltage -> AC-loss and low-battery events.

A post runs from a 13.8 V charger with a 12 V standby battery.  Mains present
holds the rail near 13.8 V; on battery it sags towards 12 V and below.  Each
condition starts when the voltage stays below its threshold for
``confirm_ms`` and is restored when it stays above threshold + ``hysteresis_v``
as long, so a slow sag or a noisy reading gives one event, not a stream.

>>> supply = Supply(ADC(26), full_scale_v=18.0, on_change=post.supply_changed)
>>> asyncio.create_task(supply.run())
"""

import asyncio
import time

from alarmpost import events


class Condition:
    """One supply condition with threshold, hysteresis and confirmation time."""

    def __init__(self, code, threshold_v):
        self.code = code
        self.threshold_v = threshold_v
        self.active = False
        self._since = None

    def update(self, volts, now, hysteresis_v, confirm_ms):
        """Feed a reading; return True when the condition starts or ends."""
        if self.active:
            wants_change = volts >= self.threshold_v + hysteresis_v
        else:
            wants_change = volts < self.threshold_v
        if not wants_change:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        if time.ticks_diff(now, self._since) < confirm_ms:
            return False
        self.active = not self.active
        self._since = None
        return True


class Supply:
    poll_ms = 1000
    confirm_ms = 5000
    hysteresis_v = 0.3

    def __init__(self, adc, full_scale_v, ac_loss_v, low_battery_v, on_change):
        self.adc = adc
        self.full_scale_v = full_scale_v
        self.conditions = (Condition(events.AC_LOSS, ac_loss_v), Condition(events.LOW_BATTERY, low_battery_v))
        self.on_change = on_change
        self.volts = None

    def read_volts(self):
        return self.adc.read_u16() * self.full_scale_v / 65535

    def check(self, now=None):
        self.volts = self.read_volts()
        now = time.ticks_ms() if now is None else now
        for condition in self.conditions:
            if condition.update(self.volts, now, self.hysteresis_v, self.confirm_ms):
                self.on_change(condition.code, condition.active, self.volts)

    async def run(self):
        while True:
            self.check()
            await asyncio.sleep_ms(self.poll_ms)
