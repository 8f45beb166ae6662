"""The journal's files at boot: opened, checked and repaired.  Also the rewrite helpers for ``journalfull``.

Loaded by ``Journal.open`` and dropped after it, and while the journal makes room.

Opening reads two records of each segment (first and last) and every record of
the newest segment of each ring, where a cut can have torn the tail.  A damaged
record is dropped and the good ones after it kept; a segment whose seq range
overlaps the one before it in its ring (a merge cut between its rename and its
delete) keeps only what is above the older one's range.  Anything dropped is
rewritten through a temporary file renamed over the segment; a cut during that
leaves the original, repaired again at the next boot.
"""

import os

from alarmpost.events import RECORD_SIZE, Event
from alarmpost.journal import NEWEST, RINGS, TEMP, _join, _remove, _rename

LEGACY = ("journal.0", "journal.1", "journal.tmp")  # the two-segment journal of firmware 0.2


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _records(path, floor=0):
    """Yield the intact events of a file above ``floor``, in order, then None if anything was skipped."""
    try:
        f = open(path, "rb")
    except OSError:
        return
    with f:
        last_seq = floor
        skipped = False
        while True:
            record = f.read(RECORD_SIZE)
            if not record:
                break
            event = Event.unpack(record)
            if event is None or event.seq <= last_seq:
                skipped = True  # torn tail, damaged record, or held by an older segment: keep the rest
                continue
            last_seq = event.seq
            yield event
        if skipped:
            yield None


def replace(journal, path, events):
    """Write ``events`` to the temporary file and rename it over ``path``; returns how many."""
    temp = journal.folder + "/" + TEMP
    written = 0
    with open(temp, "wb") as out:
        for event in events:
            if event is not None:
                out.write(event.pack())
                written += 1
    _rename(temp, path)
    return written


def learn_tail(journal, ring):
    """The newest segment of ``ring`` changed without an append: read its last seq and count from the flash."""
    if not journal._names[ring]:
        return
    with open(journal._path(ring, journal._names[ring][-1]), "rb") as f:
        count = f.seek(0, 2) // RECORD_SIZE
        f.seek((count - 1) * RECORD_SIZE)
        event = Event.unpack(f.read(RECORD_SIZE))
    journal._tail_count[ring] = count
    journal._tail_last[ring] = event.seq if event is not None else journal._first[ring][-1]


def _segment_numbers(journal):
    rings = [[] for _ in range(RINGS)]
    listdir = getattr(os, "ilistdir", None)  # one name at a time: no list of them all on the heap
    try:
        names = listdir(journal) if listdir else [(name,) for name in os.listdir(journal)]  # CPython: host tools
    except OSError:
        return rings
    for entry in names:
        ring, dot, number = entry[0].partition(".")
        if dot and ring in ("0", "1", "2") and number.isdigit():
            rings[int(ring)].append(int(number))
    for numbers in rings:
        numbers.sort()
    return rings


def open_journal(journal, visit):
    if not _exists(journal.folder):
        os.mkdir(journal.folder)
    temp = journal.folder + "/" + TEMP
    if _exists(temp):
        _remove(temp)
    numbers = _segment_numbers(journal.folder)
    for ring in range(RINGS):
        for index, n in enumerate(numbers[ring]):
            journal._next = max(journal._next, n + 1)
            _load(journal, ring, n, index == len(numbers[ring]) - 1)
    journal.last = _newest_kept(journal)
    saved = _read_newest_file(journal)
    if saved is not None and (journal.last is None or saved.seq > journal.last.seq):
        journal.last = saved
    root = journal.folder.rpartition("/")[0] or "."
    if _exists(_join(root, LEGACY[0])) or _exists(_join(root, LEGACY[1])):
        from alarmpost import journaltools

        journaltools.migrate(journal, root)
    if visit is not None:
        for event in _newest_in_order(journal):
            visit(event)


def _load(journal, ring, n, newest):
    path = journal._path(ring, n)
    size = os.stat(path)[6]
    count = size // RECORD_SIZE
    floor = journal._tail_last[ring] if journal._names[ring] else 0
    first = last = None
    if not newest and count and size % RECORD_SIZE == 0:
        with open(path, "rb") as f:
            first = Event.unpack(f.read(RECORD_SIZE))
            f.seek((count - 1) * RECORD_SIZE)
            last = Event.unpack(f.read(RECORD_SIZE))
    if first is None or last is None or last.seq < first.seq or first.seq <= floor:
        # the ring's newest (a cut may have torn its tail), a damaged segment, or a merge cut short
        count, first_seq, last_seq = _repair(journal, path, floor)
    else:
        first_seq, last_seq = first.seq, last.seq
    if count:
        journal._add(ring, n, first_seq, last_seq, count)
    else:
        _remove(path)


def _repair(journal, path, floor):
    """(count, first seq, last seq) of the intact events above ``floor``; rewritten if anything was dropped."""
    count = first = last = 0
    damaged = False
    for event in _records(path, floor):
        if event is None:
            damaged = True
        else:
            count += 1
            first = first or event.seq
            last = event.seq
    if damaged and count:
        replace(journal, path, _records(path, floor))
    return count, first, last


def _newest_kept(journal):
    best = None
    for ring in range(RINGS):
        if journal._names[ring] and (best is None or journal._tail_last[ring] > journal._tail_last[best]):
            best = ring
    if best is None:
        return None
    with open(journal._path(best, journal._names[best][-1]), "rb") as f:
        f.seek((journal._tail_count[best] - 1) * RECORD_SIZE)
        return Event.unpack(f.read(RECORD_SIZE))


def _read_newest_file(journal):
    path = journal.folder + "/" + NEWEST
    try:
        with open(path, "rb") as f:
            return Event.unpack(f.read(RECORD_SIZE))
    except OSError:
        return None


def _newest_in_order(journal):
    """The events of the newest segment of each ring, merged by seq."""
    heads = []
    for ring in range(RINGS):
        if journal._names[ring]:
            events = _records(journal._path(ring, journal._names[ring][-1]))
            head = _next_intact(events)
            if head is not None:
                heads.append([head, events])
    while heads:
        low = 0
        for index in range(1, len(heads)):
            if heads[index][0].seq < heads[low][0].seq:
                low = index
        yield heads[low][0]
        head = _next_intact(heads[low][1])
        if head is None:
            heads.pop(low)
        else:
            heads[low][0] = head


def _next_intact(events):
    for event in events:
        if event is not None:
            return event
    return None
