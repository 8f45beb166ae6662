"""The Pi's end of the serial link under fuzzing: BoardLink with a real SQLite store and a fake clock.

Whatever arrives (noise, mutated streams of valid frames, frames it must refuse), no
exception escapes ``feed`` or ``tick``; the store holds the board's events 1..n, each
once and as the board sent it; every frame the link writes is well formed, and no
acknowledgement claims an event the store does not hold.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarmpost import codec
from alarmpost import events as ev
from edge_daemon.link import BoardLink
from edge_daemon.store import EventStore

BOARD = "post-1"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PI_TO_BOARD = (codec.HELLO_ACK, codec.ACK, codec.HEARTBEAT, codec.COMMAND, codec.ERROR)
HANDLED_BY_PI = (codec.HELLO, codec.EVENT, codec.HEARTBEAT, codec.RESULT, codec.ERROR)


class Rig:
    """A BoardLink on a fresh store, writing into a list; every write is checked as it happens."""

    def __init__(self, folder: Path) -> None:
        self.store = EventStore(folder / "events.db")
        self.now = 1000.0
        self.written: list[codec.Frame] = []
        self.link = BoardLink(self.store, BOARD, self.write, clock=lambda: self.now)

    def close(self) -> None:
        self.store.close()

    def board_seqs(self) -> list[int]:
        return [e.seq for e in self.store.events(BOARD) if e.source == "board"]

    def write(self, data: bytes) -> None:
        data = bytes(data)
        frames = codec.Decoder().feed(data)
        assert len(frames) == 1, f"one write, one whole frame: {data.hex()}"
        (frame,) = frames
        assert data == codec.encode(frame.type, frame.payload), "not the codec's own encoding"
        assert frame.version == codec.VERSION
        assert frame.type in PI_TO_BOARD, f"the Pi sent a frame of type 0x{frame.type:02x}"
        fields, _ = codec.unpack(frame.type, frame.payload)
        stored = self.board_seqs()
        assert stored == list(range(1, len(stored) + 1)), f"stored out of order, twice or with a gap: {stored}"
        if frame.type in (codec.ACK, codec.HELLO_ACK):
            assert fields[0] == len(stored), f"ack of {fields[0]} with {len(stored)} events stored"
        elif frame.type == codec.HEARTBEAT:
            assert fields[3] == len(stored), f"heartbeat acks {fields[3]} with {len(stored)} events stored"
        elif frame.type == codec.ERROR:
            reason, offending, version = fields
            assert version == codec.VERSION
            assert reason in (codec.ERR_UNKNOWN_TYPE, codec.ERR_VERSION, codec.ERR_BAD_PAYLOAD)
            if reason == codec.ERR_UNKNOWN_TYPE:
                assert offending not in HANDLED_BY_PI
            if reason == codec.ERR_BAD_PAYLOAD:
                assert offending in HANDLED_BY_PI
        self.written.append(frame)

    def feed(self, data: bytes, dt: float = 0.0) -> None:
        self.now += dt
        self.link.feed(data)
        self.link.tick()

    def of_type(self, kind: int) -> list[tuple[tuple[int, ...], bytes]]:
        return [codec.unpack(f.type, f.payload) for f in self.written if f.type == kind]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def check_store(rig: Rig, story: dict[int, ev.Event]) -> list[int]:
    """The board's events 1..n, each once and as the board sent it; the daemon's own 1..m."""
    events = rig.store.events(BOARD)
    board = [e for e in events if e.source == "board"]
    seqs = [e.seq for e in board]
    assert seqs == list(range(1, len(seqs) + 1)), f"stored out of order, twice or with a gap: {seqs}"
    for e in board:
        sent = story[e.seq]
        assert (e.boot, e.uptime_ms, e.code, e.qualifier, e.zone, e.value) == (
            sent.boot,
            sent.uptime_ms,
            sent.code,
            sent.qualifier,
            sent.zone,
            sent.value,
        )
    own = [e for e in events if e.source == "daemon"]
    assert [e.seq for e in own] == list(range(1, len(own) + 1))
    for i, e in enumerate(own):  # link lost, then found, then lost...
        assert (e.code, e.zone, e.qualifier) == (ev.COMM_TROUBLE, ev.ZONE_LINK, ev.NEW if i % 2 == 0 else ev.RESTORE)
    assert rig.store.get_state("link") in (None, "up", "down")
    return seqs


# -- streams ----------------------------------------------------------------------------------


def event_wire(event: ev.Event) -> bytes:
    return codec.encode(codec.EVENT, codec.pack_event(event))


def make_story(count: int, boot: int) -> dict[int, ev.Event]:
    codes = (ev.PANIC, ev.TAMPER, ev.AC_LOSS, ev.PANIC_RESET, ev.COMM_TROUBLE, ev.SYSTEM_RESET)
    return {
        seq: ev.Event(seq, boot, seq * 137, codes[seq % len(codes)], ev.NEW if seq % 3 else ev.RESTORE, seq % 9, seq)
        for seq in range(1, count + 1)
    }


def other_frame(kind: str) -> bytes:
    """A board frame the link must take in its stride: valid, refused or with a bad payload."""
    if kind == "hello":
        tail = codec.texts("0.2.0", "rpi_pico")
        # last_seq as high as any stream goes: a HELLO from the same board history
        return codec.encode(codec.HELLO, codec.pack(codec.HELLO, 0xA5A5A5A5, 2, 1, 0xFFFF, tail=tail))
    if kind == "heartbeat":
        return codec.encode(codec.HEARTBEAT, codec.pack(codec.HEARTBEAT, 0, 1, 2, 5))
    if kind == "heartbeat, unknown state":
        return codec.encode(codec.HEARTBEAT, codec.pack(codec.HEARTBEAT, 0, 200, 0, 5))
    if kind == "result":
        return codec.encode(codec.RESULT, codec.pack(codec.RESULT, 9, codec.OK, tail=b"{}"))
    if kind == "error":
        return codec.encode(codec.ERROR, codec.pack(codec.ERROR, codec.ERR_UNKNOWN_TYPE, 0x42, 1))
    if kind == "ack sent to the Pi":
        return codec.encode(codec.ACK, codec.pack(codec.ACK, 3))
    if kind == "command sent to the Pi":
        return codec.encode(codec.COMMAND, codec.pack(codec.COMMAND, 1, codec.CMD_RESET))
    if kind == "unknown type":
        return codec.encode(0x55, b"\x01\x02\x03")
    if kind == "version 2":
        return codec.encode(codec.EVENT, bytes(16), version=2)
    if kind == "short event":
        return codec.encode(codec.EVENT, b"\x01\x00\x00")
    if kind == "hello with a cut text":
        return codec.encode(codec.HELLO, codec.pack(codec.HELLO, 1, 1, 0, 0, tail=b"\x05ab"))
    if kind == "hello with bad UTF-8":
        return codec.encode(codec.HELLO, codec.pack(codec.HELLO, 1, 1, 0, 0, tail=b"\x01\xff\x00"))
    raise AssertionError(kind)


OTHER = [
    "hello",
    "heartbeat",
    "heartbeat, unknown state",
    "result",
    "error",
    "ack sent to the Pi",
    "command sent to the Pi",
    "unknown type",
    "version 2",
    "short event",
    "hello with a cut text",
    "hello with bad UTF-8",
]


@st.composite
def board_streams(draw: st.DrawFn) -> tuple[dict[int, ev.Event], list[bytes], bool]:
    """A story of events and the frames that carry it, out of order, repeated, lost, among others."""
    story = make_story(draw(st.integers(0, 14)), draw(st.integers(1, 3)))
    seqs = list(story)
    order = draw(st.permutations(seqs)) + draw(st.lists(st.sampled_from(seqs), max_size=6) if seqs else st.just([]))
    if draw(st.booleans()) and order:
        del order[draw(st.integers(0, len(order) - 1))]  # a frame lost on the wire
    frames = [event_wire(story[seq]) for seq in order]
    for _ in range(draw(st.integers(0, 5))):
        frames.insert(draw(st.integers(0, len(frames))), other_frame(draw(st.sampled_from(OTHER))))
    every_seq_sent = set(order) == set(seqs)
    return story, frames, every_seq_sent


def mutate(data_: st.DataObject, stream: bytes) -> bytes:
    draw = data_.draw
    data = bytearray(stream)
    for _ in range(draw(st.integers(1, 6))):
        what = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "concat"]))
        at = draw(st.integers(0, len(data)))
        if what == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif what == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif what == "delete":
            del data[at : at + draw(st.integers(1, 24))]
        elif what == "truncate":
            del data[at:]
        elif what == "concat":
            data += data[at:]
    return bytes(data)


def feed_in_pieces(rig: Rig, data: st.DataObject, stream: bytes) -> None:
    """Feed ``stream`` cut at random places, the clock moving on (sometimes past the timeout) between pieces."""
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))) + [len(stream)]
    start = 0
    for cut in cuts:
        rig.feed(stream[start:cut], dt=data.draw(st.sampled_from([0.0, 0.05, 0.4, 1.1, 3.5])))
        start = cut


# -- fuzz tests -------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_valid_streams_out_of_order_repeated_and_lost(data: st.DataObject) -> None:
    story, frames, every_seq_sent = data.draw(board_streams())
    with tempfile.TemporaryDirectory() as folder:
        rig = Rig(Path(folder))
        try:
            feed_in_pieces(rig, data, b"".join(frames))
            stored = check_store(rig, story)
            if every_seq_sent:  # held events after a gap are committed once it is filled
                assert stored == sorted(story)
        finally:
            rig.close()


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_streams(data: st.DataObject) -> None:
    story, frames, _ = data.draw(board_streams())
    stream = mutate(data, b"".join(frames))
    with tempfile.TemporaryDirectory() as folder:
        rig = Rig(Path(folder))
        try:
            feed_in_pieces(rig, data, stream)
            check_store(rig, story)
        finally:
            rig.close()


@FUZZ
@given(data=st.data(), noise=st.binary(max_size=400))
def test_fuzz_random_bytes(data: st.DataObject, noise: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        rig = Rig(Path(folder))
        try:
            feed_in_pieces(rig, data, noise)
            assert check_store(rig, {}) == []
        finally:
            rig.close()


# -- deterministic cases --------------------------------------------------------------------------


def test_unknown_type_and_version_are_answered_and_the_link_goes_on(rig: Rig) -> None:
    rig.feed(codec.encode(0x55, b"\x01\x02"))
    rig.feed(codec.encode(codec.EVENT, codec.pack_event(ev.Event(1, 1, 10, ev.PANIC, ev.NEW, ev.ZONE_BUTTON, 1)), 9))
    errors = rig.of_type(codec.ERROR)
    assert errors == [
        ((codec.ERR_UNKNOWN_TYPE, 0x55, codec.VERSION), b""),
        ((codec.ERR_VERSION, codec.EVENT, codec.VERSION), b""),
    ]
    assert rig.board_seqs() == []  # the version-9 event was not taken in
    assert rig.link.counters.refused == 2
    rig.feed(event_wire(ev.Event(1, 1, 20, ev.PANIC, ev.NEW, ev.ZONE_BUTTON, 1)))
    assert rig.board_seqs() == [1]
    assert rig.of_type(codec.ACK)[-1] == ((1,), b"")
    assert rig.link.up is True


def test_a_bad_payload_is_answered_and_the_link_goes_on(rig: Rig) -> None:
    rig.feed(codec.encode(codec.EVENT, b"\x01\x00"))
    rig.feed(codec.encode(codec.ACK, codec.pack(codec.ACK, 1)))  # a board-bound frame sent to the Pi
    assert rig.of_type(codec.ERROR) == [
        ((codec.ERR_BAD_PAYLOAD, codec.EVENT, codec.VERSION), b""),
        ((codec.ERR_UNKNOWN_TYPE, codec.ACK, codec.VERSION), b""),
    ]
    rig.feed(event_wire(ev.Event(1, 1, 20, ev.TAMPER, ev.NEW, ev.ZONE_TAMPER)))
    assert rig.board_seqs() == [1]
    assert rig.of_type(codec.ACK) == [((1,), b"")]


def test_events_out_of_order_are_stored_in_order_and_acks_stop_at_the_gap(rig: Rig) -> None:
    story = make_story(3, boot=1)
    seen = []
    for seq in (1, 3, 2, 3):
        rig.feed(event_wire(story[seq]))
        seen.append((rig.board_seqs(), rig.of_type(codec.ACK)[-1][0][0]))
    assert seen == [
        ([1], 1),
        ([1], 1),  # 3 is held in memory, unacknowledged: the ACK does not pass the gap at 2
        ([1, 2, 3], 3),  # 2 fills the gap; the held 3 is committed after it
        ([1, 2, 3], 3),  # the resend of 3 is acknowledged again, not stored twice
    ]
    assert rig.link.counters.out_of_order == 1
    assert rig.link.counters.duplicates == 1
    check_store(rig, story)


def test_a_gap_that_is_never_filled_is_never_acknowledged(rig: Rig) -> None:
    story = make_story(6, boot=1)
    for seq in (1, 2, 4, 5, 6, 4):
        rig.feed(event_wire(story[seq]))
    assert rig.board_seqs() == [1, 2]
    assert [fields[0] for fields, _ in rig.of_type(codec.ACK)] == [1, 2, 2, 2, 2, 2]


def test_a_board_numbering_afresh_is_filed_apart_and_its_events_stored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A replaced or erased board starts again at seq 1: nothing old is lost, nothing new is refused."""
    written: list[bytes] = []
    with EventStore(tmp_path / "events.db") as store:
        link = BoardLink(store, "post-1", written.append)
        for seq in range(1, 6):
            link.feed(codec.encode(codec.EVENT, codec.pack_event(ev.Event(seq, 1, 0, ev.TAMPER, ev.NEW, 2))))
        assert store.last_seq("post-1") == 5
        hello = codec.pack(codec.HELLO, 77, 1, 1, 2, tail=codec.texts("0.2.0", "sim"))
        link.feed(codec.encode(codec.HELLO, hello))
        for seq in (1, 2):
            link.feed(codec.encode(codec.EVENT, codec.pack_event(ev.Event(seq, 1, 0, ev.PANIC, ev.NEW, 1))))
        fresh = [(e.seq, e.code) for e in store.events("post-1") if e.source == "board"]
        assert fresh == [(1, ev.PANIC), (2, ev.PANIC)]
        filed = {e.board for e in store.events() if e.board != "post-1"}
        assert len(filed) == 1 and filed.pop().startswith("post-1~retired-")
        assert store.count() == 7


def _event_frame(seq: int, code: int = ev.PANIC) -> bytes:
    return codec.encode(codec.EVENT, codec.pack_event(ev.Event(seq, 1, 0, code, ev.NEW, 1)))


def _fresh_hello(last_seq: int) -> bytes:
    return codec.encode(codec.HELLO, codec.pack(codec.HELLO, 77, 1, 1, last_seq, tail=codec.texts("0.2.0", "sim")))


def test_two_numbering_restarts_within_a_second_are_both_filed_apart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A board (faulty or hostile) restarting its numbering twice in a second: both runs kept, the link goes on."""
    written: list[bytes] = []
    with EventStore(tmp_path / "events.db") as store:
        link = BoardLink(store, "post-1", written.append)
        for restart in range(3):  # the first run, then two restarts back to back (well within one second)
            if restart:
                link.feed(_fresh_hello(0))
            for seq in (1, 2, 3):
                link.feed(_event_frame(seq))
        assert [e.seq for e in store.events("post-1") if e.source == "board"] == [1, 2, 3]
        filed = {e.board for e in store.events() if e.board != "post-1"}
        assert len(filed) == 2 and all(name.startswith("post-1~retired-") for name in filed)
        assert store.count() == 9 and link.counters.store_errors == 0


def test_a_store_error_on_one_frame_is_counted_and_the_link_goes_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The store failing (here: a trigger refusing one event) never escapes feed; the event is not acknowledged,
    so the board sends it again, and the frames after it are handled."""
    written: list[bytes] = []
    with EventStore(tmp_path / "events.db") as store:
        link = BoardLink(store, "post-1", written.append)
        link.feed(_event_frame(1))
        store._db.execute(
            "CREATE TRIGGER refuse_seq_2 BEFORE INSERT ON events WHEN NEW.seq = 2 AND NEW.source = 'board'"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        before = len(written)
        link.feed(_event_frame(2) + _event_frame(3))  # both in one read: the second is still handled
        assert link.counters.store_errors == 1
        acks = [codec.unpack(codec.ACK, f.payload)[0][0] for f in codec.Decoder().feed(b"".join(written[before:]))]
        assert acks == [1]  # 3 is held after the gap; 2 is never acknowledged
        store._db.execute("DROP TRIGGER refuse_seq_2")
        link.feed(_event_frame(2))  # the board's resend
        assert [e.seq for e in store.events("post-1") if e.source == "board"] == [1, 2, 3]
        assert codec.unpack(codec.ACK, codec.Decoder().feed(written[-1])[0].payload)[0][0] == 3
