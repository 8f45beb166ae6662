"""The post's camera: one small interface over the Pi camera module, an IP dome camera and the sim's camera.

A camera delivers JPEG frames, each with the time it was captured, to one
callback, from a thread of its own: capturing and encoding never run in the
daemon's event loop, so they can never hold up an alarm.  What happens to the
frames (the pre-alarm buffer, snapshots, the live stream) is
:mod:`edge_daemon.video`'s business.

Backends, chosen by ``camera.backend`` in the config:

* ``pi``: the camera module on the Pi's CSI port, through picamera2 and its
  hardware MJPEG encoder (:mod:`edge_daemon.camera_pi`; the ``pi`` extra);
* ``ffmpeg``: an IP dome camera's RTSP (or HTTP MJPEG) stream, decoded and
  re-encoded to JPEG frames by ffmpeg (:mod:`edge_daemon.camera_ffmpeg`);
* more, added as gpiozero adds pin factories: ``ALARMPOST_CAMERA_BACKENDS`` in the
  daemon's environment names them, ``name=module:Class`` separated by commas; the class
  is built as ``Class(width, height, fps, quality)``.  The simulated bench adds its
  camera so (``sim=hw_sim.camera:SimCamera``); the product itself knows nothing of it.

Example::

    camera = open_camera(config.camera)
    camera.start(lambda frame: print(frame.seq, len(frame.jpeg)))
    ...
    camera.stop()
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

JPEG_START = b"\xff\xd8"
JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class Frame:
    """One JPEG frame: its bytes, when it was captured (unix seconds) and its number from the camera's start."""

    jpeg: bytes
    captured: float
    seq: int


FrameSink = Callable[[Frame], None]


class CameraError(RuntimeError):
    """The camera cannot be opened or has failed; the message says which and why."""


class Camera(Protocol):
    """What every backend offers.

    ``start`` begins capturing and calls ``sink`` with each frame from the backend's
    own thread; ``stop`` ends it and returns once no more frames will come.
    ``alarm_active`` is set by the daemon while the alarm is latched: the sim
    camera shows it as a mark in the picture (a real camera sees the strobe).
    """

    fps: float
    alarm_active: bool

    def start(self, sink: FrameSink) -> None: ...

    def stop(self) -> None: ...


def is_jpeg(data: bytes) -> bool:
    """True for bytes that start and end like a JPEG image (SOI ... EOI)."""
    return data.startswith(JPEG_START) and data.rstrip(b"\x00").endswith(JPEG_END)


BUILT_IN = ("pi", "ffmpeg")
BACKENDS_ENV = "ALARMPOST_CAMERA_BACKENDS"


def added_backends() -> dict[str, str]:
    """The backends ``ALARMPOST_CAMERA_BACKENDS`` adds: name -> ``module:Class``.

    >>> import os; os.environ[BACKENDS_ENV] = "sim=hw_sim.camera:SimCamera"
    >>> added_backends(), backend_names()
    ({'sim': 'hw_sim.camera:SimCamera'}, ('pi', 'ffmpeg', 'sim'))
    >>> del os.environ[BACKENDS_ENV]
    """
    added = {}
    for item in os.environ.get(BACKENDS_ENV, "").split(","):
        name, _, target = item.strip().partition("=")
        if name and ":" in target and name not in BUILT_IN:
            added[name] = target
    return added


def backend_names() -> tuple[str, ...]:
    """Every name ``camera.backend`` may take here."""
    return BUILT_IN + tuple(added_backends())


def open_camera(settings: Any) -> Camera:
    """The backend ``settings.backend`` names, built from the ``[camera]`` config; not started."""
    if settings.backend == "pi":
        from edge_daemon.camera_pi import PiCamera

        return PiCamera(settings.width, settings.height, settings.fps, settings.quality)
    if settings.backend == "ffmpeg":
        from edge_daemon.camera_ffmpeg import FfmpegCamera

        return FfmpegCamera(settings.url, settings.width, settings.height, settings.fps, settings.quality)
    target = added_backends().get(settings.backend)
    if target is None:
        raise CameraError(f"camera.backend: {settings.backend!r} is not one of {', '.join(backend_names())}")
    module, _, name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise CameraError(f"camera.backend {settings.backend}: {target} cannot be loaded ({exc})") from None
    camera: Camera = factory(settings.width, settings.height, settings.fps, settings.quality)
    return camera
