"""The event journal on the board's flash: the last N events, kept across resets.

Two segment files take turns.  Events are appended as fixed-size records, each
with its own CRC-32, to the active segment; when it holds ``records`` events the
other segment is emptied and becomes active, so between N and 2N events are
always kept and the flash used is bounded.

Power may fail at any byte.  A torn record at the end of a segment fails its CRC
and is dropped when the journal is opened; the good records before it are copied
to a temporary file that is renamed over the segment (rename is atomic on
LittleFS and POSIX), so a cut during the repair loses nothing either.

Only events are written; heartbeats and status never touch the flash.

>>> j = Journal(".", records=64)
>>> events = j.open()          # every intact event, oldest first
>>> j.append(some_event)       # written and closed before it returns
"""

import os

from alarmpost.events import RECORD_SIZE, Event

SEGMENTS = ("journal.0", "journal.1")
REPAIR_FILE = "journal.tmp"


def _path(folder, name):
    return name if folder in ("", ".") else folder + "/" + name


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def read_segment(path):
    """(intact events, size of the intact prefix in bytes, file size)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return [], 0, 0
    events = []
    good = 0
    while good + RECORD_SIZE <= len(data):
        event = Event.unpack(data[good : good + RECORD_SIZE])
        if event is None or (events and event.seq <= events[-1].seq):
            break
        events.append(event)
        good += RECORD_SIZE
    return events, good, len(data)


def read_events(folder="."):
    """Every intact event in the journal, oldest first, without changing the flash."""
    found = []
    for name in SEGMENTS:
        found.extend(read_segment(_path(folder, name))[0])
    found.sort(key=lambda e: e.seq)
    return found


class Journal:
    """Append-only, power-safe store of the board's recent events."""

    records = 64

    def __init__(self, folder=".", records=None):
        self.folder = folder
        if records is not None:
            self.records = records
        self.active = 0
        self.count = 0
        self.last = None

    def open(self):
        """Repair torn tails, pick the active segment and return the kept events."""
        repair = _path(self.folder, REPAIR_FILE)
        if _exists(repair):
            os.remove(repair)
        segments = []
        for name in SEGMENTS:
            path = _path(self.folder, name)
            events, good, size = read_segment(path)
            if good != size:
                self._rewrite(path, good)
            segments.append(events)
        newest = [s[-1].seq if s else 0 for s in segments]
        self.active = 0 if newest[0] >= newest[1] else 1
        self.count = len(segments[self.active])
        kept = segments[0] + segments[1]
        kept.sort(key=lambda e: e.seq)
        self.last = kept[-1] if kept else None
        return kept

    def _rewrite(self, path, good):
        repair = _path(self.folder, REPAIR_FILE)
        with open(path, "rb") as f:
            data = f.read(good)
        with open(repair, "wb") as f:
            f.write(data)
        os.rename(repair, path)

    def append(self, event):
        """Write one event; when this returns, the event survives a power cut."""
        if self.count >= self.records:
            self.active = 1 - self.active
            self.count = 0
            path = _path(self.folder, SEGMENTS[self.active])
            if _exists(path):
                os.remove(path)
        with open(_path(self.folder, SEGMENTS[self.active]), "ab") as f:
            f.write(event.pack())
        self.count += 1
        self.last = event
