"""Event codes and the event record, defined once for firmware, daemon, bench and tests.

Codes are Ademco Contact ID event codes, so any alarm receiver understands them.
The qualifier says whether an event is new (1) or a restore (3).

>>> from alarmpost import events
>>> e = events.Event(7, 2, 1500, events.PANIC, events.NEW, events.ZONE_BUTTON, 1)
>>> events.Event.unpack(e.pack()) == e
True
"""

import struct

try:
    from binascii import crc32
except ImportError:  # pragma: no cover - every supported port has binascii.crc32
    from zlib import crc32

# Contact ID event codes
PANIC = 120
DURESS = 121
SILENT_PANIC = 122
TAMPER = 137
SYSTEM_TROUBLE = 300
AC_LOSS = 301
LOW_BATTERY = 302
SYSTEM_RESET = 305
SELF_TEST_FAILURE = 307
COMM_TROUBLE = 350
EVENT_NOT_SENT = 354  # failure to communicate an event: the centre has not confirmed it in time
CANCEL = 406
PANIC_RESET = 465
MANUAL_TEST = 601
PERIODIC_TEST = 602
LOG_FULL = 623  # the board's event journal is 90 % full of events the Pi has not stored
LOG_OVERFLOW = 624  # events were folded or dropped from the journal before the Pi stored them

# Contact ID qualifiers
NEW = 1
RESTORE = 3

# Zones: which part of the post an event is about
ZONE_SYSTEM = 0
ZONE_BUTTON = 1
ZONE_TAMPER = 2
ZONE_SUPPLY = 3
ZONE_KEY_SWITCH = 4
ZONE_CONFIG = 5
ZONE_OPERATOR = 6
ZONE_LINK = 7  # the serial link between the board and the Pi
ZONE_ALARM_LINE = 8  # the hard-wired alarm line, as the Pi sees it
ZONE_UPLINK = 9  # the Pi's path to the monitoring centre
ZONE_SIREN = 10  # the siren and its wiring, as its current-sense input sees them

# Values carried by panic events
PRESS_FIRST = 1  # the press that raised the alarm
PRESS_REPEAT = 2  # a press while the alarm was already latched
PRESS_LONG = 3  # the button has been held for long_press_ms
PRESS_AT_BOOT = 4  # the button was held while the board started

# Values carried by system-trouble events from the button zone
TROUBLE_STUCK_BUTTON = 1

_RECORD = "<IIHHBBH"
RECORD_SIZE = struct.calcsize(_RECORD) + 4  # payload + CRC-32


class Event:
    """One event: what happened, where, and its place in the board's history.

    ``seq`` grows by one per event for the life of the board (it survives resets);
    ``boot`` counts board starts; ``uptime_ms`` is time since that start.
    """

    def __init__(self, seq, boot, uptime_ms, code, qualifier, zone, value=0):
        self.seq = seq
        self.boot = boot
        self.uptime_ms = uptime_ms
        self.code = code
        self.qualifier = qualifier
        self.zone = zone
        self.value = value

    def fields(self):
        return (self.seq, self.boot, self.uptime_ms, self.code, self.qualifier, self.zone, self.value)

    def __eq__(self, other):
        return isinstance(other, Event) and self.fields() == other.fields()

    def __repr__(self):
        return "Event(%d, %d, %d, %d, %d, %d, %d)" % self.fields()

    def pack(self):
        """The fixed-size journal record: fields, then a CRC-32 over them."""
        body = struct.pack(
            _RECORD,
            self.seq,
            self.uptime_ms & 0xFFFFFFFF,
            self.boot & 0xFFFF,
            self.code,
            self.qualifier,
            self.zone,
            self.value & 0xFFFF,
        )
        return body + struct.pack("<I", crc32(body) & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, record):
        """Rebuild an event from a journal record, or return None if the record is damaged."""
        if len(record) != RECORD_SIZE:
            return None
        body = record[:-4]
        (crc,) = struct.unpack("<I", record[-4:])
        if crc != crc32(body) & 0xFFFFFFFF:
            return None
        seq, uptime, boot, code, qual, zone, value = struct.unpack(_RECORD, body)
        if seq == 0:
            return None
        return cls(seq, boot, uptime, code, qual, zone, value)

    def console_line(self):
        """The line the firmware prints for each committed event (read by the bench)."""
        return "EV %d %d %d %d %d %d %d" % self.fields()


def parse_console_line(line):
    """The event in a console line printed by ``console_line``, or None."""
    parts = line.split()
    if len(parts) != 8 or parts[0] != "EV":
        return None
    try:
        return Event(*[int(p) for p in parts[1:8]])
    except ValueError:
        return None
