"""The camera backends: the IP camera through a real ffmpeg, the JPEG splitter, and the Pi camera's missing-module path.

The "IP camera" is the bench's MJPEG server (:class:`hw_sim.camera.MjpegServer`);
a dead one is a port whose kernel accepts connections nobody ever answers.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from edge_daemon.camera import CameraError, Frame, is_jpeg, open_camera
from edge_daemon.camera_ffmpeg import FfmpegCamera, JpegSplitter, ffmpeg_qscale, mask_credentials
from edge_daemon.camera_pi import FrameOutput, PiCamera
from hw_sim.camera import MjpegServer, SimCamera
from hw_sim.mosquitto import free_port
from tests.conftest import require

WAIT_S = 10.0


class LogQueue(logging.Handler):
    """The camera's log lines, for a test to wait on."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: queue.Queue[str] = queue.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())

    def wait_for(self, text: str, timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no log line with {text!r} within {timeout} s") from None
            if text in line:
                return line


@pytest.fixture
def camera_log() -> Iterator[LogQueue]:
    logger = logging.getLogger("edge_daemon.camera")
    handler, level = LogQueue(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def ffmpeg() -> str:
    return require("ffmpeg")


@pytest.fixture
def cameras() -> Iterator[list[FfmpegCamera]]:
    """Cameras a test started; stopped after it even when it fails."""
    started: list[FfmpegCamera] = []
    yield started
    for camera in started:
        camera.stop()


class DeadCamera:
    """A TCP port that accepts connections and never says a word: a camera that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections: queue.Queue[socket.socket] = queue.Queue()
        self._accepted: list[socket.socket] = []  # held open: a dropped socket would reset ffmpeg's connection
        threading.Thread(target=self._accept, name="dead-camera", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection = self.listener.accept()[0]
            except OSError:
                return
            self._accepted.append(connection)
            self.connections.put(connection)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        for connection in self._accepted:
            connection.close()


@pytest.fixture
def dead_camera() -> Iterator[DeadCamera]:
    dead = DeadCamera()
    yield dead
    dead.close()


def next_frame(frames: queue.Queue[Frame]) -> Frame:
    return frames.get(timeout=WAIT_S)


def jpeg_of(width: int, height: int, seed: int, quality: int = 75) -> bytes:
    """A real JPEG of noise (lots of stuffed 0xFF bytes in its entropy-coded data)."""
    rng = random.Random(seed)
    picture = Image.frombytes("RGB", (width, height), bytes(rng.randrange(256) for _ in range(width * height * 3)))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()


# -- the splitter -----------------------------------------------------------------------------------------------------


def test_frames_split_at_every_byte_boundary_come_out_whole() -> None:
    jpegs = [jpeg_of(24, 24, seed) for seed in range(3)]
    assert all(b"\xff\x00" in jpeg for jpeg in jpegs), "the test frames should have stuffed bytes"
    stream = b"".join(jpegs)
    for cut in range(len(stream) + 1):
        splitter = JpegSplitter(1 << 20)
        assert splitter.feed(stream[:cut]) + splitter.feed(stream[cut:]) == jpegs, f"cut at byte {cut}"
        assert splitter.garbage_bytes == 0 and splitter.dropped_frames == 0
    splitter = JpegSplitter(1 << 20)
    assert [frame for i in range(len(stream)) for frame in splitter.feed(stream[i : i + 1])] == jpegs


def test_garbage_before_a_frame_is_dropped() -> None:
    jpeg = jpeg_of(8, 8, 1)
    garbage = b"\x00\xff\xd9 HTTP noise \xff\xff"  # an EOI and a trailing 0xFF outside any frame
    splitter = JpegSplitter(1 << 20)
    assert splitter.feed(garbage) == []
    assert splitter.feed(jpeg + b"\xff") == [jpeg]
    assert splitter.garbage_bytes == len(garbage)
    assert splitter.feed(jpeg[1:] + b"tail") == [jpeg], "a 0xFF at the end of a read may begin the next SOI"


def test_a_frame_cut_short_is_dropped_at_the_next_start_marker() -> None:
    first, second = jpeg_of(8, 8, 1), jpeg_of(8, 8, 2)
    splitter = JpegSplitter(1 << 20)
    assert splitter.feed(first[: len(first) // 2] + second) == [second]
    assert splitter.dropped_frames == 1


def test_an_oversize_frame_is_dropped_and_the_next_one_kept() -> None:
    small, big, after = jpeg_of(8, 8, 1), jpeg_of(64, 64, 2, quality=95), jpeg_of(8, 8, 3)
    limit = len(small) + 100
    assert len(big) > limit and len(after) <= limit
    stream = small + big + after
    at_once = JpegSplitter(limit)
    assert at_once.feed(stream) == [small, after]
    assert at_once.dropped_frames == 1
    in_reads = JpegSplitter(limit)  # the oversize frame overflows the buffer before its end marker comes
    assert [frame for i in range(0, len(stream), 7) for frame in in_reads.feed(stream[i : i + 7])] == [small, after]
    assert in_reads.dropped_frames == 1
    assert JpegSplitter(len(small)).feed(small) == [small], "a frame of exactly max_frame_bytes is kept"


# -- the command line -------------------------------------------------------------------------------------------------


def test_rtsp_goes_over_tcp_and_neither_url_nor_password_is_on_the_command_line() -> None:
    camera = FfmpegCamera("rtsp://viewer:s3cret@192.168.1.20:554/stream1", 640, 480, 10.0, 75)
    argv = camera.command()
    assert "s3cret" not in " ".join(argv) and "192.168.1.20" not in " ".join(argv)
    assert argv[argv.index("-i") + 1] == "pipe:0" and argv[argv.index("-f") + 1] == "concat"
    assert argv[argv.index("-vf") + 1] == "fps=10,scale=640:480"
    assert argv[argv.index("-q:v") + 1] == "4"
    assert argv[-3:] == ["-f", "image2pipe", "-"]
    script = camera.script().splitlines()
    assert script == [
        "ffconcat version 1.0",
        "file 'rtsp://viewer:s3cret@192.168.1.20:554/stream1'",
        "option rtsp_transport tcp",
        "option timeout 5000000",
    ]
    shown = camera.script(masked=True)
    assert "rtsp://***@192.168.1.20:554/stream1" in shown and "s3cret" not in shown
    http = FfmpegCamera("http://192.168.1.20/video.mjpg", 320, 240, 5.0, 75).script()
    assert "rtsp_transport" not in http and "option rw_timeout 5000000" in http
    quoted = FfmpegCamera("http://tech:it's@192.168.1.20/video.mjpg", 320, 240, 5.0, 75).script()
    assert "file 'http://tech:it'\\''s@192.168.1.20/video.mjpg'" in quoted  # as ffmpeg unquotes it


def ffmpeg_children() -> list[int]:
    """The ids of the ffmpeg processes this test process started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and fields.get("Name", "").strip() == "ffmpeg":
            found.append(int(entry.name))
    return found


def test_the_camera_password_is_not_in_the_running_ffmpegs_command_line(
    ffmpeg: str, cameras: list[FfmpegCamera]
) -> None:
    """What ``ps`` shows of the real ffmpeg holds no password, while the frames from the camera still come."""
    frames: queue.Queue[Frame] = queue.Queue()
    with MjpegServer(SimCamera(320, 240, fps=10.0)) as server:
        camera = FfmpegCamera(
            f"http://tech:s3cret@127.0.0.1:{server.port}/stream.mjpg", 160, 120, 10.0, 75, ffmpeg=ffmpeg
        )
        cameras.append(camera)
        camera.start(frames.put)
        assert is_jpeg(next_frame(frames).jpeg)  # ffmpeg got the URL, credentials included
        (pid,) = ffmpeg_children()
        cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        camera.stop()
    assert cmdline.split(b"\0")[0].endswith(b"ffmpeg")
    assert b"s3cret" not in cmdline and b"tech" not in cmdline and str(server.port).encode() not in cmdline


def test_jpeg_quality_maps_onto_ffmpeg_qscale() -> None:
    scales = [ffmpeg_qscale(quality) for quality in range(1, 101)]
    assert scales == sorted(scales, reverse=True), "more quality never means a coarser scale"
    assert (scales[0], scales[-1]) == (31, 2)
    assert mask_credentials("see rtsp://a:b@h/x and http://h/y") == "see rtsp://***@h/x and http://h/y"


def test_open_camera_builds_the_ffmpeg_backend_from_the_config() -> None:
    settings = SimpleNamespace(backend="ffmpeg", url="rtsp://cam/1", width=320, height=240, fps=5.0, quality=60)
    camera = open_camera(settings)
    assert isinstance(camera, FfmpegCamera)
    assert (camera.url, camera.width, camera.height, camera.fps, camera.quality) == ("rtsp://cam/1", 320, 240, 5.0, 60)


def test_a_missing_ffmpeg_is_a_camera_error() -> None:
    camera = FfmpegCamera("rtsp://cam/1", 320, 240, 5.0, 75, ffmpeg="/nonexistent/ffmpeg")
    with pytest.raises(CameraError, match="ffmpeg is not installed"):
        camera.start(lambda frame: None)


# -- a live ffmpeg ----------------------------------------------------------------------------------------------------


def test_frames_from_an_mjpeg_camera_are_jpegs_of_the_configured_size(ffmpeg: str, cameras: list[FfmpegCamera]) -> None:
    frames: queue.Queue[Frame] = queue.Queue()
    with MjpegServer(SimCamera(320, 240, fps=10.0)) as server:
        camera = FfmpegCamera(f"http://127.0.0.1:{server.port}/stream.mjpg", 160, 120, 10.0, 75, ffmpeg=ffmpeg)
        cameras.append(camera)
        before = time.time()
        camera.start(frames.put)
        got = [next_frame(frames) for _ in range(5)]
        camera.stop()
    assert [frame.seq for frame in got] == [1, 2, 3, 4, 5]
    assert before <= got[0].captured <= got[-1].captured <= time.time()
    for frame in got:
        assert is_jpeg(frame.jpeg)
        picture = Image.open(io.BytesIO(frame.jpeg))
        picture.load()  # decodes the whole image, not just the header
        assert (picture.format, picture.size) == ("JPEG", (160, 120))


def test_the_camera_going_away_is_logged_and_frames_resume_when_it_is_back(
    ffmpeg: str, cameras: list[FfmpegCamera], camera_log: LogQueue
) -> None:
    frames: queue.Queue[Frame] = queue.Queue()
    server = MjpegServer(SimCamera(320, 240, fps=10.0))
    port = server.start()
    camera = FfmpegCamera(f"http://tech:s3cret@127.0.0.1:{port}/stream.mjpg", 160, 120, 10.0, 50, ffmpeg=ffmpeg)
    camera.restart_min_s, camera.restart_max_s = 0.1, 0.4
    cameras.append(camera)
    try:
        camera.start(frames.put)
        next_frame(frames)
        server.stop()
        gone = camera_log.wait_for("starts again")
        assert "ffmpeg exited" in gone and "http://***@127.0.0.1" in gone and "s3cret" not in gone
        camera_log.wait_for("Connection refused")  # a restart while the camera is away, and ffmpeg's reason
        last = 0
        while not frames.empty():
            last = frames.get().seq
        server = MjpegServer(SimCamera(320, 240, fps=10.0), port=port)
        server.start()
        resumed = next_frame(frames)
        assert resumed.seq > last and is_jpeg(resumed.jpeg)
        assert "s3cret" not in camera_log.wait_for("first frame")
    finally:
        server.stop()


def test_a_camera_that_stalls_is_restarted(
    ffmpeg: str, cameras: list[FfmpegCamera], dead_camera: DeadCamera, camera_log: LogQueue
) -> None:
    camera = FfmpegCamera(f"http://127.0.0.1:{dead_camera.port}/stream.mjpg", 160, 120, 10.0, 75, ffmpeg=ffmpeg)
    camera.stall_s, camera.io_timeout_s, camera.restart_min_s = 0.5, 60.0, 0.1
    cameras.append(camera)
    camera.start(lambda frame: None)
    dead_camera.connections.get(timeout=WAIT_S)
    assert "no frame for 0.5 s" in camera_log.wait_for("starts again")
    dead_camera.connections.get(timeout=WAIT_S)  # ffmpeg connects again


def test_stop_is_prompt_while_ffmpeg_waits_on_a_camera_that_never_answers(
    ffmpeg: str, cameras: list[FfmpegCamera], dead_camera: DeadCamera
) -> None:
    camera = FfmpegCamera(f"http://127.0.0.1:{dead_camera.port}/stream.mjpg", 160, 120, 10.0, 75, ffmpeg=ffmpeg)
    cameras.append(camera)
    camera.start(lambda frame: None)
    connection = dead_camera.connections.get(timeout=WAIT_S)
    assert connection.recv(4096).startswith(b"GET /stream.mjpg"), "ffmpeg is connected and waiting for an answer"
    began = time.monotonic()
    camera.stop()
    assert time.monotonic() - began < 2.0
    connection.settimeout(WAIT_S)
    assert connection.recv(4096) == b"", "ffmpeg is gone: its end of the connection is closed"


def test_stop_is_prompt_in_the_pause_before_a_restart(
    ffmpeg: str, cameras: list[FfmpegCamera], camera_log: LogQueue
) -> None:
    camera = FfmpegCamera(f"http://127.0.0.1:{free_port()}/stream.mjpg", 160, 120, 10.0, 75, ffmpeg=ffmpeg)
    camera.restart_min_s = 60.0
    cameras.append(camera)
    camera.start(lambda frame: None)
    assert "starts again in 60 s" in camera_log.wait_for("starts again")
    began = time.monotonic()
    camera.stop()
    assert time.monotonic() - began < 2.0


def test_rtsp_credentials_never_reach_the_log(ffmpeg: str, cameras: list[FfmpegCamera], camera_log: LogQueue) -> None:
    camera = FfmpegCamera(f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/stream1", 160, 120, 10.0, 75, ffmpeg=ffmpeg)
    cameras.append(camera)
    camera.start(lambda frame: None)
    line = camera_log.wait_for("starts again")
    assert "Connection refused" in line, "ffmpeg's own message is logged"
    assert "rtsp://***@127.0.0.1" in line and "s3cret" not in line and "viewer" not in line


# -- the Pi camera ----------------------------------------------------------------------------------------------------


def test_the_pi_camera_without_picamera2_names_the_pi_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 fails, installed or not
    camera = open_camera(SimpleNamespace(backend="pi", width=640, height=480, fps=10.0, quality=75))
    assert isinstance(camera, PiCamera) and (camera.width, camera.height, camera.fps) == (640, 480, 10.0)
    with pytest.raises(CameraError, match=r"picamera2 is not installed: install the 'pi' extra"):
        camera.start(lambda frame: None)
    camera.stop()  # never started: nothing to do


def test_each_encoder_write_becomes_a_numbered_frame() -> None:
    got: list[Frame] = []

    def sink(frame: Frame) -> None:
        got.append(frame)
        if frame.seq == 1:
            raise ValueError("a broken sink must not stop the encoder")

    output = FrameOutput(sink)
    jpeg = jpeg_of(8, 8, 1)
    assert output.write(memoryview(jpeg)) == len(jpeg)
    assert output.write(jpeg) == len(jpeg)
    assert [(frame.seq, frame.jpeg) for frame in got] == [(1, jpeg), (2, jpeg)]
