"""The centre's picture viewer: pieces of JPEG frames in, whole checked pictures out, saved to disk.

A post sends each frame in pieces (``snapshots`` at QoS 1, ``stream`` at QoS 0,
see :mod:`edge_daemon.video`).  The viewer keeps the pieces of each frame until
all have come, then checks the frame's size and SHA-256: a frame with a piece
missing (QoS 0 may drop one; a newer frame completing first means it will not
come) or a piece damaged is dropped and counted, never shown broken.

What it holds is bounded, so no post can fill the centre's memory: a frame may say
it is at most ``max_picture_bytes``, a post may have at most ``max_frames_per_post``
frames unfinished, and all unfinished frames together at most ``max_held_bytes``;
past a limit the oldest unfinished frame is given up (counted as incomplete).

Saved, when ``folder`` is given, as::

    FOLDER/<site>/<post>/<captured>_<kind>_<seq>.jpg     alarm, pre-alarm and asked pictures
    FOLDER/<site>/<post>/stream.mjpeg                   the live stream, appended frame by frame

Example::

    viewer = Viewer(Path("pictures"))
    picture = viewer.add("school-12", "gate-north", "snapshots", piece, headers)
    if picture is not None:
        print(picture.kind, picture.path)
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from edge_daemon.contract import check_chunk_headers

log = logging.getLogger("edge_daemon.viewer")


@dataclass
class Picture:
    """A whole, checked frame from a post."""

    site: str
    post: str
    channel: str
    kind: str
    seq: int
    captured: str
    alarm: str
    jpeg: bytes
    path: Path | None = None
    size: int = 0  # the JPEG's bytes, also when the centre no longer keeps them (live frames)

    def __post_init__(self) -> None:
        self.size = self.size or len(self.jpeg)


@dataclass
class _Partial:
    chunks: int
    size: int
    sha256: str
    headers: dict[str, str]
    parts: dict[int, bytes] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    held: int = 0  # bytes of the pieces kept so far


@dataclass
class ViewerCounters:
    pictures: int = 0
    corrupt: int = 0  # all pieces came but the size or SHA-256 did not match
    incomplete: int = 0  # a piece never came
    refused: int = 0  # a piece whose headers broke the contract, or a frame larger than allowed


class Viewer:
    stale_s = 10.0  # an unfinished frame is given up after this long
    max_picture_bytes = 8 * 1024 * 1024  # a frame saying it is larger is refused (a 1080p JPEG is ~0.5 MB)
    max_frames_per_post = 8  # unfinished frames one post may have
    max_held_bytes = 64 * 1024 * 1024  # pieces of unfinished frames, all posts together

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.counters = ViewerCounters()
        self._partial: dict[tuple[str, str, str], _Partial] = {}
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        """Bytes of pieces kept for unfinished frames."""
        return self._held

    def add(self, site: str, post: str, channel: str, piece: bytes, headers: dict[str, str]) -> Picture | None:
        """Take one piece; the whole picture when this was its last piece and it checks out, else None."""
        problem = check_chunk_headers(headers)
        if problem is not None:
            self.counters.refused += 1
            log.warning("picture piece refused", extra={"post": f"{site}/{post}", "problem": problem})
            return None
        with self._lock:
            return self._add(site, post, channel, piece, headers)

    def _add(self, site: str, post: str, channel: str, piece: bytes, headers: dict[str, str]) -> Picture | None:
        key = (site, post, headers["frame"])
        partial = self._partial.get(key)
        if partial is None:
            if int(headers["size"]) > self.max_picture_bytes:
                self.counters.refused += 1
                log.warning("picture refused: too large", extra={"post": f"{site}/{post}", "size": headers["size"]})
                return None
            partial = _Partial(int(headers["chunks"]), int(headers["size"]), headers["sha256"], headers)
            self._partial[key] = partial
        index = int(headers["chunk"])
        grows = len(piece) - len(partial.parts.get(index, b""))  # a piece sent again replaces its copy
        if index >= partial.chunks or headers["sha256"] != partial.sha256 or partial.held + grows > partial.size:
            self.counters.corrupt += 1  # pieces beyond the size the frame declared cannot make it
            self._forget(key)
            return None
        self._held += grows
        partial.held += grows
        partial.parts[index] = piece
        if len(partial.parts) < partial.chunks:
            self._keep_within_bounds(site, post)
            return None
        self._forget(key)
        self._give_up_older(site, post, partial)
        jpeg = b"".join(partial.parts[i] for i in range(partial.chunks))
        if len(jpeg) != partial.size or hashlib.sha256(jpeg).hexdigest() != partial.sha256:
            self.counters.corrupt += 1
            log.warning("picture dropped: damaged", extra={"post": f"{site}/{post}", "frame": headers["frame"]})
            return None
        self.counters.pictures += 1
        picture = Picture(
            site, post, channel, headers["kind"], int(headers["seq"]), headers["captured"], headers["alarm"], jpeg
        )
        if self.folder is not None:
            picture.path = self._save(picture)
        return picture

    def _give_up_older(self, site: str, post: str, done: _Partial) -> None:
        """Frames of this post still waiting for pieces: a live one older than a finished one never completes."""
        now = time.monotonic()
        for key, partial in list(self._partial.items()):
            if key[:2] != (site, post):
                continue
            older_live = partial.headers["kind"] == "live" and partial.started < done.started
            if older_live or now - partial.started > self.stale_s:
                self._forget(key)
                self.counters.incomplete += 1

    def _forget(self, key: tuple[str, str, str]) -> None:
        partial = self._partial.pop(key, None)
        if partial is not None:
            self._held -= partial.held

    def _keep_within_bounds(self, site: str, post: str) -> None:
        """Give up the oldest unfinished frames while a post holds too many, or all together too many bytes."""
        mine = sorted((p.started, k) for k, p in self._partial.items() if k[:2] == (site, post))
        for _, key in mine[: max(0, len(mine) - self.max_frames_per_post)]:
            self._forget(key)
            self.counters.incomplete += 1
        if self._held > self.max_held_bytes:
            oldest_first = sorted((p.started, k) for k, p in self._partial.items())
            for _, key in oldest_first:
                if self._held <= self.max_held_bytes:
                    break
                self._forget(key)
                self.counters.incomplete += 1

    def _save(self, picture: Picture) -> Path:
        assert self.folder is not None
        folder = self.folder / picture.site / picture.post
        folder.mkdir(parents=True, exist_ok=True)
        if picture.kind == "live":
            path = folder / "stream.mjpeg"
            with open(path, "ab") as stream:
                stream.write(picture.jpeg)
            return path
        stamp = picture.captured.replace(":", "").replace("-", "")
        path = folder / f"{stamp}_{picture.kind}_{picture.seq}.jpg"
        path.write_bytes(picture.jpeg)
        return path
