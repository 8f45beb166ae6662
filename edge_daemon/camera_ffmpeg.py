"""An IP dome camera through ffmpeg: its RTSP or HTTP MJPEG stream as JPEG frames of the post's size and rate.

ffmpeg connects, decodes, drops frames down to ``fps``, scales and re-encodes
each frame as a JPEG, one after another on its stdout; a thread of this module
cuts that byte stream into frames (:class:`JpegSplitter`) and hands each one to
the sink.  When ffmpeg exits, or no frame comes for ``stall_s``, the reason and
the tail of ffmpeg's stderr are logged and ffmpeg is started again after a pause
that doubles from ``restart_min_s`` up to ``restart_max_s`` (and is back to
``restart_min_s`` once frames have flowed).  RTSP goes over TCP: RTP over UDP
loses packets, and so smears pictures, on the kind of links posts have.

The URL's ``user:password@`` is masked (``***@``) in everything logged,
ffmpeg's own messages included, and the URL is never on ffmpeg's command line
(which every user of the Pi can read with ``ps``): ffmpeg reads it from its stdin,
as a one-entry ffconcat script (:meth:`FfmpegCamera.script`) that also carries the
network options for it.  Needs ffmpeg 5 or later (Debian and Raspberry
Pi OS bookworm ship 5.1): ffmpeg 4 read ``-timeout`` on RTSP as "listen for
the camera to call in".

Example::

    camera = FfmpegCamera("rtsp://viewer:secret@192.168.1.20:554/stream1", 640, 480, 10.0, 75)
    print(shlex.join(camera.command()))   # the command: no URL on it
    print(camera.script(masked=True))     # what it reads on its stdin
    camera.start(lambda frame: print(frame.seq, len(frame.jpeg)))
    ...
    camera.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import selectors
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field

from edge_daemon.camera import JPEG_END, JPEG_START, CameraError, Frame, FrameSink

log = logging.getLogger("edge_daemon.camera")

# What ffmpeg may open through the script on its stdin: the script itself, and the camera's stream.
PROTOCOLS = "pipe,rtsp,rtsps,rtp,udp,tcp,tls,http,https,httpproxy,crypto"
CREDENTIALS = re.compile(r"(?<=://)[^@\s]+@")  # greedy: a password with a stray '/' or '@' is still covered


def mask_credentials(text: str) -> str:
    """``text`` with every URL's ``user:password@`` replaced by ``***@``.

    >>> mask_credentials("rtsp://viewer:secret@192.168.1.20/stream1: Connection refused")
    'rtsp://***@192.168.1.20/stream1: Connection refused'
    """
    return CREDENTIALS.sub("***@", text)


def ffmpeg_qscale(quality: int) -> int:
    """JPEG quality 1-100 (as libjpeg and Pillow mean it) as ffmpeg's ``-q:v`` 2 (best) to 31.

    libjpeg scales its base tables by 50/quality below 50 and by (200 - 2·quality)/100
    above; ffmpeg's MJPEG encoder scales its base tables by q/8.  The same scale gives
    files of about the same size: quality 75 is ``-q:v 4``, 50 is 8, 90 and up is 2.

    >>> [ffmpeg_qscale(q) for q in (1, 50, 75, 90, 100)]
    [31, 8, 4, 2, 2]
    """
    quality = min(100, max(1, quality))
    scale = 50 / quality if quality < 50 else (200 - 2 * quality) / 100
    return min(31, max(2, round(8 * scale)))


class JpegSplitter:
    """Cuts a stream of JPEGs written one after another into whole frames, wherever the reads split it.

    A frame runs from an SOI marker (FF D8) to the first EOI (FF D9) after it.  In
    the entropy-coded data every FF byte is followed by 00 or a restart marker, so
    neither marker can appear there (nor anywhere else in what ffmpeg writes: it
    embeds no thumbnails).  Bytes before an SOI are garbage and dropped; an SOI
    before the frame's EOI means that frame was cut short, and it is dropped; a
    frame longer than ``max_frame_bytes`` is dropped, and its rest is garbage up
    to the next SOI.

    Example::

        splitter = JpegSplitter(4 * 1024 * 1024)
        splitter.feed(b"junk\\xff\\xd8abc\\xff")   # []
        splitter.feed(b"\\xd9\\xff\\xd8")           # [b"\\xff\\xd8abc\\xff\\xd9"]
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.dropped_frames = 0  # oversize or cut short
        self.garbage_bytes = 0
        self._buffer = bytearray()
        self._in_frame = False
        self._scan_from = 0  # where the search for the end marker goes on: nothing before it needs a second look

    def feed(self, data: bytes) -> list[bytes]:
        """The frames ``data`` completes, oldest first."""
        self._buffer += data
        frames: list[bytes] = []
        while self._in_frame or self._find_start():
            end = self._buffer.find(JPEG_END, self._scan_from)
            restart = self._buffer.find(JPEG_START, self._scan_from, end if end >= 0 else len(self._buffer))
            if restart >= 0:
                self.dropped_frames += 1
                self.garbage_bytes += restart
                del self._buffer[:restart]
                self._scan_from = len(JPEG_START)
                continue
            if end < 0:
                self._scan_from = max(len(JPEG_START), len(self._buffer) - 1)  # an FF at the end may begin a marker
                if len(self._buffer) > self.max_frame_bytes:
                    self._drop(len(self._buffer))
                break
            size = end + len(JPEG_END)
            if size <= self.max_frame_bytes:
                frames.append(bytes(self._buffer[:size]))
                del self._buffer[:size]
                self._in_frame = False
            else:
                self._drop(size)
        return frames

    def _find_start(self) -> bool:
        start = self._buffer.find(JPEG_START)
        if start < 0:
            start = len(self._buffer) - (1 if self._buffer.endswith(JPEG_START[:1]) else 0)
        self.garbage_bytes += start
        del self._buffer[:start]
        self._in_frame = self._buffer.startswith(JPEG_START)
        self._scan_from = len(JPEG_START)
        return self._in_frame

    def _drop(self, size: int) -> None:
        self.dropped_frames += 1
        del self._buffer[:size]
        self._in_frame = False


@dataclass
class _Session:
    """One start() to stop() of a camera: what its thread needs, so a stopping thread and a new one never share it."""

    sink: FrameSink
    wake_read: int  # stop() writes to the other end of this pipe, waking the thread from its wait
    wake_write: int
    stopping: threading.Event = field(default_factory=threading.Event)
    seq: int = 0


@dataclass
class _Run:
    """One ffmpeg process and what came of it."""

    session: _Session
    proc: subprocess.Popen[bytes]
    splitter: JpegSplitter
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    stderr: bytearray = field(default_factory=bytearray)


class FfmpegCamera:
    """A camera at ``url`` (rtsp://, rtsps:// or http:// MJPEG) read through ffmpeg; see the module's docstring.

    Example::

        camera = FfmpegCamera("http://192.168.1.20/stream.mjpg", 640, 480, 10.0, 75)
        camera.stall_s = 5.0   # tunables are class attributes, and may be set per camera before start()
    """

    stall_s = 10.0  # no frame for this long (connecting included): ffmpeg is restarted
    io_timeout_s = 5.0  # ffmpeg's own limit on a network read or connect
    restart_min_s = 1.0
    restart_max_s = 30.0
    max_frame_bytes = 4 * 1024 * 1024
    terminate_grace_s = 1.0  # between SIGTERM and SIGKILL
    stderr_tail_bytes = 2000
    read_bytes = 64 * 1024

    def __init__(self, url: str, width: int, height: int, fps: float, quality: int, *, ffmpeg: str = "ffmpeg") -> None:
        self.url = url
        self.width = width
        self.height = height
        self.fps = fps
        self.quality = quality
        self.ffmpeg = ffmpeg
        self.alarm_active = False  # a real camera sees the strobe
        self._session: _Session | None = None
        self._thread: threading.Thread | None = None

    @property
    def shown_url(self) -> str:
        """The URL as it may be logged."""
        return mask_credentials(self.url)

    def script(self, masked: bool = False) -> str:
        """The ffconcat script ffmpeg reads on its stdin: the camera's URL and its network options.

        ``masked``: with the URL's credentials masked, to be shown.

        >>> print(FfmpegCamera("rtsp://viewer:secret@192.0.2.20/1", 640, 480, 10.0, 75).script(masked=True))
        ffconcat version 1.0
        file 'rtsp://***@192.0.2.20/1'
        option rtsp_transport tcp
        option timeout 5000000
        <BLANKLINE>
        """
        timeout_us = str(round(self.io_timeout_s * 1_000_000))
        if self.url.startswith(("rtsp://", "rtsps://")):
            options = [("rtsp_transport", "tcp"), ("timeout", timeout_us)]
        else:
            options = [("rw_timeout", timeout_us)]
        url = (self.shown_url if masked else self.url).replace("'", "'\\''")  # ffconcat quotes as sh does
        lines = ["ffconcat version 1.0", f"file '{url}'", *(f"option {key} {value}" for key, value in options)]
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        """The ffmpeg command line this camera runs: it holds no URL, so no password (see :meth:`script`)."""
        return [
            self.ffmpeg,
            "-nostdin",  # no keyboard commands: stdin carries only the script
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",  # the script names a network URL, not a local file
            "-protocol_whitelist",
            PROTOCOLS,
            "-i",
            "pipe:0",
            "-an",
            "-vf",
            f"fps={self.fps:g},scale={self.width}:{self.height}",
            "-c:v",
            "mjpeg",
            "-q:v",
            str(ffmpeg_qscale(self.quality)),
            "-f",
            "image2pipe",
            "-",
        ]

    def start(self, sink: FrameSink) -> None:
        """Run ffmpeg and call ``sink`` with each frame from a thread of this camera's; ``seq`` counts from 1."""
        if self._thread is not None:
            raise CameraError("the ffmpeg camera is already running")
        if shutil.which(self.ffmpeg) is None:
            raise CameraError(
                f'ffmpeg is not installed (no {self.ffmpeg!r} found): camera.backend = "ffmpeg" needs it'
                " (apt install ffmpeg)"
            )
        self._session = _Session(sink, *os.pipe())
        self._thread = threading.Thread(target=self._keep_running, args=(self._session,), name="camera-ffmpeg")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop ffmpeg (SIGTERM, then SIGKILL after ``terminate_grace_s``); once this returns no frame comes."""
        thread, session = self._thread, self._session
        self._thread = self._session = None
        if thread is None or session is None:
            return
        session.stopping.set()
        with contextlib.suppress(BrokenPipeError):  # the thread is gone already (it died of a bug)
            os.write(session.wake_write, b"x")  # never read: it stays readable until the thread ends
        os.close(session.wake_write)
        if thread is not threading.current_thread():  # the sink itself may stop the camera
            thread.join()

    # -- the camera's thread --------------------------------------------------------------------------------------

    def _keep_running(self, session: _Session) -> None:
        pause = self.restart_min_s
        try:
            while not session.stopping.is_set():
                why, frames = self._run_once(session)
                if session.stopping.is_set():
                    break
                if frames:
                    pause = self.restart_min_s
                log.warning("camera %s: %s; ffmpeg starts again in %g s", self.shown_url, why, pause)
                if session.stopping.wait(pause):
                    break
                pause = min(pause * 2, self.restart_max_s)
        finally:
            os.close(session.wake_read)

    def _run_once(self, session: _Session) -> tuple[str, int]:
        """Run ffmpeg until it ends, stalls or the camera stops; why it ended (with its stderr), and its frames."""
        try:
            proc = subprocess.Popen(
                self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            return f"ffmpeg cannot run: {exc}", 0
        assert proc.stdin is not None
        # A few hundred bytes: the pipe takes them whole, ffmpeg reads them when it starts.  If
        # it died at once the pipe is broken, and its exit code and stderr say why.
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(self.script().encode())
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        run = _Run(session, proc, JpegSplitter(self.max_frame_bytes))
        try:
            why = self._pump(run)
        finally:
            self._end(run)
        if why is None:
            why = f"ffmpeg exited with code {proc.returncode}"
        tail = mask_credentials(run.stderr.decode(errors="replace").strip())
        return (f"{why}: {tail}" if tail else why), run.frames

    def _pump(self, run: _Run) -> str | None:
        """Read ffmpeg's output until it ends (None), or the reason it was cut off."""
        assert run.proc.stdout is not None and run.proc.stderr is not None
        out, err, wake = run.proc.stdout.fileno(), run.proc.stderr.fileno(), run.session.wake_read
        with selectors.DefaultSelector() as watched:
            for fd in (out, err, wake):
                watched.register(fd, selectors.EVENT_READ)
            deadline = time.monotonic() + self.stall_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return f"no frame for {self.stall_s:g} s"
                ready = {key.fd for key, _ in watched.select(left)}
                if wake in ready:
                    return "stopped"
                if err in ready:
                    chunk = os.read(err, 4096)
                    if not chunk:
                        watched.unregister(err)
                    self._keep_stderr(run, chunk)
                if out in ready:
                    chunk = os.read(out, self.read_bytes)
                    if not chunk:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            run.proc.wait(self.terminate_grace_s)  # its own exit code, not our SIGTERM's
                        return None
                    if self._deliver(run, run.splitter.feed(chunk)):
                        deadline = time.monotonic() + self.stall_s

    def _deliver(self, run: _Run, jpegs: list[bytes]) -> bool:
        """Hand ``jpegs`` to the sink; True if there were any."""
        session, dropped_before = run.session, run.splitter.dropped_frames
        for jpeg in jpegs:
            if session.stopping.is_set():
                return False
            session.seq += 1
            run.frames += 1
            if run.frames == 1:
                log.info("camera %s: first frame after %.1f s", self.shown_url, time.monotonic() - run.started)
            try:
                session.sink(Frame(jpeg, time.time(), session.seq))
            except Exception:
                log.exception("camera %s: the frame sink failed on frame %d", self.shown_url, session.seq)
        if run.splitter.dropped_frames and not dropped_before:
            log.warning(
                "camera %s: dropped a frame over %d bytes or cut short (later ones are dropped quietly)",
                self.shown_url,
                self.max_frame_bytes,
            )
        return bool(jpegs)

    def _keep_stderr(self, run: _Run, chunk: bytes) -> None:
        run.stderr += chunk
        del run.stderr[: -self.stderr_tail_bytes]

    def _end(self, run: _Run) -> None:
        """ffmpeg gone (SIGTERM, SIGKILL if it lingers), its pipes closed, the rest of its stderr kept."""
        proc = run.proc
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # ffmpeg blocked writing a frame gets EPIPE instead of waiting for a reader
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.terminate_grace_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "camera %s: ffmpeg ignored SIGTERM for %g s and was killed", self.shown_url, self.terminate_grace_s
                )
                proc.kill()
                proc.wait()
        self._keep_stderr(run, proc.stderr.read())  # ffmpeg has exited: this cannot block
        proc.stderr.close()
