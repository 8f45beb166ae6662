# Supply thresholds with hysteresis and confirmation time, on the unix port.
from time import ticks_add

from alarmpost import events as ev
from alarmpost.supply import Condition

ac = Condition(ev.AC_LOSS, 13.0)
# a dip shorter than the confirmation time is ignored
assert not ac.update(12.5, 0, 0.3, 1000)
assert not ac.update(13.5, 500, 0.3, 1000)
assert not ac.update(12.5, 600, 0.3, 1000)
assert not ac.update(12.5, 1500, 0.3, 1000)
assert ac.update(12.5, 1600, 0.3, 1000) and ac.active
# inside the hysteresis band nothing changes
assert not ac.update(13.2, 2000, 0.3, 1000)
assert not ac.update(13.2, 9000, 0.3, 1000) and ac.active
# above threshold + hysteresis for the confirmation time: restored
assert not ac.update(13.4, 10000, 0.3, 1000)
assert ac.update(13.4, 11000, 0.3, 1000) and not ac.active
# ticks wrap around on a board: differences still work

start = ticks_add(0, -300)
assert not ac.update(12.0, start, 0.3, 1000)
assert ac.update(12.0, ticks_add(start, 1000), 0.3, 1000)
print("OK")
