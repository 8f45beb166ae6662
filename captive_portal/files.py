"""Writing a file so that a reader, a crash or a power cut sees either the old file or the new one, whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` (file mode ``mode``); the rename is on disk before this returns.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> write_atomically(folder / "a.txt", b"new").read_bytes()
    b'new'
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
    return path
