"""The gate WiFi's access log: what the law requires to be kept, for as long as it requires, and nothing else.

What is kept, and why
---------------------
MPS Order No. 82 (Provisions on Technical Measures for Internet Security Protection) requires
whoever provides internet access to record each user's log-on and log-off time, account and
network address, and to be able to keep those records for at least 60 days.  One row of the
``sessions`` table is one such record:

* ``logon`` and ``logoff``: UTC unix seconds; ``logoff`` is empty while the session is open;
* ``mac``: the *account*.  The network is open and nobody registers, so the only account a
  phone has is the MAC address it joined with.  Android and iOS choose a random MAC for each
  network, so this identifies a phone on this gate's network, not a person, and the same phone
  shows a different MAC on other networks;
* ``ip``: the *address*, the IPv4 address DHCP gave the phone on the gate network;
* ``post``: which post's hotspot it was, since an authority may ask about one school gate;
* ``end_reason``: ``timeout`` (the session ran out), ``revoked`` (ended by the portal) or
  ``restart`` (found open when the portal started; see :meth:`AccessLog.close_all`).

Nothing else is kept: no names, phone numbers, addresses of web sites, DNS queries, traffic
volumes or browser details.  The MAC and IP address are kept as they were seen, not hashed:
the log exists to be handed to the public security authority on request, which needs them as
they were; and a hash of a 48-bit MAC could be reversed by trying every MAC, so it would hide
nothing while making the log useless for its only purpose.  What can be hashed is hashed in
the statistics instead (:mod:`captive_portal.stats`), which keep no MAC or address at all.

How long
--------
PIPL Art. 19 requires personal information to be kept no longer than necessary, and the order
sets the necessary period: a closed session is deleted once its log-off is more than
``retention_days`` (60 by default, never fewer) in the past.  The service calls
:meth:`AccessLog.purge` when it starts and then once a day (see :func:`next_purge_delay`), so a
row lives at most ``retention_days`` plus one day.  An open session is never deleted, however
old its log-on: its log-off, from which the 60 days run, has not happened yet.  Deleted rows are
overwritten with zeros (``secure_delete``) and the write-ahead log is emptied after a purge,
so the deleted records leave the file, not just the index (an SD card may still hold old
blocks internally until it reuses them; encrypt the disk where that matters).

Consent and children
--------------------
:meth:`AccessLog.log_on` is called only after the phone's owner accepted the terms on the
splash page, which say that access is logged and for how long (PIPL Art. 14: consent that is
informed, voluntary and explicit; the record itself is also a legal obligation, PIPL Art. 13).
The network is offered to parents.  Nothing here records or infers anyone's age, and a MAC
and a private address say nothing about who holds the phone; no information PIPL Art. 28
counts as sensitive (which includes any information about children under 14) is asked for.

Durability and files
--------------------
The log is SQLite in WAL mode with ``synchronous=FULL``: a log-on is on disk before
:meth:`AccessLog.log_on` returns and survives a power cut.  Every write is one transaction,
so a record is written whole or not at all.  The file is created with mode 0600 (and its
folder 0700 when this creates it): only the portal's user can read the log.  The schema
version is kept in ``PRAGMA user_version``.  A file that is not a usable access log (not
SQLite, damaged, or from a newer version) raises :class:`AccessLogError` naming the file;
the portal must not run without its log, so it does not start until someone looks.

An ``AccessLog`` may be shared between threads: one lock serialises its calls.

For an authority's request, export the sessions that overlap a period (all times UTC unless
an offset is given; a date alone is a whole day, and ``--until`` defaults to now)::

    python -m captive_portal.accesslog --db /var/lib/alarmpost-portal/access.db \\
        export --since 2026-11-01 --until 2026-11-30 --format csv --output request-123.csv

and delete what is past its retention by hand (the service does this daily anyway)::

    python -m captive_portal.accesslog --db /var/lib/alarmpost-portal/access.db purge

>>> import tempfile, pathlib
>>> tmp = tempfile.TemporaryDirectory()
>>> log = AccessLog(pathlib.Path(tmp.name) / "access.db", post="gate-north")
>>> session = log.log_on("02:AB:CD:00:00:01", "10.73.0.23", at=1_794_990_600)
>>> log.log_off(session, at=1_794_992_400)
>>> [(row["logon"], row["logoff"], row["mac"], row["end_reason"]) for row in log.export(0, 2e9)]
[('2026-11-18T08:30:00.000Z', '2026-11-18T09:00:00.000Z', '02:ab:cd:00:00:01', 'timeout')]
>>> log.purge(now=1_794_992_400 + 61 * 86400)
1
>>> log.close(); tmp.cleanup()
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ipaddress
import json
import math
import os
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from edge_daemon.config import BOARD_NAME
from edge_daemon.contract import iso_time

SCHEMA_VERSION = 1
MIN_RETENTION_DAYS = 60  # MPS Order No. 82
DAY_S = 86400
PURGE_AT_UTC_S = 19 * 3600  # 19:00 UTC is 03:00 in China, when nobody waits at the gate
REASONS = ("timeout", "revoked", "restart")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
EXPORT_FIELDS = ("id", "post", "logon", "logoff", "mac", "ip", "end_reason")

_SCHEMA = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    post TEXT NOT NULL,
    logon REAL NOT NULL,
    logoff REAL,
    mac TEXT NOT NULL,
    ip TEXT NOT NULL,
    end_reason TEXT CHECK (end_reason IN ('timeout', 'revoked', 'restart')),
    CHECK ((logoff IS NULL) = (end_reason IS NULL)),
    CHECK (logoff IS NULL OR logoff >= logon)
);
CREATE INDEX sessions_open ON sessions (id) WHERE logoff IS NULL;
CREATE INDEX sessions_by_logon ON sessions (logon);
CREATE INDEX sessions_by_logoff ON sessions (logoff);
PRAGMA user_version = 1;
"""
# AUTOINCREMENT: a session id is never used twice, even after every row has been purged.

COLUMNS = "id, post, logon, logoff, mac, ip, end_reason"


class AccessLogError(OSError):
    """The access log cannot be opened or written; the message names the file and why.

    An ``OSError``, like any other failure to write a file, so a caller that already handles
    I/O errors handles this one too.
    """


@dataclass(frozen=True)
class Session:
    """One row of the log: times are UTC unix seconds; ``logoff`` and ``end_reason`` are None while open."""

    id: int
    post: str
    logon: float
    logoff: float | None
    mac: str
    ip: str
    end_reason: str | None

    def as_export(self) -> dict[str, Any]:
        """The row as it is handed over: times as ISO 8601 UTC with milliseconds."""
        return {
            "id": self.id,
            "post": self.post,
            "logon": iso_time(self.logon),
            "logoff": None if self.logoff is None else iso_time(self.logoff),
            "mac": self.mac,
            "ip": self.ip,
            "end_reason": self.end_reason,
        }


def canonical_mac(mac: str) -> str:
    """``mac`` in lower case if it is a unicast MAC of six colon-separated hex bytes; ValueError otherwise."""
    canonical = mac.lower() if isinstance(mac, str) else ""
    if not MAC.fullmatch(canonical):
        raise ValueError(f"mac: {mac!r} is not a MAC address (six colon-separated hex bytes)")
    if int(canonical[:2], 16) & 1 or canonical == "00:00:00:00:00:00":
        raise ValueError(f"mac: {mac!r} is not a unicast MAC address")
    return canonical


def canonical_ip(ip: str) -> str:
    """``ip`` as a dotted IPv4 address; ValueError otherwise."""
    try:
        return str(ipaddress.IPv4Address(ip))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"ip: {ip!r} is not an IPv4 address") from None


def checked_time(name: str, value: float | None) -> float:
    """``value`` (now when None) if it is a finite, non-negative unix time; ValueError otherwise."""
    when = time.time() if value is None else value
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when) or when < 0:
        raise ValueError(f"{name}: {value!r} is not a unix time")
    return float(when)


def next_purge_delay(now: float) -> float:
    """Seconds from ``now`` to the next daily purge, at 19:00 UTC (03:00 in China); in (0, 86400].

    The service purges when it starts and then sleeps this long between purges::

        log.purge()
        while True:
            await asyncio.sleep(next_purge_delay(time.time()))
            log.purge()

    >>> next_purge_delay(18 * 3600), next_purge_delay(19 * 3600)
    (3600.0, 86400.0)
    """
    delay = (PURGE_AT_UTC_S - now) % DAY_S
    return float(delay) if delay > 0 else float(DAY_S)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (its folder 0700 if missing); leave an existing file alone."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        folder.chmod(0o700)  # mkdir's mode is reduced by the umask
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


class AccessLog:
    """The access log in the SQLite file at ``path``, kept ``retention_days`` (at least 60).

    ``post`` is this post's id (the config's ``board.name``), written into every row; a log
    opened without one can be read, exported and purged but not logged on to.
    """

    def __init__(self, path: Path, retention_days: int = MIN_RETENTION_DAYS, *, post: str | None = None) -> None:
        if isinstance(retention_days, bool) or not isinstance(retention_days, int):
            raise ValueError(f"retention_days: {retention_days!r} is not a whole number of days")
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError("MPS Order No. 82 requires at least 60 days")
        if post is not None and not BOARD_NAME.fullmatch(post):
            raise ValueError(f"post: {post!r} is not a post id (1-64 of A-Z a-z 0-9 . _ -)")
        self.path = Path(path)
        self.retention_days = retention_days
        self.post = post
        self._lock = threading.Lock()
        self._db = self._open()

    # -- opening ------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            _create_private(self.path)
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise AccessLogError(f"{self.path}: cannot open the access log: {exc}") from None
        try:
            self._setup(db)
        except sqlite3.Error as exc:
            db.close()
            raise AccessLogError(f"{self.path}: not a usable access log: {exc}") from None
        except AccessLogError:
            db.close()
            raise
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AccessLogError(f"{self.path}: cannot use WAL mode (journal_mode is {mode})")
        db.execute("PRAGMA synchronous=FULL")  # every commit is on disk before it returns
        db.execute("PRAGMA secure_delete=ON")  # purged rows are overwritten, not just unlinked
        problem = db.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise AccessLogError(f"{self.path}: the access log is damaged ({problem}); move it away and keep a copy")
        db.execute("BEGIN IMMEDIATE")  # one opener at a time creates the schema
        try:
            self._migrate(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise AccessLogError(f"{self.path}: an SQLite database of something else, not an access log")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
        elif version > SCHEMA_VERSION:
            raise AccessLogError(
                f"{self.path}: schema version {version} is newer than this portal knows ({SCHEMA_VERSION})"
            )

    # -- one place for locking, transactions and errors -----------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction: committed whole, or rolled back."""
        with self._lock, self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            yield self._db

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise AccessLogError(f"{self.path}: {exc}") from None

    # -- writing --------------------------------------------------------------------------

    def log_on(self, mac: str, ip: str, at: float | None = None) -> int:
        """Open a session for the phone with this MAC and IPv4 address at ``at`` (default now); its id.

        ValueError says what is wrong with ``mac``, ``ip`` or ``at``; nothing is written then.
        """
        if self.post is None:
            raise RuntimeError(f"{self.path}: opened without a post id, so it cannot log on")
        row = (self.post, checked_time("at", at), canonical_mac(mac), canonical_ip(ip))
        with self._transaction() as db:
            cursor = db.execute("INSERT INTO sessions (post, logon, mac, ip) VALUES (?, ?, ?, ?)", row)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def log_off(self, session_id: int, at: float | None = None, reason: str = "timeout") -> None:
        """Close session ``session_id`` at ``at`` (default now) for ``reason``.

        Closing a closed (or unknown) session changes nothing.  A log-off time before the
        log-on (a clock set back) is recorded as the log-on time.
        """
        if reason not in REASONS:
            raise ValueError(f"reason: {reason!r} is not one of {', '.join(REASONS)}")
        when = checked_time("at", at)
        with self._transaction() as db:
            db.execute(
                "UPDATE sessions SET logoff = MAX(logon, ?), end_reason = ? WHERE id = ? AND logoff IS NULL",
                (when, reason, int(session_id)),
            )

    def close_all(self, reason: str = "restart", at: float | None = None) -> int:
        """Close every open session at ``at`` (default now); how many were open.

        For the portal's start: sessions left open by a crash or a power cut cannot still be
        online (the firewall starts empty), and when they really ended is unknown.  They get
        the time of the start as their log-off, which overstates how long they lasted: the
        safe side for the law, whose question is who could have been online at a given time.
        """
        if reason not in REASONS:
            raise ValueError(f"reason: {reason!r} is not one of {', '.join(REASONS)}")
        when = checked_time("at", at)
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE sessions SET logoff = MAX(logon, ?), end_reason = ? WHERE logoff IS NULL", (when, reason)
            )
        return cursor.rowcount

    def purge(self, now: float | None = None) -> int:
        """Delete the closed sessions whose log-off is more than ``retention_days`` before ``now``; how many.

        Open sessions are never deleted.  The deleted rows are overwritten and the write-ahead
        log emptied, so they leave the file.
        """
        cutoff = checked_time("now", now) - self.retention_days * DAY_S
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM sessions WHERE logoff IS NOT NULL AND logoff < ?", (cutoff,)).rowcount
        if deleted:
            with self._reading() as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    # -- reading --------------------------------------------------------------------------

    def get(self, session_id: int) -> Session | None:
        """The session with this id, or None."""
        with self._reading() as db:
            row = db.execute(f"SELECT {COLUMNS} FROM sessions WHERE id = ?", (int(session_id),)).fetchone()
        return None if row is None else Session(*row)

    def open_sessions(self) -> list[Session]:
        """The sessions not yet logged off, oldest first."""
        with self._reading() as db:
            rows = db.execute(f"SELECT {COLUMNS} FROM sessions WHERE logoff IS NULL ORDER BY id").fetchall()
        return [Session(*row) for row in rows]

    def sessions_between(self, since: float, until: float) -> list[Session]:
        """The sessions online at any moment from ``since`` up to ``until`` (open ones included), by log-on."""
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE logon < ? AND (logoff IS NULL OR logoff >= ?)"
                " ORDER BY logon, id",
                (float(until), float(since)),
            ).fetchall()
        return [Session(*row) for row in rows]

    def export(self, since: float, until: float) -> list[dict[str, Any]]:
        """For an authority's request: :meth:`sessions_between` as dicts with the keys of
        :data:`EXPORT_FIELDS`, times in ISO 8601 UTC (``logoff`` and ``end_reason`` None while open)."""
        if since >= until:
            raise ValueError(f"since: {iso_time(since)} is not before until {iso_time(until)}")
        return [session.as_export() for session in self.sessions_between(since, until)]

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; the log cannot be used afterwards.  Closing twice is harmless."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> AccessLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- the command line -----------------------------------------------------------------------


def parse_time(text: str, end_of_day: bool = False) -> float:
    """A unix time from ISO 8601 text: UTC unless it has an offset; a date alone is the start
    of that UTC day, or with ``end_of_day`` the start of the next (so the day is included).

    >>> parse_time("2026-11-01"), parse_time("2026-11-01", end_of_day=True), parse_time("2026-11-01T08:00+08:00")
    (1793491200.0, 1793577600.0, 1793491200.0)
    """
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-11-01)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if end_of_day and len(text) == len("2026-11-01"):
        when += timedelta(days=1)
    return when.timestamp()


def write_export(rows: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """``rows`` as CSV (a header line, empty cells for open sessions) or as a JSON array."""
    if fmt == "json":
        json.dump(rows, out, indent=1, ensure_ascii=False)
        out.write("\n")
        return
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def _open_output(path: Path) -> TextIO:
    """A new file for an export, mode 0600 (it holds personal data); never overwrites one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _export(log: AccessLog, since: float, until: float, args: argparse.Namespace) -> None:
    rows = log.export(since, until)
    if args.output is None:
        write_export(rows, args.format, sys.stdout)
    else:
        with _open_output(args.output) as out:
            write_export(rows, args.format, out)
    print(f"{log.path}: {len(rows)} sessions from {iso_time(since)} to {iso_time(until)}", file=sys.stderr)


def _purge(log: AccessLog) -> None:
    deleted = log.purge()
    print(f"{log.path}: deleted {deleted} sessions logged off more than {log.retention_days} days ago")


def _period(args: argparse.Namespace) -> tuple[float, float]:
    """The export's (since, until); ArgumentTypeError says what is wrong."""
    since = parse_time(args.since)
    until = time.time() if args.until is None else parse_time(args.until, end_of_day=True)
    if since >= until:
        raise argparse.ArgumentTypeError(f"--since {args.since} is not before --until {args.until or 'now'}")
    return since, until


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m captive_portal.accesslog", description="Export or purge the gate WiFi's access log."
    )
    parser.add_argument("--db", type=Path, required=True, metavar="FILE", help="the access log (portal-access.db)")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="the sessions online in a period, for an authority's request")
    export.add_argument("--since", required=True, help="start: ISO 8601 date or time, UTC unless an offset is given")
    export.add_argument("--until", help="end (a date alone includes that day); default now")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--output", type=Path, metavar="FILE", help="write a new file (mode 0600), not stdout")
    purge = sub.add_parser("purge", help="delete the sessions past their retention")
    purge.add_argument(
        "--retention-days",
        type=int,
        required=True,
        metavar="DAYS",
        help="the post's access_log.retention_days (never fewer than 60)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; 0 on success, 1 when the log or the output cannot be used, 2 for wrong arguments."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        period = _period(args) if args.command == "export" else None
        retention_days = getattr(args, "retention_days", MIN_RETENTION_DAYS)
        if retention_days < MIN_RETENTION_DAYS:
            raise argparse.ArgumentTypeError("--retention-days: MPS Order No. 82 requires at least 60 days")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not args.db.is_file():
        print(f"{args.db}: no such access log", file=sys.stderr)
        return 1
    try:
        with AccessLog(args.db, retention_days) as log:
            if period is None:
                _purge(log)
            else:
                _export(log, *period, args)
    except OSError as exc:  # AccessLogError, or an output file that exists or cannot be written
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
