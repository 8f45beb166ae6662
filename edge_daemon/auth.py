"""End-to-end authentication of the centre's commands: HMAC-SHA256 with a per-post key.

The broker's ACL already lets only the centre publish commands; the signature
makes sure that a command changing a post's outputs or alarm state came from
the holder of that post's key, even through a compromised or misconfigured
broker.  The centre signs, as MQTT 5 user properties of the command:

* ``alg`` ``hmac-sha256``, ``ts`` (unix seconds), ``nonce`` (128 random bits, hex), and
* ``sig`` = HMAC-SHA256(key, ``alarmpost-command-v1`` LF topic LF ts LF nonce LF payload).

The post accepts a command only when the signature matches, ``ts`` is within
``window_s`` (30 s) of its own clock, and the nonce has not been seen before.
Nonces are remembered durably (in the event store) for four times the window after the
newest accepted command, so a captured command cannot be replayed, not across a restart
of the daemon nor after the Pi's clock was set back.

>>> key = bytes(32)
>>> headers = sign(key, "alarmpost/v1/s/p/commands", b'{"command":"reset"}', now=1_800_000_000)
>>> verdict, _ = verify(key, "alarmpost/v1/s/p/commands", b'{"command":"reset"}', headers, now=1_800_000_010)
>>> verdict
'valid'
>>> verify(key, "alarmpost/v1/s/p/commands", b'{"command":"silence"}', headers, now=1_800_000_010)[0]
'forged'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import stat
import time
from pathlib import Path

from edge_daemon.contract import COMMAND_WINDOW_S, SIGNATURE_ALGORITHM, SIGNATURE_CONTEXT, check_headers

KEY_BYTES = 32


class KeyFileError(ValueError):
    """A command key file that cannot be used; the message names the file and why."""


# A secret file is refused when group or others may read or write it.  One exception, the
# rule PostgreSQL applies to its key files: a file root owns may be readable by its group
# (root:alarmpost 0640: the daemon, in group alarmpost, reads it and cannot change it).
_EXPOSED = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH


def secret_file_problem(path: str | Path) -> str | None:
    """Why the secret in ``path`` is not kept secret (group or others may read or write it), or None.

    A missing or unreadable file is the reader's error to report, not this check's.
    """
    try:
        info = Path(path).stat()
    except OSError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    exposed = mode & _EXPOSED & ~(stat.S_IRGRP if info.st_uid == 0 else 0)
    if exposed:
        also = " (or chmod 640 to let the daemon's group read it, as root owns it)" if info.st_uid == 0 else ""
        return f"{path}: mode {mode:04o} lets group or others read or change it; fix: chmod 600 {path}{also}"
    return None


def load_key(path: str | Path) -> bytes:
    """The 32-byte key in ``path``, written as 64 hex digits (surrounding whitespace ignored).

    Make one with ``(umask 077; python -m edge_daemon.centre keygen > post.key)``.  A file group
    or others may read or write is refused (:func:`secret_file_problem`): ``chmod 600``, or
    owned by root and readable by the daemon's group only (``0640``).
    """
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{path}: not hex digits (expected {2 * KEY_BYTES} hex digits)") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: {len(key)} bytes of key, expected {KEY_BYTES} ({2 * KEY_BYTES} hex digits)")
    problem = secret_file_problem(path)
    if problem:
        raise KeyFileError(problem)
    return key


def new_key() -> str:
    """A fresh key as hex, for a key file."""
    return secrets.token_hex(KEY_BYTES)


def _mac(key: bytes, topic: str, payload: bytes, ts: str, nonce: str) -> str:
    message = b"\n".join((SIGNATURE_CONTEXT, topic.encode(), ts.encode(), nonce.encode(), payload))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, topic: str, payload: bytes, now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The signature headers (MQTT 5 user properties) for a command on ``topic``."""
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16) if nonce is None else nonce
    return {"alg": SIGNATURE_ALGORITHM, "ts": ts, "nonce": nonce, "sig": _mac(key, topic, payload, ts, nonce)}


def verify(
    key: bytes,
    topic: str,
    payload: bytes,
    headers: dict[str, str],
    now: float | None = None,
    window_s: float = COMMAND_WINDOW_S,
) -> tuple[str, str]:
    """(verdict, detail) for a command: ``valid``, or ``unsigned``, ``malformed``, ``forged`` or ``expired``.

    The replay check (has this nonce been seen?) is the caller's, with a durable store:
    see :meth:`edge_daemon.store.EventStore.remember_nonce`.
    """
    if not headers or "sig" not in headers:
        return "unsigned", "no signature (user properties alg, ts, nonce, sig)"
    problem = check_headers(headers)
    if problem is not None:
        return "malformed", f"signature headers: {problem}"
    expected = _mac(key, topic, payload, headers["ts"], headers["nonce"])
    if not hmac.compare_digest(expected, headers["sig"]):
        return "forged", "the signature does not match this post's key"
    skew = int(headers["ts"]) - (time.time() if now is None else now)
    if abs(skew) > window_s:
        when = "behind" if skew < 0 else "ahead of"
        return "expired", f"signed {abs(skew):.0f} s {when} the post's clock (window ±{window_s:g} s)"
    return "valid", "signature valid"
