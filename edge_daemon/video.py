"""Pictures for the centre: the pre-alarm buffer, the alarm picture, pre-alarm pictures and the live stream.

Timing, from a press (the daemon calls :meth:`Video.alarm` as it stores the panic event):

1. **alarm picture**: the first frame the camera captures after the alarm is known
   (so it shows the alarm, at most one frame interval later), sent at once;
2. **pre-alarm pictures**: the frames of the last ``pre_alarm_s`` before the press,
   oldest first, from a ring buffer bounded in bytes (``buffer_bytes``: the oldest
   frames go first) and in age;
3. **live stream**: the newest frame ``stream_fps`` times a second while the alarm
   lasts or the centre asked (``stream``), until ``stream_stop``, the alarm's reset, or
   ``stream_max_s``.

Alarm, pre-alarm and asked-for pictures go to ``snapshots`` at QoS 1; the stream to
``stream`` at QoS 0.  Every JPEG is cut into pieces of at most ``chunk_bytes``, each
carrying the frame's id, kind, sequence number, capture time, the alarm's event id,
the piece's index and count, and the whole frame's size and SHA-256, so the centre
can put it together and drop a frame that lost a piece.  All of it is paced by a
token bucket at ``rate_bytes_s``; the alarm picture may overdraw it, so it is
never held back.

Pictures never slow an alarm down: the camera captures in its own thread, this
module sends from another one, and :class:`VideoLink` is a second MQTT connection
of the post's own, so pictures never queue in the socket in front of an event.

Example::

    video = Video(camera, VideoLink(config.uplink, topics, password).publish, topics)
    video.start()
    video.alarm("3b0f8a52-...", time.time())   # a press: pictures follow
    video.alarm_cleared()                       # the alarm was reset: the stream ends
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import paho.mqtt.client as mqtt

from edge_daemon.camera import Camera, Frame
from edge_daemon.config import CameraConfig, UplinkConfig
from edge_daemon.contract import CHANNELS, Topics, iso_time
from edge_daemon.uplink import post_client, publish_properties

log = logging.getLogger("edge_daemon.video")

# (channel, piece, headers) -> sent?  The channel is "snapshots" or "stream".
Publish = Callable[[str, bytes, dict[str, str]], bool]


def pieces(jpeg: bytes, size: int) -> list[bytes]:
    """``jpeg`` cut into pieces of at most ``size`` bytes."""
    return [jpeg[i : i + size] for i in range(0, len(jpeg), size)] or [b""]


class TokenBucket:
    """A bandwidth cap: ``rate`` bytes a second, bursts up to ``burst`` bytes."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self._at = clock()

    def _fill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def wait_time(self, size: int) -> float:
        """Seconds until ``size`` bytes may go (0: now)."""
        self._fill()
        return 0.0 if self.tokens >= size else (size - self.tokens) / self.rate

    def take(self, size: int) -> None:
        self._fill()
        self.tokens -= size  # may go below zero: an overdraft is paid back before anything else goes


@dataclass
class VideoCounters:
    frames: int = 0  # frames the camera delivered
    sent: int = 0  # pictures sent (all pieces)
    bytes_sent: int = 0
    skipped: int = 0  # live frames not sent because the cap or the broker could not take them
    evicted: int = 0  # frames that left the buffer for room


class Video:
    """The pictures of one post; see the module docstring for the timing."""

    pre_alarm_s = 5.0
    buffer_bytes = 16 * 1024 * 1024
    stream_fps = 5.0
    stream_max_s = 300.0
    rate_bytes_s = 250_000.0  # 2 Mbit/s
    chunk_bytes = 32 * 1024
    alarm_picture_wait_s = 2.0  # with no new frame by then, the newest one is sent as the alarm picture

    def __init__(self, camera: Camera, publish: Publish) -> None:
        self.camera = camera
        self.publish = publish
        self.counters = VideoCounters()
        self.run_id = secrets.token_hex(4)
        self._frames: deque[Frame] = deque()
        self._buffered = 0
        self._cond = threading.Condition()
        self._asked: list[tuple[str, str, float]] = []  # (kind, alarm id, not captured before)
        self._pre: deque[tuple[Frame, str]] = deque()  # pre-alarm pictures still to send, oldest first
        self._alarm_id = ""
        self._alarm_active = False
        self._stream_until = 0.0
        self._asked_until = 0.0  # the end of a stream the centre asked for
        self._stream_sent_seq = 0
        self._next_live_at = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="video", daemon=True)
        self.bucket = TokenBucket(self.rate_bytes_s, max(self.rate_bytes_s, 4 * self.chunk_bytes))

    def configure(self, settings: CameraConfig) -> None:
        """Take the ``[camera]`` config's buffer, stream and cap settings (before :meth:`start`)."""
        self.pre_alarm_s = settings.pre_alarm_s
        self.buffer_bytes = int(settings.buffer_mb * 1024 * 1024)
        self.stream_fps = settings.stream_fps
        self.stream_max_s = settings.stream_max_s
        self.rate_bytes_s = settings.stream_kbps * 1000 / 8
        self.chunk_bytes = settings.chunk_kb * 1024
        self.bucket = TokenBucket(self.rate_bytes_s, max(self.rate_bytes_s, 4 * self.chunk_bytes))

    # -- from the camera's thread ---------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        with self._cond:
            self.counters.frames += 1
            self._frames.append(frame)
            self._buffered += len(frame.jpeg)
            oldest_kept = frame.captured - self.pre_alarm_s - 1.0
            while len(self._frames) > 1 and self._frames[0].captured < oldest_kept:
                self._buffered -= len(self._frames.popleft().jpeg)
            while len(self._frames) > 1 and self._buffered > self.buffer_bytes:
                self._buffered -= len(self._frames.popleft().jpeg)
                self.counters.evicted += 1  # the buffer is too small for pre_alarm_s of these frames
            self._cond.notify_all()

    # -- from the daemon ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self.camera.start(self._on_frame)

    def alarm(self, alarm_id: str, pressed_at: float) -> None:
        """A press: the alarm picture, the pre-alarm pictures, then the stream while the alarm lasts."""
        self.camera.alarm_active = True
        with self._cond:
            self._alarm_id = alarm_id
            self._alarm_active = True
            self._asked.append(("alarm", alarm_id, time.time()))
            window = [f for f in self._frames if pressed_at - self.pre_alarm_s <= f.captured < pressed_at]
            self._pre.extend((frame, alarm_id) for frame in window)  # taken now: the buffer moves on
            self._stream_until = max(self._stream_until, time.monotonic() + self.stream_max_s)
            self._cond.notify_all()

    def alarm_cleared(self) -> None:
        """The alarm was reset: the stream it started ends (one the centre asked for goes on)."""
        self.camera.alarm_active = False
        with self._cond:
            if self._alarm_active:
                self._alarm_active = False
                self._stream_until = min(self._stream_until, self._asked_until)
            self._cond.notify_all()

    def newest_frame(self) -> Frame | None:
        """The newest frame the camera gave, if any (the self-test's check that it gives pictures)."""
        with self._cond:
            return self._frames[-1] if self._frames else None

    def snapshot(self) -> None:
        """The centre asked for a picture: the next frame goes to ``snapshots``."""
        with self._cond:
            self._asked.append(("snapshot", self._alarm_id if self._alarm_active else "", time.time()))
            self._cond.notify_all()

    def stream(self, seconds: float) -> None:
        """The centre asked for the live stream for ``seconds``."""
        with self._cond:
            self._asked_until = time.monotonic() + min(seconds, self.stream_max_s)
            self._stream_until = max(self._stream_until, self._asked_until)
            self._cond.notify_all()

    def stream_stop(self) -> None:
        """The centre stopped the stream (the alarm's too)."""
        with self._cond:
            self._asked_until = 0.0
            self._stream_until = 0.0
            self._cond.notify_all()

    @property
    def alarm_running(self) -> bool:
        """True from a press until the alarm is reset."""
        return self._alarm_active

    @property
    def streaming(self) -> bool:
        return time.monotonic() < self._stream_until

    def stop(self) -> None:
        try:
            self.camera.stop()
        except Exception:  # a camera that never started may not stop cleanly either
            log.exception("the camera did not stop cleanly")
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)

    # -- the sending thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next_job()
                while job is None and not self._stopping:
                    self._cond.wait(self._idle_wait())
                    job = self._next_job()
                if self._stopping:
                    return
            assert job is not None
            job()

    def _idle_wait(self) -> float | None:
        if self._asked:
            return self.alarm_picture_wait_s / 4  # to notice a camera that stopped delivering
        if self.streaming:
            return max(0.001, self._next_live_at - time.monotonic()) if self._new_live_frame() else None
        return None

    def _new_live_frame(self) -> bool:
        return bool(self._frames) and self._frames[-1].seq != self._stream_sent_seq

    def _next_job(self) -> Callable[[], None] | None:
        """What to send next (called holding the lock): asked pictures, then pre-alarm, then the stream."""
        for index, (kind, alarm_id, not_before) in enumerate(self._asked):
            frame = next((f for f in self._frames if f.captured >= not_before), None)
            waited_out = time.time() - not_before > self.alarm_picture_wait_s
            if frame is None and waited_out and self._frames:
                frame = self._frames[-1]  # the camera stalled: better an older picture than none
            if frame is not None:
                del self._asked[index]
                return partial(self._send, "snapshots", frame, kind, alarm_id, overdraw=kind == "alarm")
        if self._pre and not self._asked:  # one at a time: a new press's alarm picture goes before the rest
            frame, alarm_id = self._pre.popleft()
            return partial(self._send, "snapshots", frame, "pre", alarm_id)
        if self._asked or self._pre:
            return None  # the alarm picture and the seconds before it go first: the stream waits
        now = time.monotonic()
        if self.streaming and now >= self._next_live_at and self._new_live_frame():
            self._stream_sent_seq = self._frames[-1].seq
            self._next_live_at = now + 1.0 / self.stream_fps  # the stream's own rate, whatever the camera's
            return partial(self._send_live, self._frames[-1])
        return None

    def _send_live(self, frame: Frame) -> None:
        if self.bucket.wait_time(len(frame.jpeg)) > 1.0 / self.stream_fps:
            self.counters.skipped += 1  # over the cap: this frame is skipped, a newer one will come
            return
        self._send("stream", frame, "live", self._alarm_id if self._alarm_active else "")

    def _send(self, channel: str, frame: Frame, kind: str, alarm_id: str, overdraw: bool = False) -> None:
        digest = hashlib.sha256(frame.jpeg).hexdigest()
        parts = pieces(frame.jpeg, self.chunk_bytes)
        base = {
            "frame": f"{self.run_id}-{frame.seq}",
            "kind": kind,
            "seq": str(frame.seq),
            "captured": iso_time(frame.captured),
            "alarm": alarm_id,
            "chunks": str(len(parts)),
            "size": str(len(frame.jpeg)),
            "sha256": digest,
        }
        for index, part in enumerate(parts):
            if not overdraw:
                self._pace(len(part))
            self.bucket.take(len(part))
            if not self.publish(channel, part, dict(base, chunk=str(index))):
                if channel == "stream":
                    self.counters.skipped += 1
                return  # not connected: the rest of this frame is useless
            self.counters.bytes_sent += len(part)
        self.counters.sent += 1

    def _pace(self, size: int) -> None:
        wait = self.bucket.wait_time(size)
        while wait > 0 and not self._stopping:
            time.sleep(wait)  # the bandwidth cap: this thread only sends pictures, nothing waits on it
            wait = self.bucket.wait_time(size)


class VideoLink:
    """The post's second MQTT connection, for pictures only (its own account, ``<site>/<post>/video``).

    paho's own thread and reconnect; no Last Will and no outbox: a picture that
    cannot be sent now is not worth sending later, the next one will be newer.
    """

    def __init__(self, config: UplinkConfig, topics: Topics, password: str | None) -> None:
        self.topics = topics
        self.client = post_client(config, topics, password, service="video")
        self.client.max_inflight_messages_set(64)
        self.client.reconnect_delay_set(1, int(max(1, config.reconnect_max_s)))
        self.host, self.port, self.keepalive = config.host, config.port, config.keepalive_s

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, self.keepalive)
        self.client.loop_start()

    def publish(self, channel: str, piece: bytes, headers: dict[str, str]) -> bool:
        if not self.client.is_connected():
            return False
        properties = publish_properties("image/jpeg")
        properties.UserProperty = list(headers.items())
        spec = CHANNELS[channel]
        info = self.client.publish(self.topics.of(channel), piece, qos=spec.qos, properties=properties)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
