"""The event journal on the board's flash: the last N events, kept across resets.

Two segment files take turns.  Events are appended as fixed-size records, each
with its own CRC-32, to the active segment; when it holds ``records`` events the
other segment is emptied and becomes active, so between N and 2N events are
always kept and the flash used is bounded.

Power may fail at any byte.  A torn record at the end of a segment is dropped
when the journal is opened, and so is a record damaged in the middle (its CRC
fails) without losing the good records after it.  The good records are copied
to a temporary file that is renamed over the segment (rename is atomic on
LittleFS and POSIX), so a cut during the repair loses nothing either.

Only events are written; heartbeats and status never touch the flash.  Opening
reads one record at a time, so it needs no more heap for 256 records than for 8.

>>> j = Journal(".", records=64)
>>> j.open(visit=print)        # every intact event, oldest first
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


def _intact(path):
    """Yield the intact events of a segment in order, then None if anything was dropped."""
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        last_seq = 0
        dropped = False
        while True:
            record = f.read(RECORD_SIZE)
            if not record:
                break
            event = Event.unpack(record)
            if event is None or event.seq <= last_seq:
                dropped = True  # torn tail, or a damaged record: skip it, keep the rest
                continue
            last_seq = event.seq
            yield event
        if dropped:
            yield None


def read_segment(path):
    """The intact events of one segment, oldest first (for host tools and tests)."""
    return [e for e in _intact(path) if e is not None]


def read_events(folder="."):
    """Every intact event in the journal, oldest first, without changing the flash."""
    found = []
    for name in SEGMENTS:
        found.extend(read_segment(_path(folder, name)))
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

    def _segment(self, index):
        return _path(self.folder, SEGMENTS[index])

    def open(self, visit=None):
        """Repair damage, pick the active segment; call ``visit(event)`` for each kept event, oldest first."""
        repair = _path(self.folder, REPAIR_FILE)
        if _exists(repair):
            os.remove(repair)
        counts = [0, 0]
        newest = [None, None]
        for index in (0, 1):
            damaged = False
            for event in _intact(self._segment(index)):
                if event is None:
                    damaged = True
                else:
                    counts[index] += 1
                    newest[index] = event
            if damaged:
                self._rewrite(index)
        seqs = [e.seq if e else 0 for e in newest]
        self.active = 0 if seqs[0] >= seqs[1] else 1
        self.count = counts[self.active]
        self.last = newest[self.active]
        if visit is not None:
            for event in self._in_order():
                visit(event)

    def _in_order(self):
        for index in (1 - self.active, self.active):
            for event in _intact(self._segment(index)):
                if event is not None:
                    yield event

    # These read the segments to the end rather than stop early: an abandoned
    # generator would keep its file open until the next collection.

    def events_after(self, seq, limit):
        """Up to ``limit`` kept events with a sequence number above ``seq``, oldest first."""
        found = []
        for event in self._in_order():
            if event.seq > seq and len(found) < limit:
                found.append(event)
        return found

    def oldest_seq(self):
        """The sequence number of the oldest kept event, or 0 when the journal is empty."""
        oldest = 0
        for event in self._in_order():
            oldest = oldest or event.seq
        return oldest

    def _rewrite(self, index):
        repair = _path(self.folder, REPAIR_FILE)
        with open(repair, "wb") as out:
            for event in _intact(self._segment(index)):
                if event is not None:
                    out.write(event.pack())
        os.rename(repair, self._segment(index))

    def append(self, event):
        """Write one event; when this returns, the event survives a power cut."""
        if self.count >= self.records:
            self.active = 1 - self.active
            self.count = 0
            if _exists(self._segment(self.active)):
                os.remove(self._segment(self.active))
        with open(self._segment(self.active), "ab") as f:
            f.write(event.pack())
        self.count += 1
        self.last = event
