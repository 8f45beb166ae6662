# The journal when its flash is full of events the Pi has not stored: priorities, folding,
# and a power cut at every single flash operation of a run through all of it.
import builtins
import gc
import os

import alarmpost.journal as J
from alarmpost import events as ev
from alarmpost.journal import ALARMS, Journal, klass
from alarmpost.journaltools import read_events

base = os.getenv("ALARMPOST_TMP") + "/journal-full"
os.mkdir(base)
runs = [0]
SMALL = {"records": 4, "flash_bytes": 6 * 256, "block_bytes": 256}  # 5 segments of 4: 20 events


def fresh():
    runs[0] += 1
    folder = base + "/%d" % runs[0]
    os.mkdir(folder)
    return folder


def event_of(kind, seq):
    if kind == "panic":
        return ev.Event(seq, 1, seq, ev.PANIC, ev.NEW, ev.ZONE_BUTTON, ev.PRESS_REPEAT)
    if kind == "reset":
        return ev.Event(seq, 1, seq, ev.PANIC_RESET, ev.NEW, ev.ZONE_KEY_SWITCH, 3)
    if kind == "open":
        return ev.Event(seq, 1, seq, ev.TAMPER, ev.NEW, ev.ZONE_TAMPER)
    if kind == "close":
        return ev.Event(seq, 1, seq, ev.TAMPER, ev.RESTORE, ev.ZONE_TAMPER)
    if kind == "ac":
        return ev.Event(seq, 1, seq, ev.AC_LOSS, ev.NEW, ev.ZONE_SUPPLY, 1200)
    if kind == "ac back":
        return ev.Event(seq, 1, seq, ev.AC_LOSS, ev.RESTORE, ev.ZONE_SUPPLY, 1390)
    return ev.Event(seq, 1, seq, ev.MANUAL_TEST, ev.NEW, ev.ZONE_KEY_SWITCH)


def kept_seqs(folder):
    return [e.seq for e in read_events(folder)]


# -- the flash fills at 90 % before anything has to go -------------------------------------------
folder = fresh()
j = Journal(folder, **SMALL)
j.open()
for seq in range(1, 21):
    j.append(event_of("open", seq))
    if seq == 18:
        assert j.fill_pct() == 90 and j.dropped == 0, (j.fill_pct(), j.dropped)
assert j.dropped == 0 and kept_seqs(folder) == list(range(1, 21))
j.append(event_of("open", 21))
assert j.dropped > 0  # full: room was made, and counted for the 624 report

# -- a panic is never dropped while anything of a lower class could go instead --------------------
folder = fresh()
j = Journal(folder, **SMALL)
j.open()
written = {}
schedule = ["open", "close", "ac", "test"] * 4 + ["panic", "panic", "panic", "close", "panic", "open", "reset"] * 12
for seq, kind in enumerate(schedule, 1):
    gc.collect()  # the checks read the whole journal each time: keep the test's own garbage from fragmenting 96 KB
    event = event_of(kind, seq)
    written[seq] = event
    accepted = j.append(event)
    kept = read_events(folder)
    present = set(e.seq for e in kept)
    lost_alarms = [s for s in written if klass(written[s]) == ALARMS and s not in present]
    lower = [e for e in kept if klass(e) != ALARMS]
    assert not lost_alarms or not lower, (seq, lost_alarms, [e.seq for e in lower])
    if klass(event) == ALARMS:
        assert accepted, seq  # an alarm always finds room
    elif not accepted:
        assert all(klass(e) > klass(event) for e in kept), seq  # refused only when everything kept ranks above it
assert lost_alarms  # the run went as far as folding alarms: the check above was tested
assert j.append(event_of("open", len(schedule) + 1)) is False  # full of alarms: the tamper is the one that goes
assert j.last.seq == len(schedule) + 1  # kept aside: seq goes on after a reset
# the alarms that went were folded: the first and the latest press and reset are there
kept = read_events(folder)
for kind in ("panic", "reset"):
    mine = [s for s in written if written[s].code == event_of(kind, 0).code]
    assert mine[0] in [e.seq for e in kept] and mine[-1] in [e.seq for e in kept], kind

# -- folding many changes of an input keeps its first and its latest state -----------------------
folder = fresh()
j = Journal(folder, **SMALL)
j.open()
first = {}
latest = {}
pattern = ["open", "close", "open", "ac", "close", "ac back", "open", "close", "ac", "open", "ac back", "close"]
for seq in range(1, 301):
    gc.collect()
    event = event_of(pattern[seq % len(pattern)], seq)
    assert j.append(event)
    key = (event.code, event.zone, event.qualifier)
    first.setdefault(key, event)
    latest[key] = event
    kept = read_events(folder)
    for key in latest:  # each input's first and latest opening and closing (loss and return)
        assert latest[key] in kept, (seq, key, latest[key])
        assert first[key] in kept, (seq, key, first[key])
    assert len(kept) <= j.capacity()
assert len(kept) < 30 and j.dropped == 300 - len(kept)

# -- once the Pi has stored them, folded or not, the segments are freed --------------------------
j.set_acked(300)
assert j.fill_pct() < 25 and j.segments() <= 2

# -- a power cut at every flash operation: nothing that was to be kept is ever lost ---------------
del j, kept, written, schedule
real_os = os
real_open = open


class Cut(Exception):
    pass


class Power:
    def __init__(self, at):
        self.at = at
        self.ops = 0

    def tick(self):
        self.ops += 1
        if self.ops == self.at:
            raise Cut()


class FlakyOs:
    def __init__(self, power):
        self.power = power

    def stat(self, path):
        return real_os.stat(path)

    def listdir(self, path):
        return real_os.listdir(path)

    def mkdir(self, path):
        return real_os.mkdir(path)

    def remove(self, path):
        self.power.tick()
        real_os.remove(path)

    def rename(self, old, new):
        self.power.tick()
        real_os.rename(old, new)


class FlakyFile:
    def __init__(self, f, power):
        self.f = f
        self.power = power

    def write(self, data):
        try:
            self.power.tick()
        except Cut:
            self.f.write(data[: len(data) // 2])  # the cut tears the record
            raise
        return self.f.write(data)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def flaky_open(power):
    def opener(path, mode="r"):
        f = real_open(path, mode)
        return FlakyFile(f, power) if ("w" in mode or "a" in mode) else f

    return opener


steps = []  # ("add", event) or ("ack", seq)
kinds = ["open", "close"] * 10 + ["panic", "open", "panic", "close", "panic", "test"] * 6 + ["open", "close"] * 5
for seq, kind in enumerate(kinds, 1):
    steps.append(("add", event_of(kind, seq)))
    if seq in (30, 52):
        steps.append(("ack", seq - 6))  # the Pi comes and goes
steps.append(("ack", len(kinds) - 3))
for seq in range(len(kinds) + 1, len(kinds) + 9):
    steps.append(("add", event_of("open" if seq % 2 else "close", seq)))


def run(folder, power=None):
    """Run the steps; the kept seqs after each one (with no power) or the step the cut came in."""
    j = Journal(folder, **SMALL)
    j.open()
    after = []
    if power is not None:  # the journal's renames and deletes, and every file written
        J.os = FlakyOs(power)
        builtins.open = flaky_open(power)
    index = 0
    try:
        for what, arg in steps:
            if what == "add":
                j.append(arg)
            else:
                j.set_acked(arg)
            if power is None:
                gc.collect()
                after.append(bytes(kept_seqs(folder)))  # seqs stay below 256: bytes keep 96 KB enough
            index += 1
    except Cut:
        return index
    finally:
        J.os = real_os
        builtins.open = real_open
    return after


kept_after = run(fresh())
total = Power(0)
run(fresh(), total)
assert total.ops > 100, total.ops  # every write, rename and delete of the run is a cut point
by_seq = {arg.seq: arg for what, arg in steps if what == "add"}
for at in range(1, total.ops + 1):
    gc.collect()
    folder = fresh()
    step = run(folder, Power(at))
    j = Journal(folder, **SMALL)
    j.open()
    kept = read_events(folder)
    present = set(e.seq for e in kept)
    before = set(kept_after[step - 1]) if step else set()
    must = before & set(kept_after[step])  # on flash before the step and meant to stay after it
    assert must <= present, (at, step, sorted(must - present))
    assert all(by_seq[e.seq] == e for e in kept), at  # nothing made up or mangled
    assert j.events_after(0, 1000) == kept, at  # the index agrees with the flash
    done = [arg.seq for what, arg in steps[:step] if what == "add"]
    if done:
        assert j.last is not None and j.last.seq >= done[-1], (at, step)  # seq goes on from the newest written
    assert j.append(event_of("panic", (j.last.seq if j.last else 0) + 1))  # and the journal works on
print("OK")
