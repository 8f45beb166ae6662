"""The durable local event store: every event the post sees, kept in SQLite until the centre has it.

Alarm signals must not be lost, so an event is committed to disk before :meth:`EventStore.add`
returns: the database runs in WAL mode with ``synchronous=FULL``, which makes each commit
survive a crash of the daemon and a power cut.  The board may send an event again (after a
lost ack, or when the link comes back and it replays its journal); the store keeps one row
per ``(board, source, boot, seq)`` and answers ``False`` to a repeat.

Rows are also the outbox of the uplink to the monitoring centre: :meth:`EventStore.pending_uplink`
gives the events not yet delivered, oldest first, and :meth:`EventStore.confirm` records the
delivery when the centre's receipt says it has recorded them (``uplinked_at`` is then set).
A small key-value ``state`` table keeps what the daemon shows (link state, etc.).

Event codes are not defined here; they live in ``alarmpost.events``.

The store is bounded: past ``max_events`` rows, the events the centre has confirmed are
deleted, the least important first (restores, cancels and tests, then troubles, then
alarms), oldest first within each.  An event the centre has not confirmed is never
deleted, so a flood of events from a faulty or hostile board can fill the store only with
what is still owed to the centre.

Threads: an ``EventStore`` holds one SQLite connection and must be used from the thread that
opened it (sqlite3 refuses calls from another thread).  Other processes may read the file at
the same time (WAL lets readers run beside the writer).

>>> import tempfile, pathlib
>>> tmp = tempfile.TemporaryDirectory()
>>> store = EventStore(pathlib.Path(tmp.name) / "events.db")
>>> store.add("post-1", boot=7, seq=41, code=120, qualifier=1, zone=1, value=1, uptime_ms=1500)
True
>>> store.add("post-1", boot=7, seq=41, code=120, qualifier=1, zone=1, value=1, uptime_ms=1500)
False
>>> store.last_seq("post-1"), store.count()
(41, 1)
>>> [(e.seq, e.code, e.uplinked_at) for e in store.pending_uplink()]
[(41, 120, None)]
>>> store.mark_uplinked([e.id for e in store.pending_uplink()])
1
>>> store.pending_uplink()
[]
>>> store.set_state("link", "up")
>>> store.get_state("link")
'up'
>>> store.close(); tmp.cleanup()
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger("edge_daemon.store")

SCHEMA_VERSION = 2
MAX_EVENTS = 100_000

# The order events the centre has are deleted in, past max_events: restores (qualifier 3),
# cancels, resets and tests (4xx-6xx) first, then troubles (3xx), then alarms and anything else.
_PRIORITY = "CASE WHEN qualifier = 3 OR code BETWEEN 400 AND 699 THEN 0 WHEN code BETWEEN 300 AND 399 THEN 1 ELSE 2 END"

_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    board TEXT NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    code INTEGER NOT NULL,
    qualifier INTEGER NOT NULL,
    zone INTEGER NOT NULL,
    value INTEGER NOT NULL,
    uptime_ms INTEGER NOT NULL,
    received_at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'board',
    uplinked_at REAL,
    UNIQUE (board, source, boot, seq)
);
CREATE INDEX events_by_seq ON events (board, source, seq);
CREATE INDEX events_pending ON events (id) WHERE uplinked_at IS NULL;
CREATE TABLE state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Version 2: the uplink to the centre.  Each event gets a unique id the centre deduplicates on;
# the audit of commands is an outbox of its own; nonces of accepted commands are kept so that
# a command cannot be replayed, even across a restart.
_MIGRATE_TO_2 = """
ALTER TABLE events ADD COLUMN uid TEXT;
CREATE UNIQUE INDEX events_by_uid ON events (uid);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    at REAL NOT NULL,
    body TEXT NOT NULL,
    uplinked_at REAL
);
CREATE INDEX audit_pending ON audit (id) WHERE uplinked_at IS NULL;
CREATE TABLE nonces (
    nonce TEXT PRIMARY KEY,
    ts REAL NOT NULL
);
"""

COLUMNS = "id, board, boot, seq, code, qualifier, zone, value, uptime_ms, received_at, source, uplinked_at, uid"
OUTBOXES = ("events", "audit")  # tables whose rows wait for the centre (uplinked_at IS NULL)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on a connection in autocommit mode: committed whole, or rolled back whole."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class StoreError(RuntimeError):
    """The event store cannot be opened or used as it is; the message names the file and why."""


@dataclass(frozen=True)
class StoredEvent:
    """One row of the ``events`` table.

    ``id`` is the row id (the order events were stored in); ``received_at`` and
    ``uplinked_at`` are unix times; ``uplinked_at`` is None until the centre has the event.
    """

    id: int
    board: str
    boot: int
    seq: int
    code: int
    qualifier: int
    zone: int
    value: int
    uptime_ms: int
    received_at: float
    source: str
    uplinked_at: float | None
    uid: str


@dataclass(frozen=True)
class AuditRecord:
    """One row of the ``audit`` table: a command received and its outcome (``body``, JSON text)."""

    id: int
    uid: str
    at: float
    body: str
    uplinked_at: float | None


class EventStore:
    """The event store in the SQLite file at ``path`` (created with its folder's parent existing).

    Raises :class:`StoreError` when the file is not an SQLite database, was written by a newer
    version of the daemon, or cannot run in WAL mode.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp, EventStore(pathlib.Path(tmp) / "e.db") as store:
    ...     store.add("post-1", 1, 1, 602, 1, 0, 0, 60000, source="board")
    True
    """

    def __init__(self, path: str | Path, max_events: int = MAX_EVENTS):
        if max_events < 1:
            raise ValueError(f"max_events: {max_events} is below the minimum 1")
        self.path = Path(path)
        self.max_events = max_events
        self.pruned = 0  # confirmed events deleted to keep within max_events
        self._count: int | None = None  # events stored, counted once and kept up to date
        self._over_limit = False  # over max_events with nothing confirmed to delete: wait for the centre
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable event store: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    def _setup(self) -> None:
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot use WAL mode (journal_mode is {mode})")
        # FULL: in WAL mode every commit syncs the log, so a committed event survives a power cut.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("BEGIN IMMEDIATE")  # one opener at a time creates the schema
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._script(_SCHEMA)
                version = 1
            if version == 1:
                self._migrate_to_2()
                version = 2
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this daemon knows"
                    f" ({SCHEMA_VERSION}); run a newer daemon or move the file away"
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _script(self, script: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _migrate_to_2(self) -> None:
        self._script(_MIGRATE_TO_2)
        for (row,) in self._db.execute("SELECT id FROM events WHERE uid IS NULL").fetchall():
            self._db.execute("UPDATE events SET uid = ? WHERE id = ?", (str(uuid.uuid4()), row))
        self._db.execute(
            "INSERT OR IGNORE INTO state (key, value, updated_at) VALUES ('store_id', ?, ?)",
            (str(uuid.uuid4()), time.time()),
        )
        self._db.execute("PRAGMA user_version=2")

    @functools.cached_property
    def store_id(self) -> str:
        """This store's own id: the centre restarts its count of the post's events when it changes."""
        value = self.get_state("store_id")
        assert value is not None  # written with the schema
        return value

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def add(
        self,
        board: str,
        boot: int,
        seq: int,
        code: int,
        qualifier: int,
        zone: int,
        value: int,
        uptime_ms: int,
        source: str = "board",
        *,
        received_at: float | None = None,
    ) -> bool:
        """Store one event, committed to disk before returning; False if that (board, source, boot, seq) is stored.

        ``source`` is ``"board"`` for events from the board and ``"daemon"`` for the daemon's own
        (link lost, board reset...), which number their own ``boot`` and ``seq`` without clashing
        with the board's.  ``received_at`` defaults to now.
        """
        if not board:
            raise ValueError("board: must not be empty")
        if not source:
            raise ValueError("source: must not be empty")
        when = time.time() if received_at is None else received_at
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO events"
            " (board, boot, seq, code, qualifier, zone, value, uptime_ms, received_at, source, uid)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (board, boot, seq, code, qualifier, zone, value, uptime_ms, when, source, str(uuid.uuid4())),
        )
        if cursor.rowcount != 1:
            return False
        if self._count is None:
            self._count = self.count()
        else:
            self._count += 1
        if self._count > self.max_events and not self._over_limit:
            self._prune()
        return True

    def _prune(self) -> None:
        """Delete confirmed events, least important and oldest first, down to ``max_events``; never an unconfirmed one.

        Past the limit 1 % more is deleted at once, so the sort runs once per that many events, not at each.
        """
        excess = (self._count or 0) - self.max_events + self.max_events // 100
        deleted = self._db.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE uplinked_at IS NOT NULL"
            f" ORDER BY {_PRIORITY}, id LIMIT ?)",
            (excess,),
        ).rowcount
        self.pruned += deleted
        self._count = self.count()
        if self._count > self.max_events:
            self._over_limit = True  # until the centre confirms more
            log.warning(
                "the event store is over its limit with events the centre has not confirmed; none is deleted",
                extra={"events": self._count, "max_events": self.max_events},
            )

    def retire(self, board: str) -> str:
        """File a board's events under a new name and return it, keeping every row.

        For a post whose board started its numbering afresh (replaced, or its flash
        erased): the new board's events then store under the post's name without
        clashing with the old ones, and nothing is deleted.
        """
        # The time for people, a random tail so that two renumberings within a second never collide.
        retired = f"{board}~retired-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        self._db.execute("UPDATE events SET board = ? WHERE board = ? AND source = 'board'", (retired, board))
        return retired

    def last_seq(self, board: str, source: str = "board") -> int:
        """The highest ``seq`` stored for ``board`` (from ``source``), 0 if none.

        The board's ``seq`` grows for its whole life, across resets, so this is where a
        replay of its journal should start from.
        """
        row = self._db.execute("SELECT MAX(seq) FROM events WHERE board = ? AND source = ?", (board, source)).fetchone()
        return int(row[0]) if row[0] is not None else 0

    def events(self, board: str | None = None) -> list[StoredEvent]:
        """Every stored event (of ``board`` when given), in the order they were stored."""
        if board is None:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM events ORDER BY id")
        else:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM events WHERE board = ? ORDER BY id", (board,))
        return [StoredEvent(*row) for row in rows]

    def count(self, board: str | None = None) -> int:
        """How many events are stored (of ``board`` when given)."""
        if board is None:
            row = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
        else:
            row = self._db.execute("SELECT COUNT(*) FROM events WHERE board = ?", (board,)).fetchone()
        return int(row[0])

    def pending_uplink(self, limit: int = 100, after: int = 0) -> list[StoredEvent]:
        """Up to ``limit`` events the centre does not have yet, oldest first (with ids above ``after``)."""
        if limit < 1:
            raise ValueError(f"limit: {limit} is below the minimum 1")
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM events WHERE uplinked_at IS NULL AND id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [StoredEvent(*row) for row in rows]

    def events_from(self, first_id: int, limit: int = 100) -> list[StoredEvent]:
        """Up to ``limit`` events with ids from ``first_id`` on, delivered or not (for a replay)."""
        rows = self._db.execute(f"SELECT {COLUMNS} FROM events WHERE id >= ? ORDER BY id LIMIT ?", (first_id, limit))
        return [StoredEvent(*row) for row in rows]

    def uid_of(self, board: str, source: str, boot: int, seq: int) -> str | None:
        """The unique id of one stored event, or None."""
        row = self._db.execute(
            "SELECT uid FROM events WHERE board = ? AND source = ? AND boot = ? AND seq = ?", (board, source, boot, seq)
        ).fetchone()
        return None if row is None else str(row[0])

    def last_id(self) -> int:
        """The newest event's id (its number ``n`` for the centre), 0 if none."""
        row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0]) if row[0] is not None else 0

    def backlog(self) -> tuple[int, float | None]:
        """(events the centre has not confirmed, when the oldest of them was stored, or None)."""
        row = self._db.execute("SELECT COUNT(*), MIN(received_at) FROM events WHERE uplinked_at IS NULL").fetchone()
        return int(row[0]), row[1]

    def mark_uplinked(self, ids: Iterable[int], at: float | None = None, table: str = "events") -> int:
        """Record that the centre has the rows of ``table`` with these ids (at ``at``, default now); how many changed.

        Rows already marked keep their first delivery time.  All ids are marked in one commit.
        """
        return self.confirm(((int(i), int(i)) for i in ids), table, at)

    def confirm(self, ranges: Iterable[tuple[int, int]], table: str = "events", at: float | None = None) -> int:
        """The centre has recorded the rows of ``table`` numbered ``first`` .. ``last`` for each range:
        mark them delivered (at ``at``, default now), in one commit; how many were not marked before."""
        if table not in OUTBOXES:
            raise ValueError(f"table: {table!r} is not an outbox ({', '.join(OUTBOXES)})")
        when = time.time() if at is None else at
        params = [(when, int(first), int(last)) for first, last in ranges]
        if not params:
            return 0
        changed = 0
        with transaction(self._db) as db:
            for param in params:
                changed += db.execute(
                    f"UPDATE {table} SET uplinked_at = ? WHERE id BETWEEN ? AND ? AND uplinked_at IS NULL", param
                ).rowcount
        if changed and table == "events" and self._over_limit:
            self._over_limit = False
            self._prune()
        return changed

    def add_audit(self, body: str, at: float | None = None) -> AuditRecord:
        """Keep one audit record (``body``: JSON text), committed before returning."""
        when = time.time() if at is None else at
        uid = str(uuid.uuid4())
        cursor = self._db.execute("INSERT INTO audit (uid, at, body) VALUES (?, ?, ?)", (uid, when, body))
        assert cursor.lastrowid is not None
        return AuditRecord(cursor.lastrowid, uid, when, body, None)

    def pending_audit(self, limit: int = 100, after: int = 0) -> list[AuditRecord]:
        """Up to ``limit`` audit records the centre does not have yet, oldest first (ids above ``after``)."""
        rows = self._db.execute(
            "SELECT id, uid, at, body, uplinked_at FROM audit WHERE uplinked_at IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [AuditRecord(*row) for row in rows]

    def audit(self) -> list[AuditRecord]:
        """Every audit record, oldest first."""
        rows = self._db.execute("SELECT id, uid, at, body, uplinked_at FROM audit ORDER BY id")
        return [AuditRecord(*row) for row in rows]

    def remember_nonce(self, nonce: str, ts: float, keep_s: float) -> bool:
        """True the first time ``nonce`` is seen, False for a replay.

        Nonces are forgotten ``keep_s`` after the newest accepted command's ``ts``, not after
        the Pi's clock: a clock set back (a power cut before NTP answers) cannot make a
        forgotten nonce usable again, because a command older than the newest one by more than
        ``keep_s`` is refused as well.
        """
        row = self._db.execute("SELECT MAX(ts) FROM nonces").fetchone()
        newest = ts if row[0] is None else max(float(row[0]), ts)
        if ts < newest - keep_s:
            return False
        with transaction(self._db) as db:
            db.execute("DELETE FROM nonces WHERE ts < ?", (newest - keep_s,))
            added = db.execute("INSERT OR IGNORE INTO nonces (nonce, ts) VALUES (?, ?)", (nonce, ts)).rowcount
        return added == 1

    def set_state(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` (e.g. ``set_state("link", "down")``), committed before returning."""
        self._db.execute(
            "INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (key, value, time.time()),
        )

    def uplinked_at(self, uid: str) -> float | None:
        """When the centre's receipt confirmed the event ``uid`` (None: not yet, or no such event)."""
        row = self._db.execute("SELECT uplinked_at FROM events WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else row[0]

    def get_state(self, key: str) -> str | None:
        """The value kept under ``key``, or None."""
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards.  Closing twice is harmless."""
        self._db.close()
