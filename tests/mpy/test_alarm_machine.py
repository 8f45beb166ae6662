# The alarm state machine on the MicroPython unix port, without hardware.
from alarmpost import events as ev
from alarmpost import patterns
from alarmpost.alarm import Alarm

shown = []
emitted = []
alarm = Alarm(lambda: shown.append((alarm.state, alarm.siren_allowed)), lambda *e: emitted.append(e))

assert alarm.state == "idle" and not alarm.latched
alarm.press()
assert shown[-1] == ("alarm", True), shown
assert emitted[-1] == (ev.PANIC, ev.NEW, ev.ZONE_BUTTON, ev.PRESS_FIRST)
alarm.press()
assert emitted[-1][3] == ev.PRESS_REPEAT

# acknowledge, silence; a new press sounds again
assert alarm.acknowledge() and alarm.state == "acknowledged" and alarm.siren_allowed
assert not alarm.acknowledge()
assert alarm.silence() and alarm.state == "silenced" and not alarm.siren_allowed
assert not alarm.silence()
alarm.press()
assert alarm.state == "alarm" and alarm.siren_allowed

# the cut-off stops the siren, never the latch
assert not alarm.check_siren_cutoff()
alarm.siren_cutoff_s = 0
assert alarm.check_siren_cutoff()
assert alarm.state == "alarm" and alarm.latched and not alarm.siren_allowed
assert not alarm.check_siren_cutoff()

# only reset() clears it, and it reports the presses
count = len(emitted)
assert alarm.reset(ev.ZONE_KEY_SWITCH)
assert emitted[count:] == [(ev.PANIC_RESET, ev.NEW, ev.ZONE_KEY_SWITCH, 3)], emitted[count:]
assert alarm.state == "idle" and not alarm.reset(ev.ZONE_KEY_SWITCH)

# what each situation shows
assert patterns.choose("alarm", True, False, False) == (patterns.STROBE_ALARM, patterns.SIREN_ALARM, patterns.LED_ALARM)
assert patterns.choose("alarm", False, True, True)[1] == patterns.OFF
assert patterns.choose("acknowledged", True, False, False)[1] == patterns.SIREN_ACKNOWLEDGED
assert patterns.choose("silenced", True, False, False)[:2] == (patterns.STROBE_ACKNOWLEDGED, patterns.OFF)
assert patterns.choose("idle", False, True, False) == (patterns.STROBE_TEST, patterns.SIREN_TEST, patterns.LED_TEST)
assert patterns.choose("idle", False, False, True)[2] == patterns.LED_TROUBLE
assert patterns.choose("idle", False, False, False) == (patterns.OFF, patterns.OFF, patterns.LED_HEALTHY)
print("OK")
