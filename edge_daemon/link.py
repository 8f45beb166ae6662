"""The Pi's end of the serial link: events in, stored, acknowledged; heartbeats and commands out.

Events are stored strictly in order: the link expects the sequence number after
the last one stored.  The expected event is committed to the store, then
acknowledged; an older one (a resend) is only acknowledged again; a later one
(an earlier frame was lost) is held in memory, unacknowledged, until the board
sends the missing one again, and then the whole run is committed in order.
So the store holds every event exactly once and in order, whatever the wire
does.  The board's HELLO says where its journal starts: events that
rotated out of it before they could be sent are recorded as a gap.

The link is up while anything valid arrives within ``timeout_s``.  Going down
and coming back are stored as the daemon's own communication-trouble events
(350, zone 7) and shown in the store's ``link`` state.

>>> link = BoardLink(store, "post-1", port.write)
>>> link.feed(port.read(64)); link.tick()
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from alarmpost import codec
from alarmpost import events as ev
from edge_daemon.store import EventStore, StoreError

log = logging.getLogger("edge_daemon.link")


@dataclass
class BoardInfo:
    boot_id: int
    boot: int
    oldest_seq: int
    last_seq: int
    firmware: str
    board: str


@dataclass(frozen=True)
class BoardState:
    """What the board's latest heartbeat said."""

    alarm: str  # codec.STATES, or "state N" for a state this daemon does not know
    faults: int
    seq: int
    siren: bool
    strobe: bool
    testing: bool


@dataclass
class LinkCounters:
    stored: int = 0
    duplicates: int = 0  # resends of events already stored, acknowledged again
    out_of_order: int = 0  # events after a gap, dropped until the gap is filled
    refused: int = 0  # frames answered with ERROR
    gaps: int = 0  # events lost from the board's journal before they were sent
    store_errors: int = 0  # frames the store failed on: not acknowledged, so the board sends them again


class BoardLink:
    hold_limit = 64  # events after a gap held in memory (never stored out of order)

    def __init__(
        self,
        store: EventStore,
        board: str,
        write: Callable[[bytes], object],
        heartbeat_s: float = 1.0,
        timeout_s: float = 2.5,
        ack_timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.board = board
        self.write = write
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.clock = clock
        self.decoder = codec.Decoder()
        self.expected = store.last_seq(board) + 1
        self.info: BoardInfo | None = None
        self.board_state: BoardState | None = None
        self.up: bool | None = None
        self.counters = LinkCounters()
        self._own_seq = store.last_seq(board, source="daemon")
        self._last_heard = clock()
        self._next_beat = clock()
        self._held: dict[int, ev.Event] = {}  # events after a gap, committed once it is filled
        self._requests: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self.on_stored: Callable[[ev.Event, str], None] | None = None  # (event, source) once committed
        self._next_request = 1

    # -- receiving ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            self.handle(frame)

    def handle(self, frame: codec.Frame) -> None:
        refusal = codec.check_frame(frame)
        if refusal is not None:
            if refusal:
                self._refuse(refusal, frame, "unsupported frame")
            return
        self._last_heard = self.clock()
        try:
            if self.up is not True:
                self._set_up(True)
            self._dispatch(frame)
        except (ValueError, UnicodeError) as exc:
            self._refuse(codec.error(codec.ERR_BAD_PAYLOAD, frame.type), frame, str(exc))
        except (sqlite3.Error, StoreError) as exc:
            # Nothing was acknowledged: the board keeps the event and sends it again.  One bad
            # frame, or a store briefly failing, never stops the link.
            self.counters.store_errors += 1
            log.error("the store failed on a frame", extra={"type": frame.type, "error": str(exc)})

    def _refuse(self, answer: bytes, frame: codec.Frame, why: str) -> None:
        self.counters.refused += 1
        log.warning("frame refused", extra={"type": frame.type, "version": frame.version, "why": why})
        self.write(answer)

    def _dispatch(self, frame: codec.Frame) -> None:
        kind = frame.type
        if kind in (codec.HELLO_ACK, codec.ACK, codec.COMMAND):  # Pi-to-board frames sent to the Pi
            self._refuse(codec.error(codec.ERR_UNKNOWN_TYPE, kind), frame, "frame for the board")
            return
        if kind == codec.EVENT:
            self._event(codec.unpack_event(frame.payload))
            return
        fields, tail = codec.unpack(kind, frame.payload)
        if kind == codec.HELLO:
            self._hello(BoardInfo(*fields, *codec.untexts(tail, 2)))
        elif kind == codec.HEARTBEAT:
            flags, state, faults, seq = fields
            name = codec.STATES[state] if state < len(codec.STATES) else f"state {state}"
            self.board_state = BoardState(
                name,
                faults,
                seq,
                bool(flags & codec.HB_SIREN),
                bool(flags & codec.HB_STROBE),
                bool(flags & codec.HB_TESTING),
            )
        elif kind == codec.RESULT:
            request, status = fields
            future = self._requests.pop(request, None)
            if future is not None and not future.done():
                future.set_result((status, tail))
        elif kind == codec.ERROR:
            log.warning("the board refused a frame", extra={"reason": fields[0], "type": fields[1]})

    def _hello(self, info: BoardInfo) -> None:
        self.info = info
        log.info("board said hello", extra={"firmware": info.firmware, "board_boot": info.boot})
        if info.last_seq < self.expected - 1:
            retired = self.store.retire(self.board)
            log.error(
                "the board's numbering started afresh (replaced or erased): earlier events filed apart",
                extra={"board_last_seq": info.last_seq, "stored_up_to": self.expected - 1, "filed_as": retired},
            )
            self.expected = 1
            self._held = {}
        if info.oldest_seq > self.expected:
            lost = info.oldest_seq - self.expected
            self.counters.gaps += lost
            log.error("events lost before they could be sent", extra={"from": self.expected, "count": lost})
            self.expected = info.oldest_seq
            while self.expected in self._held:
                self._commit(self._held.pop(self.expected))
        self._held = {seq: e for seq, e in self._held.items() if seq > self.expected}
        self.write(codec.encode(codec.HELLO_ACK, codec.pack(codec.HELLO_ACK, self.expected - 1, self._beat_ms())))

    def _event(self, event: ev.Event) -> None:
        if event.seq < self.expected or event.seq in self._held:
            self.counters.duplicates += 1
        elif event.seq == self.expected:
            self._commit(event)
            while self.expected in self._held:
                self._commit(self._held.pop(self.expected))
        elif event.seq - self.expected <= self.hold_limit:
            self._held[event.seq] = event  # an earlier one was lost: keep this until the gap is filled
            self.counters.out_of_order += 1
        self.write(codec.encode(codec.ACK, codec.pack(codec.ACK, self.expected - 1)))

    def _commit(self, event: ev.Event) -> None:
        added = self.store.add(
            self.board, event.boot, event.seq, event.code, event.qualifier, event.zone, event.value, event.uptime_ms
        )
        self.expected += 1
        if added:
            self.counters.stored += 1
            log.info("event stored", extra={"seq": event.seq, "code": event.code, "zone": event.zone})
            self._tell_stored(event, "board")
        else:
            self.counters.duplicates += 1

    # -- link state ----------------------------------------------------------------------

    def _set_up(self, up: bool) -> None:
        was, self.up = self.up, up
        self.store.set_state("link", "up" if up else "down")
        log.warning("link up" if up else "link down", extra={"board": self.board})
        if was is not None or not up:
            self.own_event(ev.COMM_TROUBLE, ev.RESTORE if up else ev.NEW, ev.ZONE_LINK)

    def own_event(self, code: int, qualifier: int, zone: int, value: int = 0) -> str:
        """Store an event the daemon itself saw (link loss, the alarm line, a test); its uid."""
        self._own_seq += 1
        self.store.add(self.board, 0, self._own_seq, code, qualifier, zone, value, 0, source="daemon")
        self._tell_stored(ev.Event(self._own_seq, 0, 0, code, qualifier, zone, value), "daemon")
        return self.store.uid_of(self.board, "daemon", 0, self._own_seq) or ""

    def _tell_stored(self, event: ev.Event, source: str) -> None:
        """Tell the listener (the camera) of a stored event; its faults never reach the link."""
        if self.on_stored is None:
            return
        try:
            self.on_stored(event, source)
        except Exception:
            log.exception("a listener failed on a stored event; the link goes on")

    def _beat_ms(self) -> int:
        return round(self.heartbeat_s * 1000)

    def tick(self) -> None:
        """Send a heartbeat when due and notice a silent board; call a few times a second."""
        now = self.clock()
        if now >= self._next_beat:
            flags = 0 if self.info is not None else codec.HB_WANT_HELLO
            self.write(codec.encode(codec.HEARTBEAT, codec.pack(codec.HEARTBEAT, flags, 0, 0, self.expected - 1)))
            self._next_beat = now + self.heartbeat_s
        if self.up is not False and now - self._last_heard > self.timeout_s:
            self._set_up(False)

    # -- commands ------------------------------------------------------------------------

    async def command(self, command: int, args: bytes = b"", timeout: float = 3.0) -> tuple[int, bytes]:
        """Send a command to the board; (status, data) of its RESULT.  TimeoutError if none comes.

        Without a RESULT within ``ack_timeout_s`` the same request goes again; the
        board carries a request out once and answers a resend with the same result.
        """
        request = self._next_request
        self._next_request = request % 0xFFFF + 1
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._requests[request] = future
        frame = codec.encode(codec.COMMAND, codec.pack(codec.COMMAND, request, command, tail=args))
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                self.write(frame)
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError(f"no result from the board for command {command}")
                try:
                    return await asyncio.wait_for(asyncio.shield(future), min(self.ack_timeout_s, left))
                except TimeoutError:
                    continue
        finally:
            self._requests.pop(request, None)
