"""The centre's durable record of what the posts reported: one row per event and audit record.

A receipt to a post says "recorded": the post then deletes nothing, but stops sending the
event again, so the centre may say it only for what is on its disk.  Each batch is one
SQLite transaction with ``synchronous=FULL`` in WAL mode, committed before the receipt
is sent: a centre that crashes after the receipt still has the event.  Rows are kept
by their ``id`` (the post's UUID), so copies are recorded once.

>>> import tempfile, pathlib
>>> tmp = tempfile.TemporaryDirectory()
>>> record = CentreRecord(pathlib.Path(tmp.name) / "centre.db")
>>> ev = {"id": "3b0f8a52-9d1e-4c6b-8f0e-5a7d2c9e1b34", "store": "s", "n": 1}
>>> record.add([("events", "school-1", "post-1", ev)])
1
>>> record.add([("events", "school-1", "post-1", ev)])  # a copy
0
>>> ev["id"] in record.ids()
True
>>> record.close(); tmp.cleanup()
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_daemon.store import transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    site TEXT NOT NULL,
    post TEXT NOT NULL,
    store TEXT NOT NULL,
    n INTEGER NOT NULL,
    payload TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_by_post ON reports (site, post, store, kind, n)
"""

# (kind: "events" or "audit", site, post, decoded payload with id, store and n)
Report = tuple[str, str, str, dict[str, Any]]


class CentreRecord:
    """The record in the SQLite file at ``path`` (``":memory:"``: not durable, for a quick look only).

    Used from one thread at a time (the centre's writer thread); opened in another.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # committed means on disk: only then a receipt
        for statement in _SCHEMA.split(";"):
            self._db.execute(statement)

    def add(self, reports: Iterable[Report]) -> int:
        """Record reports in one commit; how many were new (copies of recorded ids are skipped)."""
        now = time.time()
        rows = [
            (p["id"], kind, site, post, p["store"], p["n"], json.dumps(p, sort_keys=True), now)
            for kind, site, post, p in reports
        ]
        if not rows:
            return 0
        added = 0
        with transaction(self._db) as db:
            for row in rows:
                added += db.execute("INSERT OR IGNORE INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row).rowcount
        return added

    def ids(self) -> set[str]:
        """Every recorded id: what a restarted centre already has."""
        return {row[0] for row in self._db.execute("SELECT id FROM reports")}

    def numbers(self, site: str, post: str, store: str, kind: str = "events") -> list[int]:
        """The numbers ``n`` recorded for one post's store, ascending."""
        rows = self._db.execute(
            "SELECT n FROM reports WHERE site = ? AND post = ? AND store = ? AND kind = ? ORDER BY n",
            (site, post, store, kind),
        )
        return [int(row[0]) for row in rows]

    def close(self) -> None:
        self._db.close()
