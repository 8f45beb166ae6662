"""Making room in a full journal: fold, then drop by priority.  Loaded only while the flash is full.

Called by ``Journal.append`` when an event needs a segment and the flash given to
the journal holds no more.  In this order, the first that frees anything wins:

1. a segment the Pi has stored all of;
2. a fold of the oldest two segments of restores, then of troubles, into one:
   events the Pi has stored go, and each input (code and zone) keeps its first and
   its latest event (for a restore or trouble with a single, full segment, that
   segment is folded in place);
3. drops, only of a class at or below the event's: restores, then troubles; each
   input keeps its latest event while it fits (``LATEST``), and a ring below the
   event's with a single segment loses it;
4. for an alarm only, once nothing of a lower class is left: a fold of the alarms,
   then ``LATEST`` on them.

Otherwise the event itself is the one dropped: everything kept ranks above it.
"""

from alarmpost.journal import ALARMS, NEWEST, RESTORES, RINGS, TROUBLES, _remove
from alarmpost.journalfiles import _records, learn_tail, replace

STATES = 0  # the first and the latest event of each input
LATEST = 1  # the latest event of each input; then only the newest that fit


def make_room(journal, ring, event):
    """Free a segment (or, in ``ring``'s only one, a record's place) for ``event``, of class ``ring``.

    False when everything kept ranks above the event: then the event is the one
    dropped, counted, and written aside to ``journal/last`` so that seq goes on.
    """
    if _free(journal, ring):
        return True
    journal.dropped += 1
    replace(journal, journal.folder + "/" + NEWEST, (event,))
    return False


def _free(journal, ring):
    for r in range(RINGS):  # the Pi has stored all of it
        for index in range(len(journal._names[r])):
            if journal._last_of(r, index) <= journal.acked:
                _delete(journal, r, index)
                return True
    # fold repeated changes: each input keeps its first and its latest state
    for r in (RESTORES, TROUBLES):
        if len(journal._names[r]) > 1 and _fold(journal, r, STATES):
            return True
    if ring != ALARMS and len(journal._names[ring]) == 1 and _fold(journal, ring, STATES):
        return True
    # drop by priority: restores and tests, then troubles; never for an event that ranks lower
    for r in (RESTORES, TROUBLES):
        if r > ring:
            return False
        held = len(journal._names[r])
        if held > 1 or (held and r == ring):
            return _fold(journal, r, LATEST)
        if held:
            _drop_segment(journal, r)
            return True
    if ring == ALARMS and journal._names[ALARMS]:
        return _fold(journal, ALARMS, STATES) or _fold(journal, ALARMS, LATEST)
    return False


def _drop_segment(journal, ring):
    path = journal._path(ring, journal._names[ring][0])
    journal.dropped += sum(1 for e in _records(path, journal.acked) if e is not None)
    _delete(journal, ring, 0)


def _fold(journal, ring, mode):
    """Rewrite the oldest two segments of ``ring`` as one (its only one, with a place free), keeping by ``mode``.

    Events the Pi has stored go; of the rest, each input (code and zone) keeps its
    latest event, and with STATES its first too.  False, with nothing written, if
    that does not fit.  LATEST then keeps only the newest that fit, so it always does.
    """
    pair = len(journal._names[ring]) > 1
    paths = [journal._path(ring, n) for n in journal._names[ring][: 2 if pair else 1]]
    room = journal.records if pair else journal.records - 1
    newest = journal.last.seq if journal.last is not None else 0
    ends = {}  # code * 256 + zone -> [first seq, latest seq] of events the Pi has not stored
    for event in _window(paths):
        if event.seq > journal.acked:
            key = event.code * 256 + event.zone
            if key in ends:
                ends[key][1] = event.seq
            else:
                ends[key] = [event.seq, event.seq]

    def keep(event):
        if event.seq == newest:
            return True
        if event.seq <= journal.acked:
            return False
        first, latest = ends[event.code * 256 + event.zone]
        return event.seq == latest or (mode == STATES and event.seq == first)

    kept = unstored = 0
    for event in _window(paths):
        unstored += event.seq > journal.acked
        kept += keep(event)
    if kept > room and mode == STATES:
        return False
    span = [max(0, kept - room), 0, 0, 0]  # LATEST: how many of the oldest go; first, last; unstored kept

    def survivors():
        for event in _window(paths):
            if not keep(event):
                continue
            if span[0]:
                span[0] -= 1
                continue
            span[1] = span[1] or event.seq
            span[2] = event.seq
            span[3] += event.seq > journal.acked
            yield event

    index = 1 if pair else 0
    count = replace(journal, paths[-1], survivors())
    journal.dropped += unstored - span[3]
    if count:
        journal._first[ring][index] = span[1]
        if index == len(journal._names[ring]) - 1:
            journal._tail_last[ring] = span[2]
            journal._tail_count[ring] = count
        if pair:
            _remove(paths[0])
            journal._forget(ring, 0)
    else:
        for index in range(len(paths) - 1, -1, -1):
            _delete(journal, ring, index)
    return True


def _delete(journal, ring, index):
    journal._delete(ring, index)
    if index == len(journal._names[ring]):  # it was the newest: the one before is now
        learn_tail(journal, ring)


def _window(paths):
    for path in paths:
        for event in _records(path):
            if event is not None:
                yield event
