"""The camera module on the Pi's CSI port, through picamera2: JPEG frames straight from the encoder.

picamera2 records a video configuration of the post's size and frame rate into
an encoder; each encoded frame is written to a file-like object (picamera2's
streaming pattern: ``FileOutput`` around an ``io.BufferedIOBase``), which here
turns it into a :class:`~edge_daemon.camera.Frame` for the sink.  The encoder
is the hardware MJPEG one (Pi 4 and earlier); where there is none (Pi 5) it is
picamera2's software JPEG encoder.

picamera2 comes with the ``pi`` extra and only runs on a Pi with the camera
enabled, so it is imported in :meth:`PiCamera.start`; everything past that
import is hardware-only and not covered by the tests here.

Example::

    camera = PiCamera(640, 480, 10.0, 75)
    camera.start(lambda frame: print(frame.seq, len(frame.jpeg)))
    ...
    camera.stop()
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

from edge_daemon.camera import CameraError, Frame, FrameSink

log = logging.getLogger("edge_daemon.camera")

MISSING = (
    "picamera2 is not installed: install the 'pi' extra (pip install 'alarmpost[pi]') on a Raspberry Pi"
    " with the camera enabled"
)


class FrameOutput(io.BufferedIOBase):
    """Where picamera2 writes encoded frames: each write is one whole JPEG, passed on as a numbered frame."""

    def __init__(self, sink: FrameSink) -> None:
        super().__init__()
        self.sink = sink
        self.seq = 0

    def writable(self) -> bool:
        return True

    def write(self, buf: Any) -> int:
        jpeg = bytes(buf)
        self.seq += 1
        try:
            self.sink(Frame(jpeg, time.time(), self.seq))
        except Exception:  # picamera2's encoder thread must not die of it
            log.exception("camera: the frame sink failed on frame %d", self.seq)
        return len(jpeg)


class PiCamera:
    """The CSI camera module at ``width`` x ``height``, ``fps`` frames a second, JPEG ``quality`` 1-100."""

    def __init__(self, width: int, height: int, fps: float, quality: int) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.quality = quality
        self.alarm_active = False  # the camera sees the strobe
        self._picam2: Any = None

    def start(self, sink: FrameSink) -> None:
        """Open the camera and record into ``sink`` from picamera2's encoder thread; ``seq`` counts from 1."""
        if self._picam2 is not None:
            raise CameraError("the Pi camera is already running")
        try:
            from picamera2 import Picamera2
            from picamera2.encoders import JpegEncoder, MJPEGEncoder, Quality
            from picamera2.outputs import FileOutput
        except ImportError as exc:
            raise CameraError(MISSING) from exc
        # -- hardware only from here on ---------------------------------------------------------------------------
        try:
            picam2 = Picamera2()
        except (RuntimeError, IndexError) as exc:
            raise CameraError(f"no camera module found (is it connected and enabled?): {exc}") from exc
        try:
            picam2.configure(
                picam2.create_video_configuration(
                    main={"size": (self.width, self.height)}, controls={"FrameRate": self.fps}
                )
            )
            try:
                encoder, level = MJPEGEncoder(), _hardware_quality(Quality, self.quality)
            except RuntimeError:  # no hardware MJPEG encoder (Pi 5): the software one takes the quality as it is
                encoder, level = JpegEncoder(q=self.quality), None
            picam2.start_recording(encoder, FileOutput(FrameOutput(sink)), quality=level)
        except Exception as exc:
            picam2.close()
            raise CameraError(f"the camera module cannot record {self.width}x{self.height}: {exc}") from exc
        self._picam2 = picam2

    def stop(self) -> None:
        """Stop recording and close the camera; once this returns no frame comes."""
        picam2, self._picam2 = self._picam2, None
        if picam2 is not None:
            try:
                picam2.stop_recording()
            finally:
                picam2.close()


def _hardware_quality(levels: Any, quality: int) -> Any:
    """JPEG quality 1-100 as one of picamera2's five ``Quality`` levels (the hardware encoder takes a bitrate)."""
    for limit, level in ((20, "VERY_LOW"), (45, "LOW"), (70, "MEDIUM"), (85, "HIGH")):
        if quality <= limit:
            return getattr(levels, level)
    return levels.VERY_HIGH
