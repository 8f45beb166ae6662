"""The journal's files for host tools and tests, and the move of firmware 0.2's journal.

Not loaded on the board, except once, at the first boot after an upgrade from
firmware 0.2, to move ``journal.0`` and ``journal.1`` into the rings.

>>> read_events("/flash")      # every kept event, oldest first, the flash unchanged
>>> segment_files("/flash")    # [(ring, n, path)], each ring oldest first
"""

from alarmpost.journal import FOLDER, _join, _remove, klass
from alarmpost.journalfiles import LEGACY, _exists, _records, _segment_numbers


def read_segment(path):
    """The intact events of one segment file, oldest first (for host tools and tests)."""
    return [e for e in _records(path) if e is not None]


def segment_files(folder="."):
    """[(ring, n, path)] of every segment file, each ring in order (for host tools and tests)."""
    found = []
    journal = _join(folder, FOLDER)
    for ring, numbers in enumerate(_segment_numbers(journal)):
        for n in numbers:
            found.append((ring, n, journal + "/%d.%d" % (ring, n)))
    return found


def read_events(folder="."):
    """Every intact event the journal keeps, oldest first, without changing the flash."""
    found = {}
    for _, _, path in segment_files(folder):
        for event in read_segment(path):
            found.setdefault(event.seq, event)  # a merge cut short holds some twice
    for name in LEGACY[:2]:
        for event in read_segment(_join(folder, name)):
            found.setdefault(event.seq, event)
    return [found[seq] for seq in sorted(found)]


def migrate(journal, root):
    """Move a two-segment journal left by firmware 0.2 into the rings, so seq and boot go on."""
    old = [_join(root, name) for name in LEGACY[:2]]
    found = read_segment(old[0]) + read_segment(old[1])
    found.sort(key=lambda e: e.seq)
    for event in found:
        ring = klass(event)
        if not journal._names[ring] or event.seq > journal._tail_last[ring]:  # a cut during the move did some already
            journal.append(event)
    for path in old + [_join(root, LEGACY[2])]:
        if _exists(path):
            _remove(path)
