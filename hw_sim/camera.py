"""The bench's camera: real JPEG frames of a drawn school gate, and an MJPEG server that plays an IP camera.

:class:`SimCamera` is a :class:`edge_daemon.camera.Camera`: a thread of its own
draws each frame with Pillow at ``fps`` (paced on the monotonic clock, so late
frames do not add up to drift), with the capture time (UTC, milliseconds) and the
frame number written on it.  While ``alarm_active`` is set, each frame captured
gets a thick red border and the word ALARM; :func:`has_alarm_mark` finds that mark
in a JPEG again, so a test can tell an alarm picture from one taken before the press.

:class:`MjpegServer` serves a camera's frames over HTTP the way many IP cameras do
(``/stream.mjpg`` as ``multipart/x-mixed-replace``, ``/snapshot.jpg`` as one JPEG),
so the daemon's ffmpeg backend can read the bench's camera as if it were a dome camera.

Example::

    from hw_sim.camera import MjpegServer, SimCamera, has_alarm_mark

    camera = SimCamera(320, 240, fps=10.0)
    camera.start(lambda frame: print(frame.seq, frame.captured, len(frame.jpeg)))
    camera.alarm_active = True           # frames captured from now on show the mark
    camera.stop()

    server = MjpegServer(SimCamera())    # starts and stops the camera with it
    port = server.start()                # ffmpeg -i http://127.0.0.1:{port}/stream.mjpg ...
    server.stop()
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat

from edge_daemon.camera import BACKENDS_ENV, Camera, CameraError, Frame, FrameSink

log = logging.getLogger("hw_sim.camera")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

ALARM_RED = (220, 0, 0)
BORDER_FRACTION = 1 / 16  # of the picture's shorter side: 15 px at 320x240
MARK_BAND_FRACTION = 1 / 48  # the outer band has_alarm_mark looks at: well inside the border
MARK_MIN_RED = 0.6  # share of red pixels every side's band must have


def add_sim_backend(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str] | os._Environ[str]:
    """Name this camera as the daemon's ``sim`` backend in ``environ`` (the daemon's environment).

    >>> add_sim_backend({})
    {'ALARMPOST_CAMERA_BACKENDS': 'sim=hw_sim.camera:SimCamera'}
    """
    added = environ.get(BACKENDS_ENV, "")
    if "sim=" not in added:
        environ[BACKENDS_ENV] = ",".join(filter(None, (added, "sim=hw_sim.camera:SimCamera")))
    return environ


class SimCamera:
    """A camera drawing a grey gate and road, the capture time, the frame number and, in an alarm, the mark.

    Example::

        camera = SimCamera(640, 480, fps=10.0, quality=75)
        jpeg = camera.render(time.time(), 1, alarm=True)   # one frame, no thread
        assert has_alarm_mark(jpeg)
    """

    join_timeout_s = 5.0

    def __init__(self, width: int = 640, height: int = 480, fps: float = 10.0, quality: int = 75) -> None:
        if width < 64 or height < 48:
            raise ValueError(f"{width}x{height} is too small for the bench's camera (64x48 at least)")
        if not fps > 0:
            raise ValueError(f"fps must be above 0, not {fps}")
        if not 1 <= quality <= 95:
            raise ValueError(f"JPEG quality must be 1-95, not {quality}")
        self.width = width
        self.height = height
        self.fps = fps
        self.quality = quality
        self.alarm_active = False
        self._scene = _draw_scene(width, height)
        self._border = max(4, round(min(width, height) * BORDER_FRACTION))
        self._text_font = _font(max(10, height // 20))
        self._alarm_font = _font(max(16, height // 5))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: FrameSink) -> None:
        """Capture from a new thread, calling ``sink`` with each frame; ``seq`` counts from 1 again."""
        if self._thread is not None:
            raise CameraError("the sim camera is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._capture, args=(sink,), name="sim-camera", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing; once this returns, ``sink`` is not called again."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        if thread is not threading.current_thread():  # the sink itself may stop the camera
            thread.join(self.join_timeout_s)

    def _capture(self, sink: FrameSink) -> None:
        period = 1.0 / self.fps
        due = time.monotonic()
        seq = 0
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            seq += 1
            captured = time.time()
            frame = Frame(self.render(captured, seq, self.alarm_active), captured, seq)
            try:
                sink(frame)
            except Exception:
                log.exception("the camera's sink failed on frame %d", seq)
            due += period  # from the schedule, not from now: a late frame does not delay the ones after it
            behind = time.monotonic() - due
            if behind > period:  # a whole frame late (a slow sink): skip the missed slots instead of rushing
                due += (behind // period) * period

    def render(self, captured: float, seq: int, alarm: bool) -> bytes:
        """One frame as JPEG bytes: the scene, the time ``captured`` and ``seq``, and the mark if ``alarm``."""
        picture = self._scene.copy()
        draw = ImageDraw.Draw(picture)
        if alarm:
            self._draw_alarm(draw)
        when = datetime.fromtimestamp(captured, UTC)
        stamp = when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
        inset = self._border + 4
        _label(draw, (inset, inset), f"frame {seq}", self._text_font)
        _label(draw, (inset, self.height - inset), stamp, self._text_font, anchor="ld")
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=self.quality)
        return out.getvalue()

    def _draw_alarm(self, draw: ImageDraw.ImageDraw) -> None:
        draw.rectangle((0, 0, self.width - 1, self.height - 1), outline=ALARM_RED, width=self._border)
        middle = (self.width // 2, self.height // 2)
        box = draw.textbbox(middle, "ALARM", font=self._alarm_font, anchor="mm")
        pad = self._border // 2
        draw.rectangle((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), fill=ALARM_RED)
        draw.text(middle, "ALARM", font=self._alarm_font, fill="white", anchor="mm")


def has_alarm_mark(jpeg: bytes) -> bool:
    """True if the picture has the alarm's red border: every side's outer band mostly red.

    Works on any size and after re-encoding (the bands are a share of the picture, not pixels).
    """
    picture = Image.open(io.BytesIO(jpeg)).convert("RGB")
    width, height = picture.size
    band = max(1, round(min(width, height) * MARK_BAND_FRACTION))
    sides = [
        (0, 0, width, band),
        (0, height - band, width, height),
        (0, 0, band, height),
        (width - band, 0, width, height),
    ]
    return all(_red_share(picture.crop(side)) >= MARK_MIN_RED for side in sides)


def _red_share(area: Image.Image) -> float:
    red, green, blue = area.split()
    strong = red.point(lambda v: 255 if v >= 150 else 0)
    weak_green = green.point(lambda v: 255 if v <= 90 else 0)
    weak_blue = blue.point(lambda v: 255 if v <= 90 else 0)
    mask = ImageChops.multiply(ImageChops.multiply(strong, weak_green), weak_blue)
    return float(ImageStat.Stat(mask).mean[0]) / 255


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _label(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, font: Font, anchor: str = "la") -> None:
    """White text on a black box: readable on any part of the scene."""
    box = draw.textbbox(at, text, font=font, anchor=anchor)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text(at, text, font=font, fill="white", anchor=anchor)


def _draw_scene(width: int, height: int) -> Image.Image:
    """The still part of every frame: sky, a school wall, the road and a gate, in greys (nothing red)."""
    scene = Image.new("RGB", (width, height), (176, 184, 192))
    draw = ImageDraw.Draw(scene)
    horizon, kerb = int(height * 0.45), int(height * 0.62)
    draw.rectangle((0, int(height * 0.25), width, horizon), fill=(150, 146, 140))  # the school's wall
    draw.rectangle((0, horizon, width, kerb), fill=(120, 120, 118))  # the pavement
    draw.rectangle((0, kerb, width, height), fill=(84, 86, 90))  # the road
    dash = max(4, width // 16)
    for x in range(0, width, dash * 2):
        draw.rectangle((x, int(height * 0.8), x + dash, int(height * 0.8) + max(2, height // 80)), fill=(235, 235, 235))
    left, right = int(width * 0.3), int(width * 0.7)
    post_width, top = max(4, width // 40), int(height * 0.18)
    for post in (left, right - post_width):
        draw.rectangle((post, top, post + post_width, kerb), fill=(60, 62, 66))
    for x in range(left + post_width, right - post_width, max(3, width // 64)):
        draw.line((x, int(height * 0.28), x, kerb), fill=(70, 72, 76), width=max(1, width // 320))
    draw.line((left, int(height * 0.28), right, int(height * 0.28)), fill=(70, 72, 76), width=max(2, width // 160))
    return scene


class MjpegServer:
    """A camera's frames over HTTP: ``/stream.mjpg`` (multipart/x-mixed-replace) and ``/snapshot.jpg``.

    The server owns the camera: :meth:`start` starts it, :meth:`stop` stops it.
    Each client gets its own thread and the newest frame each time (a slow
    client skips frames rather than holding the camera back); a client that
    hangs up only ends its own thread.

    Example::

        server = MjpegServer(SimCamera(320, 240, fps=25.0))
        port = server.start()
        jpeg = urllib.request.urlopen(f"http://127.0.0.1:{port}/snapshot.jpg").read()
        server.stop()
    """

    boundary = "alarmpost-frame"
    snapshot_timeout_s = 5.0  # how long /snapshot.jpg waits for the camera's first frame
    client_timeout_s = 10.0  # a client that stops reading for this long is dropped

    def __init__(self, camera: Camera, host: str = "127.0.0.1", port: int = 0) -> None:
        self.camera = camera
        self.host = host
        self.port = port
        self._latest: Frame | None = None
        self._published = 0  # frames seen since start: a restarted camera's seq begins at 1 again
        self._stopping = False
        self._changed = threading.Condition()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen, start the camera and return the port."""
        if self._httpd is not None:
            raise RuntimeError("the MJPEG server is already running")
        self._stopping = False
        self._httpd = _HttpServer((self.host, self.port), _MjpegHandler)
        self._httpd.mjpeg = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="mjpeg-server", daemon=True
        )
        self._thread.start()
        self.camera.start(self.publish)
        return self.port

    def stop(self) -> None:
        """End every client's stream, close the port and stop the camera."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self.camera.stop()

    def publish(self, frame: Frame) -> None:
        """The camera's sink: ``frame`` becomes the one clients get next."""
        with self._changed:
            self._latest = frame
            self._published += 1
            self._changed.notify_all()

    def next_frame(self, after: int, timeout: float) -> tuple[int, Frame] | None:
        """The newest frame once there is one newer than number ``after`` (0: any), with its number; None on stop."""
        with self._changed:
            self._changed.wait_for(lambda: self._stopping or self._published > after, timeout)
            if self._stopping or self._latest is None or self._published <= after:
                return None
            return self._published, self._latest

    def __enter__(self) -> MjpegServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    mjpeg: MjpegServer


class _MjpegHandler(BaseHTTPRequestHandler):
    server_version = "alarmpost-sim-camera"

    @property
    def mjpeg(self) -> MjpegServer:
        return cast(_HttpServer, self.server).mjpeg

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.mjpeg.client_timeout_s)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/stream.mjpg":
                self._stream()
            elif path == "/snapshot.jpg":
                self._snapshot()
            else:
                self.send_error(404, "the sim camera serves /stream.mjpg and /snapshot.jpg")
        except OSError as exc:  # the client hung up or stopped reading: only its own thread ends
            log.debug("MJPEG client %s gone: %r", self.client_address, exc)
            self.close_connection = True

    def _snapshot(self) -> None:
        got = self.mjpeg.next_frame(0, self.mjpeg.snapshot_timeout_s)
        if got is None:
            self.send_error(503, "the camera has no frame yet")
            return
        jpeg = got[1].jpeg
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(jpeg)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(jpeg)

    def _stream(self) -> None:
        server = self.mjpeg
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={server.boundary}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        number = 0
        while True:
            got = server.next_frame(number, server.client_timeout_s)
            if got is None:
                return  # the server is stopping, or the camera stopped delivering
            number, frame = got
            head = f"--{server.boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n\r\n"
            self.wfile.write(head.encode() + frame.jpeg + b"\r\n")
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("MJPEG %s: " + format, self.client_address, *args)
