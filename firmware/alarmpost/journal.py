"""The event journal on the board's flash: every event, kept until the Pi has stored it.

Events are fixed-size records (``Event.pack``: 20 bytes with their own CRC-32) in
segment files under ``journal/``.  Each event goes to one of three rings by its
class (``klass``): alarms (panic and its kin, their resets), troubles (tamper,
supply, link, boot, the log's own reports), restores and tests.  A ring is its
files ``<class>.<n>`` in the order of ``n``; a file holds up to ``records``
events in ascending ``seq`` and only the newest file of a ring is appended to.

The Pi acknowledges what it has stored (``set_acked``, from the link).  A
segment whose events the Pi has all stored is deleted (each ring keeps its
newest); one holding an event the Pi has not stored is kept, and the journal
grows while the flash given to it (``flash_bytes``, the board file's
``journal_bytes``) has room for another segment.  When it has none,
``journalfull`` makes room by priority: repeated changes of one input are folded
to the first and the latest; then restores and tests go, then troubles; an alarm
goes only when nothing of a lower class is left.  ``dropped`` counts what went,
for the post's 623 and 624 reports.

RAM holds two short lists a ring (name and first seq of each segment) and the
last seq and count of its newest: ``events_after`` goes straight to the segment
and finds the record by a binary search in it.  Opening (``journalfiles``,
loaded at boot and dropped after) reads two records a segment plus the newest
segment of each ring.

Power may fail at any byte.  A record is written with its file opened, written
and closed before ``append`` returns; a torn record can only be at the end of a
ring's newest segment, and opening drops it.  A segment is rewritten only
through a temporary file renamed over it (atomic on LittleFS and POSIX).  A
merge of two segments renames the result over the newer and then deletes the
older: a cut in between leaves two segments whose seq ranges overlap, and
opening drops from the newer what the older holds, so nothing is lost either way.
A segment holding the newest event is deleted only once a newer one is written,
so ``seq`` always goes on after a cut.

>>> j = Journal(".", records=200, flash_bytes=524288)
>>> j.open(visit=print)        # the newest segment of each ring, oldest event first
>>> j.append(some_event)       # True: written and closed before it returns
>>> j.set_acked(41)            # the Pi has stored everything up to seq 41
"""

import gc
import os

from alarmpost import events as ev
from alarmpost import unload
from alarmpost.events import RECORD_SIZE, Event

FOLDER = "journal"
TEMP = "tmp"
NEWEST = "last"  # the newest event, written only when the journal could not keep it

# Rings, lowest priority first
RESTORES = 0
TROUBLES = 1
ALARMS = 2
RINGS = 3


def klass(event):
    """The ring of an event: ALARMS, TROUBLES or RESTORES (restores and tests)."""
    code = event.code
    if 620 <= code < 630:
        return TROUBLES  # the log's own reports, new or restored
    if event.qualifier == ev.RESTORE or 600 <= code < 700:
        return RESTORES
    if (100 <= code < 200 and code != ev.TAMPER) or code in (ev.CANCEL, ev.PANIC_RESET):
        return ALARMS
    return TROUBLES


def _join(folder, name):
    return name if folder in ("", ".") else folder + "/" + name


def _remove(path):  # every change to the flash's files goes through these two and ``open``
    os.remove(path)


def _rename(old, new):
    os.rename(old, new)


class Journal:
    """Power-safe store of the board's events, holding each until the Pi has stored it."""

    records = 200  # events a segment, 4,000 bytes: one 4 KB block (config.json: journal_records)
    flash_bytes = 65536  # flash given to the journal (board file: journal_bytes)
    block_bytes = 4096  # the filesystem's block; a file takes whole blocks (board file: fs_block_bytes)
    min_segments = 4  # one a ring, and one to turn over

    def __init__(self, folder=".", records=None, flash_bytes=None, block_bytes=None):
        self.folder = _join(folder, FOLDER)
        if records is not None:
            self.records = records
        block = block_bytes or self.block_bytes
        per_segment = -(-self.records * RECORD_SIZE // block) * block
        # one segment's flash stays free for the temporary file of a rewrite
        self.max_segments = max(self.min_segments, (flash_bytes or self.flash_bytes) // per_segment - 1)
        self.acked = 0  # the Pi's stored seq; 0 (nothing) until it says, so after a reset nothing is freed early
        self.dropped = 0  # events folded or dropped before the Pi stored them, since the start
        self.last = None  # the newest event written
        # the index: two ints a segment, and the newest segment's last seq and count a ring
        self._names = [[] for _ in range(RINGS)]
        self._first = [[] for _ in range(RINGS)]
        self._tail_last = [0] * RINGS
        self._tail_count = [0] * RINGS
        self._next = 1
        self._doomed = None  # a segment to delete once the next record is on flash
        self._fill = None  # fill_pct, until the index changes

    # -- the index -------------------------------------------------------------------

    def _path(self, ring, n):
        return self.folder + "/%d.%d" % (ring, n)

    def segments(self):
        return len(self._names[0]) + len(self._names[1]) + len(self._names[2])

    def room(self, ring):
        """Events ``ring`` takes before room must be made for one (by folding or dropping)."""
        tail = 0 if self._full(ring) else self.records - self._tail_count[ring]
        return tail + (self.max_segments - self.segments()) * self.records

    def capacity(self):
        """Events the journal holds when every segment is full."""
        return self.max_segments * self.records

    def _add(self, ring, n, first, last, count):
        """A new newest segment for ``ring``."""
        self._names[ring].append(n)
        self._first[ring].append(first)
        self._tail_last[ring] = last
        self._tail_count[ring] = count

    def _forget(self, ring, index):
        self._names[ring].pop(index)
        self._first[ring].pop(index)

    def _last_of(self, ring, index):
        """A segment's last seq; for one a newer follows in its ring, a bound just above it (no RAM for it)."""
        firsts = self._first[ring]
        return self._tail_last[ring] if index == len(firsts) - 1 else firsts[index + 1] - 1

    def fill_pct(self):
        """How full the journal is of what the Pi has not stored, in percent.

        A segment counts whole once a newer one follows it in its ring (it takes its
        flash however few events it keeps), and not at all once the Pi has stored it.
        """
        if self._fill is not None:
            return self._fill
        used = 0
        for ring in range(RINGS):
            newest = len(self._names[ring]) - 1
            for index in range(newest + 1):
                if self._last_of(ring, index) > self.acked:
                    used += self._tail_count[ring] if index == newest else self.records
        self._fill = used * 100 // self.capacity()
        return self._fill

    # -- opening -----------------------------------------------------------------------

    def open(self, visit=None):
        """Repair what a power cut left; ``visit(event)`` for the newest segment of each ring, oldest event first."""
        from alarmpost import journalfiles

        try:
            journalfiles.open_journal(self, visit)
            self._fill = None
        finally:
            unload("journalfiles")  # needed only at boot
            unload("journaltools")

    # -- reading -----------------------------------------------------------------------

    def oldest_seq(self):
        """The sequence number of the oldest kept event, or 0 when the journal is empty."""
        oldest = 0
        for ring in range(RINGS):
            if self._first[ring] and (not oldest or self._first[ring][0] < oldest):
                oldest = self._first[ring][0]
        return oldest

    def events_after(self, seq, limit):
        """Up to ``limit`` kept events with a sequence number above ``seq``, oldest first."""
        found = []
        for ring in range(RINGS):
            self._ring_after(ring, seq, limit, found)
        return found

    def _ring_after(self, ring, seq, limit, found):
        """Merge a ring's events above ``seq`` into ``found``, which never holds more than ``limit``."""
        firsts = self._first[ring]
        low, high = 0, len(firsts)
        while low < high:  # the first segment starting above seq
            mid = (low + high) // 2
            if firsts[mid] <= seq:
                low = mid + 1
            else:
                high = mid
        index = low - 1 if low and self._last_of(ring, low - 1) > seq else low
        while index < len(firsts):
            with open(self._path(ring, self._names[ring][index]), "rb") as f:
                count = f.seek(0, 2) // RECORD_SIZE
                position = _position(f, count, seq) if firsts[index] <= seq else 0
                f.seek(position * RECORD_SIZE)
                while position < count:
                    event = Event.unpack(f.read(RECORD_SIZE))
                    position += 1
                    if event is None or event.seq <= seq:  # a record damaged since it was written is skipped
                        continue
                    if len(found) == limit and event.seq > found[-1].seq:
                        return  # nothing more in this ring comes early enough
                    at = len(found)
                    while at and found[at - 1].seq > event.seq:
                        at -= 1
                    found.insert(at, event)
                    if len(found) > limit:
                        found.pop()
            index += 1

    # -- writing -----------------------------------------------------------------------

    def append(self, event):
        """Write one event: True once it survives a power cut.

        False: the journal is full of events that rank above it, so this one is the
        one dropped (still counted in ``dropped``, and kept aside so ``seq`` goes on).
        """
        ring = klass(event)
        if self._full(ring) and self.segments() >= self.max_segments and not self._make_room(ring, event):
            self.last = event  # kept aside in journal/last: seq goes on after a reset
            return False
        new = self._full(ring)
        n = self._next if new else self._names[ring][-1]
        with open(self._path(ring, n), "ab") as f:
            f.write(event.pack())
        if new:
            self._next += 1
            self._add(ring, n, event.seq, event.seq, 1)
        else:
            self._tail_last[ring] = event.seq
            self._tail_count[ring] += 1
        self.last = event
        self._fill = None
        if self._doomed is not None:
            _remove(self._doomed)
            self._doomed = None
        return True

    def _full(self, ring):
        return not self._names[ring] or self._tail_count[ring] >= self.records

    def set_acked(self, seq):
        """The Pi has stored every event up to ``seq``: segments it has all of go (each ring keeps its newest)."""
        if seq <= self.acked:
            return
        self.acked = seq
        self._fill = None
        for ring in range(RINGS):
            while len(self._names[ring]) > 1 and self._first[ring][1] <= seq + 1:
                self._delete(ring, 0)

    def _make_room(self, ring, event):
        gc.collect()  # room for the modules, needed only while the flash is full
        from alarmpost import journalfull

        try:
            return journalfull.make_room(self, ring, event)
        finally:
            unload("journalfull")
            unload("journalfiles")

    def _delete(self, ring, index):
        path = self._path(ring, self._names[ring][index])
        holds_newest = self.last is not None and self._last_of(ring, index) == self.last.seq
        self._forget(ring, index)
        if holds_newest:
            self._doomed = path  # the newest seq must survive a cut: it goes once the next record is written
        else:
            _remove(path)


def _position(f, count, seq):
    """The index of the first record above ``seq`` in an open segment of ``count`` records (binary search)."""
    low, high = 0, count
    while low < high:
        mid = (low + high) // 2
        f.seek(mid * RECORD_SIZE)
        event = Event.unpack(f.read(RECORD_SIZE))
        if event is None:
            return 0  # damaged since it was written: read the segment from its start
        if event.seq <= seq:
            low = mid + 1
        else:
            high = mid
    return low
