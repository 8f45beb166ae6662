"""The bench's camera: real JPEG frames on time, the alarm mark, and the MJPEG server that plays an IP camera."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from PIL import Image

from edge_daemon.camera import Frame, is_jpeg
from hw_sim.camera import MjpegServer, SimCamera, has_alarm_mark

from .conftest import require

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Frames:
    """A camera's sink that keeps every frame and lets the test wait for a number of them."""

    def __init__(self) -> None:
        self.got: list[Frame] = []
        self._cond = threading.Condition()

    def __call__(self, frame: Frame) -> None:
        with self._cond:
            self.got.append(frame)
            self._cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list[Frame]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= count, timeout), f"{len(self.got)} of {count} frames"
            return list(self.got)


@pytest.fixture
def running() -> Iterator[tuple[SimCamera, Frames]]:
    camera, frames = SimCamera(320, 240, fps=50.0, quality=70), Frames()
    camera.start(frames)
    yield camera, frames
    camera.stop()


def decode(jpeg: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(jpeg))
    picture.load()
    assert picture.format == "JPEG"
    return picture


def test_frames_are_jpegs_of_the_configured_size_numbered_from_one() -> None:
    camera, frames = SimCamera(640, 480, fps=20.0, quality=80), Frames()
    camera.start(frames)
    got = frames.wait(5)
    camera.stop()
    after_stop = len(frames.got)
    assert [f.seq for f in got] == list(range(1, len(got) + 1))
    for frame in got:
        assert is_jpeg(frame.jpeg) and decode(frame.jpeg).size == (640, 480)
    assert abs(got[0].captured - time.time()) < 5
    assert len({f.jpeg for f in got}) == len(got)  # time and counter differ on every frame
    camera.start(frames)  # a restart counts from 1 again
    assert frames.wait(after_stop + 1)[after_stop].seq == 1
    camera.stop()


def test_capture_times_follow_the_frame_rate_without_drift(running: tuple[SimCamera, Frames]) -> None:
    camera, frames = running
    got = frames.wait(41)[:41]
    period = 1 / camera.fps
    gaps = [b.captured - a.captured for a, b in zip(got, got[1:], strict=False)]
    assert (got[-1].captured - got[0].captured) / 40 == pytest.approx(period, rel=0.05)  # no drift over 40 frames
    assert max(gaps) < 4 * period, gaps


def test_the_mark_shows_exactly_while_the_alarm_is_active(running: tuple[SimCamera, Frames]) -> None:
    camera, frames = running
    before = frames.wait(3)
    camera.alarm_active = True
    switched_on = len(frames.got)  # frame switched_on + 1 may have been captured before the flag was set
    during = frames.wait(switched_on + 4)[switched_on + 1 :]
    camera.alarm_active = False
    switched_off = len(frames.got)
    after = frames.wait(switched_off + 4)[switched_off + 1 :]
    assert not any(has_alarm_mark(f.jpeg) for f in before + after)
    assert all(has_alarm_mark(f.jpeg) for f in during)


def test_has_alarm_mark_survives_scaling_and_re_encoding_and_ignores_other_red() -> None:
    camera = SimCamera(640, 480)
    marked, plain = camera.render(time.time(), 7, alarm=True), camera.render(time.time(), 7, alarm=False)
    assert has_alarm_mark(marked) and not has_alarm_mark(plain)
    for size, quality in (((320, 240), 60), ((160, 120), 30)):
        for jpeg, expected in ((marked, True), (plain, False)):
            out = io.BytesIO()
            decode(jpeg).resize(size).save(out, "JPEG", quality=quality)
            assert has_alarm_mark(out.getvalue()) is expected, (size, quality)
    red_middle = decode(plain).convert("RGB")
    red_middle.paste((220, 0, 0), (100, 100, 540, 380))  # red in the picture, not along its edges
    out = io.BytesIO()
    red_middle.save(out, "JPEG")
    assert not has_alarm_mark(out.getvalue())


def test_a_failing_sink_does_not_stop_the_camera() -> None:
    frames = Frames()

    def sink(frame: Frame) -> None:
        frames(frame)
        if frame.seq == 1:
            raise RuntimeError("a consumer's bug")

    camera = SimCamera(160, 120, fps=50.0)
    camera.start(sink)
    try:
        assert frames.wait(3)[2].seq == 3
    finally:
        camera.stop()


# -- the MJPEG server -------------------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[MjpegServer]:
    with MjpegServer(SimCamera(320, 240, fps=25.0, quality=70)) as running_server:
        yield running_server


def open_stream(port: int) -> tuple[socket.socket, io.BufferedReader, str]:
    """A raw HTTP GET of the stream: the socket, a reader past the headers, and the boundary."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: camera\r\n\r\n")
    reader = conn.makefile("rb")
    assert reader.readline().split()[1] == b"200"
    headers = read_headers(reader)
    kind, _, boundary = headers["content-type"].partition("; boundary=")
    assert kind == "multipart/x-mixed-replace" and boundary
    return conn, reader, boundary


def read_headers(reader: io.BufferedReader) -> dict[str, str]:
    headers = {}
    while (line := reader.readline().decode().strip()) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def read_part(reader: io.BufferedReader, boundary: str) -> bytes:
    assert reader.readline() == f"--{boundary}\r\n".encode()
    headers = read_headers(reader)
    assert headers["content-type"] == "image/jpeg"
    jpeg = reader.read(int(headers["content-length"]))
    assert reader.read(2) == b"\r\n"
    return jpeg


def test_a_snapshot_is_one_jpeg(server: MjpegServer) -> None:
    with NO_PROXY.open(f"http://127.0.0.1:{server.port}/snapshot.jpg", timeout=5) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        jpeg = response.read()
        assert int(response.headers["Content-Length"]) == len(jpeg)
    assert decode(jpeg).size == (320, 240)


def test_the_stream_serves_new_frames_to_several_clients_at_once(server: MjpegServer) -> None:
    streams = [open_stream(server.port) for _ in range(3)]
    try:
        for _conn, reader, boundary in streams:
            parts = [read_part(reader, boundary) for _ in range(3)]
            assert all(decode(p).size == (320, 240) for p in parts)
            assert len(set(parts)) == 3  # a new frame each time, not the same one again
    finally:
        for conn, reader, _boundary in streams:
            reader.close()
            conn.close()


def test_a_client_that_hangs_up_mid_stream_breaks_nothing(server: MjpegServer) -> None:
    conn, reader, boundary = open_stream(server.port)
    read_part(reader, boundary)
    reader.read(100)  # in the middle of the next part
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
    reader.close()
    conn.close()
    conn, reader, boundary = open_stream(server.port)
    try:
        assert decode(read_part(reader, boundary)).size == (320, 240)
    finally:
        reader.close()
        conn.close()
    with NO_PROXY.open(f"http://127.0.0.1:{server.port}/snapshot.jpg", timeout=5) as response:
        assert is_jpeg(response.read())


def test_ffmpeg_reads_the_stream_as_from_an_ip_camera(server: MjpegServer) -> None:
    ffmpeg = require("ffmpeg")
    url = f"http://127.0.0.1:{server.port}/stream.mjpg"
    done = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            url,
            "-frames:v",
            "3",
            "-f",
            "image2pipe",
            "-c:v",
            "mjpeg",
            "-",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    jpegs = done.stdout.split(b"\xff\xd9\xff\xd8")  # ffmpeg writes the JPEGs back to back
    assert len(jpegs) == 3
    assert decode(jpegs[0] + b"\xff\xd9").size == (320, 240)
    assert decode(b"\xff\xd8" + jpegs[-1]).size == (320, 240)


def test_stop_ends_open_streams() -> None:
    server = MjpegServer(SimCamera(160, 120, fps=25.0))
    port = server.start()
    conn, reader, boundary = open_stream(port)
    try:
        read_part(reader, boundary)
        server.stop()
        rest = reader.read()  # returns at the server's close, not at the client's timeout
        assert len(rest) < 2 * 1024 * 1024
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        reader.close()
        conn.close()
