"""The board's end of the serial link to the Pi: events out, acks and commands in.

Delivery is at least once and in order.  The journal is the outbox: the Pi's
cumulative ACK says which sequence numbers it has stored, and the link sends
what comes after, at most ``window`` frames ahead; without progress for
``resend_ms`` it goes back and sends again from the first unacknowledged event.
When the Pi repeats its ACK (a frame was lost and later ones arrived), only the
missing event is sent again: the Pi holds the later ones and its next ACK moves
past them all.  The journal frees only what the Pi has acknowledged, but when
it is full it folds or drops events the Pi has not stored: sending stops before
such a hole until everything in front of it is acknowledged, then a HELLO whose
oldest sequence number is the event after the hole lets the Pi record the gap
and move on, and sending goes on at once.
After a reset of either side the Pi's HELLO_ACK or heartbeat tells the board
where to resume, so events raised while the link was down, across a board
reset or a Pi reboot, all arrive, and the Pi drops duplicates by (boot, seq).

Heartbeats go out every ``heartbeat_ms``; with nothing heard from the Pi for
``timeout_ms`` the link is down: the post shows trouble and records a
communication-trouble event (350), restored when the Pi is heard again.

>>> link = Link(machine.UART(0, 115200), post)
>>> asyncio.create_task(link.receive()); asyncio.create_task(link.send())
"""

import asyncio
import os
import struct
import time

from alarmpost import codec


class Link:
    heartbeat_ms = 1000
    timeout_ms = 2500  # heartbeats every 1 s: a lost link shows within 3 s
    resend_ms = 300  # no progress for this long: send again from the first unacknowledged event
    fast_resend_ms = 20  # an ACK that repeats this long after progress means a frame was lost
    window = 8
    recent_kept = 8  # recent events kept in RAM so sending does not read the flash

    def __init__(self, uart, post):
        self.uart = uart
        self.post = post
        self.decoder = codec.Decoder()
        self.boot_id = struct.unpack("<I", os.urandom(4))[0]
        self.up = None  # None until the Pi is first heard or first missed
        self.acked = None  # the Pi's stored sequence number, once known
        self.sent = 0  # highest sequence number sent since the last go-back
        self.errors_sent = 0
        self._recent = []
        self._last_command = None  # (request, status, data) of the last command carried out
        self._last_heard = time.ticks_ms()
        self._progress_at = time.ticks_ms()
        self._wake = asyncio.ThreadSafeFlag()
        self._beat_now = False

    # -- from the post ------------------------------------------------------------------

    def event_added(self, event):
        self._recent.append(event)
        if len(self._recent) > self.recent_kept:
            self._recent.pop(0)
        self._wake.set()

    # -- receiving ----------------------------------------------------------------------

    async def receive(self):
        reader = asyncio.StreamReader(self.uart)
        while True:
            data = await reader.read(64)
            for frame in self.decoder.feed(data):
                try:
                    self.handle(frame)
                except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the link
                    print("TR link: frame 0x%02x dropped: %r" % (frame.type, exc))

    def handle(self, frame):
        refusal = codec.check_frame(frame)
        if refusal is not None:
            if refusal:
                self._write(refusal)
                self.errors_sent += 1
            return
        self._last_heard = time.ticks_ms()
        if self.up is not True:
            self._set_up(True)
        try:
            self._dispatch(frame)
        except (ValueError, UnicodeError):
            self._write(codec.error(codec.ERR_BAD_PAYLOAD, frame.type))
            self.errors_sent += 1

    def _dispatch(self, frame):
        kind = frame.type
        if kind in (codec.HELLO, codec.EVENT, codec.RESULT):  # board-to-Pi frames sent to the board
            self._write(codec.error(codec.ERR_UNKNOWN_TYPE, kind))
            self.errors_sent += 1
            return
        fields, tail = codec.unpack(kind, frame.payload)
        if kind == codec.ACK or kind == codec.HELLO_ACK:
            self._acked(fields[0])
        elif kind == codec.HEARTBEAT:
            if fields[0] & codec.HB_WANT_HELLO:
                self.hello()
            self._acked(fields[3])
        elif kind == codec.COMMAND:
            self._command(fields[0], fields[1], tail)

    def _command(self, request, command, args):
        """Carry out a command once; a resend of the same request gets the same result again."""
        done = self._last_command
        if done is None or done[0] != request:
            try:
                status, data = self.post.command(command, args)
            except Exception as exc:  # noqa: BLE001 - a failed command must not stop the link
                status, data = codec.FAILED, repr(exc).encode()[: codec.MAX_PAYLOAD - 3]
            done = self._last_command = (request, status, data)
        self._write(codec.encode(codec.RESULT, codec.pack(codec.RESULT, request, done[1], tail=done[2])))

    def _acked(self, seq):
        """The Pi has stored every event up to ``seq``.

        If that is less than was sent (frames lost, or the Pi restarted), the
        resend timer goes back to it; if it is more (the board restarted), sending
        resumes after it.
        """
        if seq > self.post.seq:
            self.hello()  # the Pi holds another board history under this post's name: it must start afresh
            return
        now = time.ticks_ms()
        if seq != self.acked:
            self._progress_at = now
        elif self.sent > seq and time.ticks_diff(now, self._progress_at) >= self.fast_resend_ms:
            self._resend_next(seq)  # the Pi keeps asking for the same next event: it was lost
            self._progress_at = now
        self.acked = seq
        if self.sent < seq:
            self.sent = seq
        self.post.journal.set_acked(seq)
        self._wake.set()

    def _resend_next(self, acked):
        """Send the first unacknowledged event again; the Pi holds the later ones it already has."""
        for event in self._events_after(acked, 1):
            if event.seq > acked + 1:
                self.hello(event.seq)  # the ones before it are gone from the journal
            self._write(codec.encode(codec.EVENT, codec.pack_event(event)))

    def _set_up(self, up):
        was = self.up
        self.up = up
        if up:
            self.hello()
        if was is not None or not up:
            self.post.link_changed(up)

    # -- sending ------------------------------------------------------------------------

    def _write(self, frame):
        self.uart.write(frame)

    def hello(self, oldest=None):
        """Who the board is; ``oldest``: the next event the Pi can have, when those before it are gone."""
        post = self.post
        if oldest is None:
            oldest = post.journal.oldest_seq()
        tail = codec.texts(post.firmware_version, post.board["name"] or "")
        payload = codec.pack(codec.HELLO, self.boot_id, post.boot_count, oldest, post.seq, tail=tail)
        self._write(codec.encode(codec.HELLO, payload))

    def _heartbeat(self):
        post = self.post
        state = codec.STATES.index(post.alarm.state)
        flags = (codec.HB_SIREN if post.sounding else 0) | (codec.HB_STROBE if post.flashing else 0)
        if post.testing:
            flags |= codec.HB_TESTING
        payload = codec.pack(codec.HEARTBEAT, flags, state, len(post.faults), post.seq)
        self._write(codec.encode(codec.HEARTBEAT, payload))

    def beat_soon(self):
        """What the post shows changed: tell the Pi in a heartbeat now, not at the next period."""
        self._beat_now = True
        self._wake.set()

    def _events_after(self, seq, limit):
        if self._recent and self._recent[0].seq <= seq + 1:
            return [e for e in self._recent if e.seq > seq][:limit]
        return self.post.journal.events_after(seq, limit)

    def _send_events(self, now):
        if self.acked is None or self.up is not True:
            return
        if self.sent > self.acked and time.ticks_diff(now, self._progress_at) >= self.resend_ms:
            self.sent = self.acked  # go back: resend from the first unacknowledged event
            self._progress_at = now
        room = self.window - (self.sent - self.acked)
        if room <= 0 or self.sent >= self.post.seq:
            return
        if self.sent == self.acked:
            self._progress_at = now
        batch = self._events_after(self.sent, room)
        after = batch[0].seq if batch else self.post.seq + 1
        if after > self.sent + 1:
            # the events in between left the journal unsent (dropped or folded, or the Pi was away too long)
            if self.sent != self.acked:
                return  # announce the hole only once everything in front of it is stored
            self.hello(after)  # the Pi records the gap and takes `after` next: the events can follow at once
            self.sent = after - 1
        for event in batch:
            if event.seq != self.sent + 1:
                break  # another hole: it waits for the acknowledgement of these
            self._write(codec.encode(codec.EVENT, codec.pack_event(event)))
            self.sent = event.seq

    async def send(self):
        self.hello()
        next_beat = time.ticks_ms()
        while True:
            now = time.ticks_ms()
            if self._beat_now or time.ticks_diff(now, next_beat) >= 0:
                self._beat_now = False
                self._heartbeat()
                next_beat = time.ticks_add(now, self.heartbeat_ms)
            if self.up is not False and time.ticks_diff(now, self._last_heard) > self.timeout_ms:
                self._set_up(False)
            self._send_events(now)
            wait = min(time.ticks_diff(next_beat, now), self.resend_ms)
            try:
                await asyncio.wait_for_ms(self._wake.wait(), max(wait, 1))
            except asyncio.TimeoutError:
                pass
