# The journal on MicroPython's own filesystem layer: rotation, torn tails, repair.
import os

from alarmpost import events as ev
from alarmpost.journal import SEGMENTS, Journal, read_events, read_segment

folder = os.getenv("ALARMPOST_TMP") + "/journal"
os.mkdir(folder)


def event(seq):
    return ev.Event(seq, 1, seq * 10, ev.TAMPER, ev.NEW, ev.ZONE_TAMPER, seq)


j = Journal(folder, records=4)
seen = []
j.open(seen.append)
assert seen == [] and j.last is None
for seq in range(1, 11):
    j.append(event(seq))
kept = read_events(folder)
assert [e.seq for e in kept] == [5, 6, 7, 8, 9, 10], kept  # between N and 2N kept
for name in SEGMENTS:
    assert os.stat(folder + "/" + name)[6] <= 4 * ev.RECORD_SIZE

# a torn record at the end of the active segment is dropped and repaired away
active = folder + "/" + SEGMENTS[j.active]
with open(active, "ab") as f:
    f.write(event(11).pack()[:7])
j2 = Journal(folder, records=4)
seen = []
j2.open(seen.append)
assert [e.seq for e in seen] == [5, 6, 7, 8, 9, 10], seen
assert os.stat(active)[6] % ev.RECORD_SIZE == 0
j2.append(event(11))
assert [e.seq for e in read_events(folder)][-1] == 11

# a record damaged in the middle is dropped; the good ones after it are kept
j3 = Journal(folder, records=4)
j3.open()
path = folder + "/" + SEGMENTS[j3.active]
with open(path, "rb") as f:
    data = bytearray(f.read())
before = read_segment(path)
data[ev.RECORD_SIZE + 3] ^= 0x10  # flip a bit in the second record
with open(path, "wb") as f:
    f.write(data)
j3 = Journal(folder, records=4)
j3.open()
after = read_segment(path)
assert [e.seq for e in after] == [before[0].seq] + [e.seq for e in before[2:]], (before, after)
assert os.stat(path)[6] == len(after) * ev.RECORD_SIZE

# a leftover repair file from a cut during repair is cleared
with open(folder + "/journal.tmp", "wb") as f:
    f.write(b"half")
Journal(folder, records=4).open()
try:
    os.stat(folder + "/journal.tmp")
    raise AssertionError("repair file left behind")
except OSError:
    pass

for name in os.listdir(folder):
    os.remove(folder + "/" + name)
os.rmdir(folder)
print("OK")
