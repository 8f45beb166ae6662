"""The centre's viewer holds a bounded amount for unfinished pictures, whatever a post sends.

A post (or someone with its credentials) can send pieces of frames that never finish, or
frames that claim to be huge: the centre must not keep them without limit.
"""

from __future__ import annotations

import hashlib

from edge_daemon.contract import iso_time
from edge_daemon.viewer import Viewer

PIECE = 32 * 1024


def headers(frame: int, chunk: int, chunks: int, size: int, sha: str = "ab" * 32) -> dict[str, str]:
    return {
        "frame": f"9f2c4e1a-{frame}",
        "kind": "snapshot",
        "seq": str(frame),
        "captured": iso_time(1_800_000_000),
        "alarm": "",
        "chunk": str(chunk),
        "chunks": str(chunks),
        "size": str(size),
        "sha256": sha,
    }


def test_endless_unfinished_frames_from_one_post_are_given_up_oldest_first() -> None:
    """Catches: the viewer keeping every unfinished frame (a post that never sends the last piece)."""
    viewer = Viewer()
    viewer.max_frames_per_post = 4
    for frame in range(100):
        assert viewer.add("s", "greedy", "snapshots", b"x" * PIECE, headers(frame, 0, 2, 2 * PIECE)) is None
    assert viewer.held_bytes == 4 * PIECE
    assert viewer.counters.incomplete == 96


def test_all_posts_together_stay_under_the_byte_bound_and_a_good_picture_still_comes() -> None:
    """Catches: memory growing with the number of posts sending half pictures; a bound that blocks good ones."""
    viewer = Viewer()
    viewer.max_held_bytes = 10 * PIECE
    for post in range(40):
        viewer.add("s", f"p{post}", "snapshots", b"x" * PIECE, headers(1, 0, 2, 2 * PIECE))
        assert viewer.held_bytes <= viewer.max_held_bytes
    jpeg = b"\xff\xd8" + b"j" * (PIECE - 2)
    whole = headers(7, 0, 1, len(jpeg), hashlib.sha256(jpeg).hexdigest())
    picture = viewer.add("s", "honest", "snapshots", jpeg, whole)
    assert picture is not None and picture.jpeg == jpeg


def test_a_frame_claiming_to_be_huge_is_refused_and_pieces_beyond_its_size_end_it() -> None:
    """Catches: a frame's own size header deciding how much the centre keeps."""
    viewer = Viewer()
    assert viewer.add("s", "p", "snapshots", b"x", headers(1, 0, 999, 10**9)) is None
    assert viewer.counters.refused == 1 and viewer.held_bytes == 0
    viewer.add("s", "p", "snapshots", b"x" * PIECE, headers(2, 0, 3, PIECE + 10))
    viewer.add("s", "p", "snapshots", b"x" * PIECE, headers(2, 1, 3, PIECE + 10))  # more than it said
    assert viewer.counters.corrupt == 1 and viewer.held_bytes == 0
