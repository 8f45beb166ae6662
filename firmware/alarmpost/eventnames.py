"""Words for event codes and zones, for people: consoles, logs and the centre's screens.

Kept apart from ``events`` so the board does not carry the text in its heap.

>>> describe(ev.Event(9, 1, 0, ev.PANIC, ev.RESTORE, ev.ZONE_BUTTON))
'panic restore, button'
"""

from alarmpost import events as ev

CODE_NAMES = {
    ev.PANIC: "panic",
    ev.DURESS: "duress",
    ev.SILENT_PANIC: "silent panic",
    ev.TAMPER: "tamper",
    ev.SYSTEM_TROUBLE: "system trouble",
    ev.AC_LOSS: "AC power loss",
    ev.LOW_BATTERY: "low battery",
    ev.SYSTEM_RESET: "system reset",
    ev.SELF_TEST_FAILURE: "self-test failure",
    ev.COMM_TROUBLE: "communication trouble",
    ev.EVENT_NOT_SENT: "failure to communicate events to the centre",
    ev.CANCEL: "cancel",
    ev.PANIC_RESET: "panic reset",
    ev.MANUAL_TEST: "manual test",
    ev.PERIODIC_TEST: "periodic test report",
    ev.LOG_FULL: "event log 90 % full",
    ev.LOG_OVERFLOW: "event log overflow",
}

ZONE_NAMES = {
    ev.ZONE_SYSTEM: "system",
    ev.ZONE_BUTTON: "button",
    ev.ZONE_TAMPER: "tamper",
    ev.ZONE_SUPPLY: "supply",
    ev.ZONE_KEY_SWITCH: "key switch",
    ev.ZONE_CONFIG: "config",
    ev.ZONE_OPERATOR: "operator",
    ev.ZONE_LINK: "serial link",
    ev.ZONE_ALARM_LINE: "alarm line",
    ev.ZONE_UPLINK: "uplink to the centre",
    ev.ZONE_SIREN: "siren",
}

# Reset causes carried by the boot (SYSTEM_RESET) event; numbers follow `machine`.
RESET_CAUSES = {
    1: "power on",
    2: "hard reset",
    3: "watchdog",
    4: "deep sleep",
    5: "soft reset",
}


def describe(event):
    what = CODE_NAMES.get(event.code, "event %d" % event.code)
    if event.qualifier == ev.RESTORE:
        what += " restore"
    return "%s, %s" % (what, ZONE_NAMES.get(event.zone, "zone %d" % event.zone))
