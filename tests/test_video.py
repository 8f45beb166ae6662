"""Pictures from the post's camera: alarm picture, pre-alarm buffer, live stream, pieces and the cap.

The camera is the bench's (real JPEG frames); the pieces go to the centre's
real viewer, which puts them together and checks them, in place of the broker.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from PIL import Image

from edge_daemon.video import TokenBucket, Video, pieces
from edge_daemon.viewer import Picture, Viewer
from hw_sim.camera import SimCamera, has_alarm_mark


class Centre:
    """The receiving end: every piece through a real viewer; whole pictures in arrival order."""

    def __init__(self) -> None:
        self.viewer = Viewer()
        self.pictures: list[Picture] = []
        self.sent: list[tuple[float, int]] = []  # (when, bytes) of every piece
        self.connected = True
        self._cond = threading.Condition()

    def publish(self, channel: str, piece: bytes, headers: dict[str, str]) -> bool:
        if not self.connected:
            return False
        self.sent.append((time.monotonic(), len(piece)))
        picture = self.viewer.add("school-1", "post-1", channel, piece, headers)
        if picture is not None:
            with self._cond:
                self.pictures.append(picture)
                self._cond.notify_all()
        return True

    def wait(self, test: object, timeout: float = 10.0) -> Picture:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((p for p in self.pictures if test(p)), None)  # type: ignore[operator]
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                assert left > 0, f"no such picture within {timeout} s; got {[p.kind for p in self.pictures]}"
                self._cond.wait(left)

    def count(self, kind: str) -> int:
        with self._cond:
            return sum(1 for p in self.pictures if p.kind == kind)


@pytest.fixture
def centre() -> Centre:
    return Centre()


@pytest.fixture
def video(centre: Centre) -> Iterator[Video]:
    made = Video(SimCamera(320, 240, fps=10.0, quality=70), centre.publish)
    made.pre_alarm_s = 2.0
    made.stream_fps = 5.0
    made.stream_max_s = 30.0
    made.chunk_bytes = 4096  # several pieces per frame
    made.start()
    yield made
    made.stop()


def captured(picture: Picture) -> float:
    return datetime.fromisoformat(picture.captured.replace("Z", "+00:00")).timestamp()


def wait_buffered(video: Video, seconds: float) -> None:
    """Let the camera fill the buffer for ``seconds`` of frames (counted in frames, not slept)."""
    frames = video.counters.frames + int(seconds * video.camera.fps)
    deadline = time.monotonic() + seconds * 4 + 5
    while video.counters.frames < frames:
        assert time.monotonic() < deadline, "the camera stopped delivering"
        time.sleep(0.02)  # polling the camera thread's counter


def test_a_press_sends_the_alarm_picture_first_then_the_seconds_before(video: Video, centre: Centre) -> None:
    wait_buffered(video, 2.5)
    pressed = time.time()
    video.alarm("3b0f8a52-9d1e-4c6b-8f0e-5a7d2c9e1b34", pressed)
    alarm = centre.wait(lambda p: p.kind == "alarm")
    assert has_alarm_mark(alarm.jpeg)  # captured after the alarm was known: the mark shows
    assert Image.open(io.BytesIO(alarm.jpeg)).size == (320, 240)
    assert captured(alarm) >= pressed - 0.01
    assert alarm.alarm == "3b0f8a52-9d1e-4c6b-8f0e-5a7d2c9e1b34"
    centre.wait(lambda p: p.kind == "live")  # the stream starts after the pre-alarm pictures
    pre = [p for p in centre.pictures if p.kind == "pre"]
    assert len(pre) >= int(video.pre_alarm_s * video.camera.fps) - 2
    times = [captured(p) for p in pre]
    assert times == sorted(times)  # oldest first
    assert all(pressed - video.pre_alarm_s - 0.2 <= t < pressed for t in times)
    assert not any(has_alarm_mark(p.jpeg) for p in pre)  # the gate as it was before the press
    kinds = [p.kind for p in centre.pictures]
    assert kinds[0] == "alarm" and kinds.index("live") > max(i for i, k in enumerate(kinds) if k == "pre")


def test_the_stream_stops_on_command_on_reset_and_on_its_time_limit(video: Video, centre: Centre) -> None:
    video.stream(30)
    centre.wait(lambda p: p.kind == "live")
    video.stream_stop()
    assert not video.streaming
    stopped = centre.count("live")
    wait_buffered(video, 1.0)
    assert centre.count("live") <= stopped + 1  # at most one frame already on its way

    video.alarm("", time.time())
    first = centre.wait(lambda p: p.kind == "alarm")
    centre.wait(lambda p: p.kind == "live" and p.seq > first.seq)
    video.alarm_cleared()
    assert not video.streaming

    video.stream_max_s = 1.0
    video.stream(600)  # asked for more than the limit
    assert video.streaming
    deadline = time.monotonic() + 5
    while video.streaming:
        assert time.monotonic() < deadline, "the stream outlived stream_max_s"
        time.sleep(0.05)  # polling a deadline of the video thread


def test_the_stream_keeps_to_the_bandwidth_cap(centre: Centre) -> None:
    video = Video(SimCamera(640, 480, fps=15.0, quality=90), centre.publish)
    video.stream_fps = 15.0
    video.rate_bytes_s = 100_000.0
    video.chunk_bytes = 8192
    video.bucket = TokenBucket(video.rate_bytes_s, 4 * video.chunk_bytes)
    video.start()
    try:
        video.stream(30)
        start = time.monotonic()
        wait_buffered(video, 3.0)
        end = time.monotonic()
    finally:
        video.stop()
    window = end - start
    sent = sum(size for at, size in centre.sent if start <= at <= end)
    assert sent <= video.rate_bytes_s * window + 4 * video.chunk_bytes
    assert centre.count("live") >= 3
    assert video.counters.skipped > 0  # 15 large frames a second do not fit 100 kB/s: frames were skipped


def test_the_buffer_is_bounded_in_bytes(centre: Centre) -> None:
    video = Video(SimCamera(320, 240, fps=20.0, quality=90), centre.publish)
    video.pre_alarm_s = 10.0
    video.buffer_bytes = 60_000  # a few frames only
    video.start()
    try:
        wait_buffered(video, 1.0)
        assert video._buffered <= video.buffer_bytes
        assert video.counters.evicted > 0
    finally:
        video.stop()


def test_pieces_and_the_token_bucket() -> None:
    assert pieces(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    now = [0.0]
    bucket = TokenBucket(1000.0, 500.0, clock=lambda: now[0])
    assert bucket.wait_time(500) == 0.0
    bucket.take(800)  # an overdraft (the alarm picture)
    assert bucket.wait_time(100) == pytest.approx(0.4)
    now[0] = 0.4
    assert bucket.wait_time(100) == 0.0


def test_a_frame_with_a_missing_or_damaged_piece_is_dropped_not_shown() -> None:
    camera = SimCamera(320, 240)
    got: list[bytes] = []
    camera.start(lambda frame: got.append(frame.jpeg))
    deadline = time.monotonic() + 5
    while len(got) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)  # polling the camera thread's frames
    camera.stop()
    sent: list[tuple[bytes, dict[str, str]]] = []

    def keep(channel: str, piece: bytes, headers: dict[str, str]) -> bool:
        sent.append((piece, headers))
        return True

    maker = Video(camera, keep)
    maker.chunk_bytes = 2048
    for index, jpeg in enumerate(got):
        maker._send("snapshots", _frame(jpeg, index + 1), "snapshot", "")
    by_frame: dict[str, list[tuple[bytes, dict[str, str]]]] = {}
    for piece, headers in sent:
        by_frame.setdefault(headers["frame"], []).append((piece, headers))
    first, second, third = by_frame.values()
    viewer = Viewer()
    damaged = bytes([first[1][0][0] ^ 0xFF]) + first[1][0][1:]
    results = [viewer.add("s", "p", "snapshots", damaged if i == 1 else p, h) for i, (p, h) in enumerate(first)]
    assert results[-1] is None and viewer.counters.corrupt == 1
    for piece, headers in second[:-1]:  # its last piece never comes
        assert viewer.add("s", "p", "snapshots", piece, headers) is None
    whole = [viewer.add("s", "p", "snapshots", p, h) for p, h in third][-1]
    assert whole is not None and whole.jpeg == got[2]
    viewer.stale_s = 0.0
    for piece, headers in third:  # a later frame completes: the stale one is given up
        viewer.add("s", "p", "snapshots", piece, dict(headers, frame=headers["frame"][:-1] + "9"))
    assert viewer.counters.incomplete >= 1
    assert viewer.counters.pictures == 2


def _frame(jpeg: bytes, seq: int):  # type: ignore[no-untyped-def]
    from edge_daemon.camera import Frame

    return Frame(jpeg, time.time(), seq)


def test_the_stream_keeps_its_own_frame_rate(centre: Centre) -> None:
    video = Video(SimCamera(320, 240, fps=10.0), centre.publish)
    video.stream_fps = 2.0
    video.start()
    try:
        video.stream(30)
        centre.wait(lambda p: p.kind == "live")
        start = time.monotonic()
        wait_buffered(video, 3.0)
        window = time.monotonic() - start
    finally:
        video.stop()
    live = [p for p in centre.pictures if p.kind == "live"]
    assert len(live) <= window * video.stream_fps + 2  # 2 a second, not the camera's 10
    assert len(live) >= 3
