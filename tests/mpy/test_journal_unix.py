# The journal on MicroPython's own filesystem layer: growth while the Pi is away,
# freeing what it stored, events_after across segments, rings and holes, torn tails, repair.
import os

from alarmpost import events as ev
from alarmpost.journal import FOLDER, Journal
from alarmpost.journaltools import read_events, read_segment, segment_files

base = os.getenv("ALARMPOST_TMP") + "/journal-unix"
os.mkdir(base)
runs = [0]

# 4 records a segment, 6 blocks of 256 bytes: 5 segments (one block stays free for rewrites), 20 events
SMALL = {"records": 4, "flash_bytes": 6 * 256, "block_bytes": 256}


def fresh():
    runs[0] += 1
    folder = base + "/%d" % runs[0]
    os.mkdir(folder)
    return folder


def tamper(seq, opened=True):
    return ev.Event(seq, 1, seq * 10, ev.TAMPER, ev.NEW if opened else ev.RESTORE, ev.ZONE_TAMPER, seq)


def event_of(kind, seq):
    if kind == "panic":
        return ev.Event(seq, 1, seq, ev.PANIC, ev.NEW, ev.ZONE_BUTTON, ev.PRESS_REPEAT)
    if kind == "open":
        return tamper(seq, True)
    if kind == "close":
        return tamper(seq, False)
    if kind == "supply":
        return ev.Event(seq, 1, seq, ev.AC_LOSS, ev.NEW, ev.ZONE_SUPPLY, 1200 + seq)
    return ev.Event(seq, 1, seq, ev.MANUAL_TEST, ev.NEW, ev.ZONE_KEY_SWITCH)


def seqs(events):
    return [e.seq for e in events]


def reopened(folder, **sizes):
    j = Journal(folder, **(sizes or SMALL))
    j.open()
    return j


def check_events_after(j, folder):
    """events_after against a plain filter of everything on flash, for every start and several limits."""
    kept = read_events(folder)
    assert seqs(j.events_after(0, 10000)) == seqs(kept), (seqs(j.events_after(0, 10000)), seqs(kept))
    top = kept[-1].seq if kept else 0
    for start in range(0, top + 2):
        for limit in (1, 3, 8):
            want = [e for e in kept if e.seq > start][:limit]
            got = j.events_after(start, limit)
            assert got == want, (start, limit, seqs(got), seqs(want))
    assert j.oldest_seq() == (kept[0].seq if kept else 0)


# -- nothing the Pi has not stored is overwritten while there is room -------------------------
folder = fresh()
j = Journal(folder, **SMALL)
seen = []
j.open(seen.append)
assert seen == [] and j.last is None and j.capacity() == 20
for seq in range(1, 21):  # exactly the capacity, one ring, and no acknowledgement
    assert j.append(tamper(seq))
kept = read_events(folder)
assert seqs(kept) == list(range(1, 21)), seqs(kept)  # the two-segment journal kept 4 to 8 of them
assert j.dropped == 0
assert j.fill_pct() == 100, j.fill_pct()
for _, _, path in segment_files(folder):
    assert os.stat(path)[6] <= 4 * ev.RECORD_SIZE
check_events_after(j, folder)

# -- what the Pi stored is freed: the journal does not grow with the events it has passed on ----
folder = fresh()
j = Journal(folder, **SMALL)
j.open()
for seq in range(1, 301):
    j.append(event_of(("open", "close", "panic", "test", "supply")[seq % 5], seq))
    if seq % 3 == 0:
        j.set_acked(seq - 1)  # the Pi lags a little behind
    assert j.segments() <= j.max_segments
assert j.dropped == 0  # 300 events through room for 20: only what the Pi had was freed
assert j.fill_pct() < 50, j.fill_pct()
assert read_events(folder)[-1].seq == 300
assert len(segment_files(folder)) <= 4  # one a ring, and the one the Pi has not finished
check_events_after(j, folder)

# -- until the Pi says otherwise (after a reset), nothing is taken as stored --------------------
j2 = reopened(folder)
assert j2.acked == 0 and j2.last.seq == 300
assert j2.fill_pct() >= j.fill_pct()

# -- events_after across segment boundaries, rings and the holes left by folding ----------------
folder = fresh()
j = Journal(folder, **SMALL)
j.open()
pattern = ("open", "close", "open", "close", "panic", "supply", "test", "close", "open", "panic", "close")
for seq in range(1, 140):
    j.append(event_of(pattern[seq % len(pattern)], seq))
    if seq % 17 == 0:
        check_events_after(j, folder)
assert j.dropped > 0  # the flash was full: folding left holes
check_events_after(j, folder)
check_events_after(reopened(folder), folder)  # the same from an index rebuilt from the flash

# -- a torn record at the end of a ring's newest segment is dropped and repaired away -----------
newest = max((read_segment(p)[-1].seq, p) for _, _, p in segment_files(folder))[1]
before = read_events(folder)
with open(newest, "ab") as f:
    f.write(tamper(999).pack()[:7])
j = Journal(folder, **SMALL)
seen = []
j.open(seen.append)
assert os.stat(newest)[6] % ev.RECORD_SIZE == 0
assert read_events(folder) == before
assert seen and seen[-1] == before[-1] and seqs(seen) == sorted(seqs(seen))
assert j.last.seq == 139  # a restore the full journal could not keep: kept aside, so seq goes on
assert j.append(event_of("panic", 140))
assert read_events(folder)[-1].seq == 140

# -- a record damaged in the middle is dropped; the good ones after it are kept ------------------
folder = fresh()
j = Journal(folder, records=8, flash_bytes=8 * 256, block_bytes=256)
j.open()
for seq in range(1, 7):
    j.append(tamper(seq))
path = segment_files(folder)[0][2]
with open(path, "rb") as f:
    data = bytearray(f.read())
data[ev.RECORD_SIZE + 3] ^= 0x10  # flip a bit in the second record
with open(path, "wb") as f:
    f.write(data)
j = Journal(folder, records=8, flash_bytes=8 * 256, block_bytes=256)
j.open()
assert seqs(read_segment(path)) == [1, 3, 4, 5, 6], seqs(read_segment(path))
assert os.stat(path)[6] == 5 * ev.RECORD_SIZE
assert seqs(j.events_after(1, 8)) == [3, 4, 5, 6]

# -- a leftover temporary file from a cut during a rewrite is cleared -----------------------------
with open(folder + "/" + FOLDER + "/tmp", "wb") as f:
    f.write(b"half")
Journal(folder, records=8, flash_bytes=8 * 256, block_bytes=256).open()
try:
    os.stat(folder + "/" + FOLDER + "/tmp")
    raise AssertionError("temporary file left behind")
except OSError:
    pass

# -- a merge cut between its rename and its delete: the older segment wins its range ------------
folder = fresh()
j = Journal(folder, **SMALL)
j.open()
for seq in range(1, 9):
    j.append(tamper(seq))
(_, n0, older), (_, n1, newer) = segment_files(folder)[:2]
with open(newer, "wb") as f:  # what a merge renamed over the newer: two of the older's, two of its own
    for seq in (3, 4, 6, 8):
        f.write(tamper(seq).pack())
j = reopened(folder)
assert seqs(read_segment(older)) == [1, 2, 3, 4]
assert seqs(read_segment(newer)) == [6, 8]
assert seqs(read_events(folder)) == [1, 2, 3, 4, 6, 8]
check_events_after(j, folder)

# -- the two-segment journal of firmware 0.2 is taken over: seq and boot go on ------------------
folder = fresh()
for name, first in (("journal.0", 1), ("journal.1", 5)):
    with open(folder + "/" + name, "wb") as f:
        for seq in range(first, first + 4):
            f.write(tamper(seq, seq % 2 == 1).pack())
j = Journal(folder, **SMALL)
seen = []
j.open(seen.append)
assert j.last.seq == 8
assert seqs(read_events(folder)) == list(range(1, 9))
for name in ("journal.0", "journal.1"):
    try:
        os.stat(folder + "/" + name)
        raise AssertionError(name + " left behind")
    except OSError:
        pass
# -- room: what a ring takes before room must be made (the overflow report's restores wait for 2) --
from alarmpost.journal import RESTORES, TROUBLES  # noqa: E402

folder = fresh()
j = reopened(folder)
assert j.room(TROUBLES) == 20  # 5 empty segments of 4
for seq in range(1, 4):
    j.append(tamper(seq))  # tamper changes: the troubles ring
assert j.room(TROUBLES) == 1 + 4 * 4  # one place left in its segment, 4 free segments
assert j.room(RESTORES) == 4 * 4  # a ring with no segment needs a free one
for seq in range(4, 21):
    j.append(tamper(seq))
assert j.room(TROUBLES) == 0 and j.dropped == 0  # full, nothing lost yet: the next one makes room
j.set_acked(20)
assert j.room(TROUBLES) == 4 * 4  # the Pi stored it all: the older segments went, the newest is full

print("OK")
