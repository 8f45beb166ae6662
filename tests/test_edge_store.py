"""The durable event store: real SQLite files, reopened, and a writer killed with SIGKILL."""

from __future__ import annotations

import doctest
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge_daemon import store as store_module
from edge_daemon.store import _SCHEMA, SCHEMA_VERSION, EventStore, StoredEvent, StoreError

ROOT = Path(__file__).resolve().parent.parent
PANIC, NEW, ZONE_BUTTON = 120, 1, 1  # Contact ID panic, new event, the button zone (as in alarmpost.events)


def add(
    store: EventStore, seq: int, boot: int = 1, board: str = "post-1", code: int = PANIC, source: str = "board"
) -> bool:
    """Store a panic press with this seq; uptime_ms is derived from seq."""
    return store.add(board, boot, seq, code, NEW, ZONE_BUTTON, 1, 1000 + seq, source=source)


def test_add_stores_every_column(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        assert store.add("post-1", 7, 41, 120, 1, 1, 2, 1500, received_at=1_700_000_000.5)
        assert store.add("post-1", 7, 1, 300, 3, 0, 0, 9, source="daemon", received_at=1_700_000_001.0)
        stored = store.events()
        uids = [e.uid for e in stored]
        assert stored == [
            StoredEvent(1, "post-1", 7, 41, 120, 1, 1, 2, 1500, 1_700_000_000.5, "board", None, uids[0]),
            StoredEvent(2, "post-1", 7, 1, 300, 3, 0, 0, 9, 1_700_000_001.0, "daemon", None, uids[1]),
        ]
        assert len(set(uids)) == 2 and all(str(uuid.UUID(u)) == u for u in uids)


def test_a_version_1_store_is_migrated_keeping_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA + "PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO events (board, boot, seq, code, qualifier, zone, value, uptime_ms, received_at)"
        " VALUES ('post-1', 1, 1, 120, 1, 1, 1, 10, 1.0)"
    )
    db.commit()
    db.close()
    with EventStore(path) as store:
        (event,) = store.events()
        assert (event.seq, event.code, event.uplinked_at) == (1, 120, None)
        assert uuid.UUID(event.uid) and uuid.UUID(store.store_id)
        assert store.pending_uplink() == [event]


def test_audit_is_an_outbox_of_its_own(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        first = store.add_audit('{"command": "reset"}')
        second = store.add_audit('{"command": "silence"}')
        assert [r.id for r in store.pending_audit()] == [first.id, second.id]
        assert store.mark_uplinked([first.id], table="audit") == 1
        assert [r.body for r in store.pending_audit()] == ['{"command": "silence"}']
        assert store.pending_uplink() == []  # events are a separate outbox
        with pytest.raises(ValueError, match="not an outbox"):
            store.mark_uplinked([1], table="state")


def test_a_nonce_is_accepted_once_and_survives_a_reopen(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    with EventStore(tmp_path / "events.db") as store:
        assert store.remember_nonce("a" * 32, now, keep_s=120)
        assert not store.remember_nonce("a" * 32, now, keep_s=120)
    with EventStore(tmp_path / "events.db") as store:
        assert not store.remember_nonce("a" * 32, now, keep_s=120)
        assert store.remember_nonce("c" * 32, now + 3600, keep_s=120)  # the newest command moves the horizon
        # "a" is forgotten now, yet cannot come back: older than the newest command by more than keep_s
        assert not store.remember_nonce("a" * 32, now, keep_s=120)
        assert store.remember_nonce("d" * 32, now + 3600 - 60, keep_s=120)  # within keep_s of the newest


def test_backlog_and_replay_reads(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        for seq in range(1, 6):
            add(store, seq)
        store.mark_uplinked([1, 2])
        count, oldest = store.backlog()
        assert count == 3 and oldest == store.events()[2].received_at
        assert [e.id for e in store.pending_uplink(after=3)] == [4, 5]
        assert [e.id for e in store.events_from(2, limit=2)] == [2, 3]
        assert store.last_id() == 5


def test_received_at_defaults_to_now(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        before = time.time()
        add(store, 1)
        after = time.time()
        assert before <= store.events()[0].received_at <= after


def test_duplicate_board_boot_seq_is_refused_without_raising(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        assert add(store, 5) is True
        assert add(store, 5, code=999) is False  # a replay: the first copy is kept
        assert add(store, 5, boot=2) is True  # same seq after a reset is another event
        assert add(store, 5, board="post-2") is True  # another post
        assert add(store, 5, source="daemon") is True  # the daemon's own numbering
        assert store.count() == 4
        assert [(e.board, e.boot, e.seq, e.code, e.source) for e in store.events()] == [
            ("post-1", 1, 5, PANIC, "board"),
            ("post-1", 2, 5, PANIC, "board"),
            ("post-2", 1, 5, PANIC, "board"),
            ("post-1", 1, 5, PANIC, "daemon"),
        ]


def test_dedupe_holds_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        for seq in range(1, 6):
            assert add(store, seq)
    with EventStore(path) as store:
        assert [add(store, seq) for seq in range(1, 8)] == [False] * 5 + [True] * 2
        assert [e.seq for e in store.events()] == list(range(1, 8))


def test_last_seq_per_board(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        assert store.last_seq("post-1") == 0
        add(store, 10, boot=1)
        add(store, 12, boot=2)
        add(store, 11, boot=2)  # arrives late: the highest stays 12
        add(store, 99, board="post-2")
        add(store, 500, source="daemon")
        assert store.last_seq("post-1") == 12
        assert store.last_seq("post-2") == 99
        assert store.last_seq("post-1", source="daemon") == 500
        assert store.last_seq("post-3") == 0


def test_events_filter_and_count(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        add(store, 1)
        add(store, 1, board="post-2")
        add(store, 2)
        assert [(e.board, e.seq) for e in store.events("post-1")] == [("post-1", 1), ("post-1", 2)]
        assert [e.id for e in store.events()] == [1, 2, 3]
        assert (store.count(), store.count("post-1"), store.count("post-2"), store.count("post-9")) == (3, 2, 1, 0)


def test_pending_uplink_and_mark_uplinked(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        for seq in range(1, 6):
            add(store, seq)
        first = store.pending_uplink(limit=3)
        assert [e.seq for e in first] == [1, 2, 3]
        assert all(e.uplinked_at is None for e in first)
        assert store.mark_uplinked([e.id for e in first], at=1_700_000_100.0) == 3
        assert [e.seq for e in store.pending_uplink()] == [4, 5]
        assert store.mark_uplinked([first[0].id, 4], at=1_700_000_200.0) == 1  # the first keeps its time
        assert store.mark_uplinked([]) == 0
        assert store.mark_uplinked([12345]) == 0
        with pytest.raises(ValueError, match="limit"):
            store.pending_uplink(0)
    with EventStore(path) as store:
        assert [e.seq for e in store.pending_uplink()] == [5]
        assert [e.uplinked_at for e in store.events()] == [1_700_000_100.0] * 3 + [1_700_000_200.0, None]


def test_state_is_kept_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        assert store.get_state("link") is None
        store.set_state("link", "up")
        store.set_state("link", "down")
        store.set_state("board_boot", "7")
    with EventStore(path) as store:
        assert store.get_state("link") == "down"
        assert store.get_state("board_boot") == "7"


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        add(store, 1)
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
            assert other.execute("SELECT seq FROM events").fetchall() == [(1,)]  # committed: others see it
        finally:
            other.close()
        assert Path(str(path) + "-wal").exists()
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_schema_version_is_set_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1} is newer") as info:
        EventStore(path)
    assert str(path) in str(info.value)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable event store") as info:
        EventStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"this is not sqlite" * 100  # left as it was


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        EventStore(tmp_path / "no" / "such" / "events.db")


def test_empty_board_or_source_is_refused(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        with pytest.raises(ValueError, match="board"):
            add(store, 1, board="")
        with pytest.raises(ValueError, match="source"):
            add(store, 1, source="")
        assert store.count() == 0


def test_use_from_another_thread_is_refused(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db") as store:
        caught: list[BaseException] = []

        def other_thread() -> None:
            try:
                add(store, 1)
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(caught) == 1 and isinstance(caught[0], sqlite3.ProgrammingError)
        assert store.count() == 0


WRITER = """
import sys
from edge_daemon.store import EventStore

store = EventStore(sys.argv[1])
for seq in range(1, 1_000_000):
    store.add("post-1", 3, seq, 120, 1, 1, 1, seq * 10)
    print(seq, flush=True)
"""


def test_every_event_add_returned_for_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    printed: list[int] = []
    try:
        while len(printed) < 200:
            line = writer.stdout.readline()
            assert line, f"writer ended early: {writer.stderr.read() if writer.stderr else ''}"
            printed.append(int(line))
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
        printed += [int(line) for line in writer.stdout.read().split()]  # lines already in the pipe
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
        if writer.stderr:
            writer.stderr.close()

    assert printed == list(range(1, len(printed) + 1))
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    with EventStore(path) as store:
        stored = [e.seq for e in store.events()]
        # Every event the writer was told was stored is there; at most the one in flight more.
        assert stored[: len(printed)] == printed
        assert len(stored) - len(printed) <= 1
        assert stored == list(range(1, len(stored) + 1))
        assert store.last_seq("post-1") == len(stored)
        assert add(store, printed[-1], boot=3) is False  # the replay after a restart is a duplicate


def test_docstring_examples_run() -> None:
    result = doctest.testmod(store_module)
    assert result.failed == 0 and result.attempted > 0


def _fill(store: EventStore, codes: list[tuple[int, int]]) -> None:
    for seq, (code, qualifier) in enumerate(codes, start=store.last_seq("post-1") + 1):
        assert store.add("post-1", 1, seq, code, qualifier, 1, 0, seq)


def test_past_max_events_confirmed_events_go_least_important_and_oldest_first(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db", max_events=6) as store:
        # 1 alarm, 2 trouble, 3 test, 4 restore, 5 alarm, 6 trouble, all confirmed by the centre
        _fill(store, [(120, 1), (301, 1), (602, 1), (301, 3), (120, 1), (302, 1)])
        store.mark_uplinked([e.id for e in store.events()])
        _fill(store, [(137, 1)])  # one over: the oldest of the lowest class (the test, seq 3) goes
        assert [e.seq for e in store.events()] == [1, 2, 4, 5, 6, 7]
        _fill(store, [(120, 1)])  # then the restore (seq 4)
        assert [e.seq for e in store.events()] == [1, 2, 5, 6, 7, 8]
        _fill(store, [(120, 1), (120, 1)])  # then the troubles, oldest first, before any alarm
        assert [e.seq for e in store.events()] == [1, 5, 7, 8, 9, 10]
        assert store.pruned == 4 and store.count() == 6


def test_an_event_the_centre_has_not_confirmed_is_never_deleted(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.db", max_events=3) as store:
        _fill(store, [(602, 1), (602, 1)])
        store.mark_uplinked([e.id for e in store.events()])
        _fill(store, [(602, 1)] * 5)  # a flood of tests while the centre is away
        assert [e.seq for e in store.events()] == [3, 4, 5, 6, 7]  # only the confirmed ones went
        assert all(e.uplinked_at is None for e in store.events())
        store.mark_uplinked([e.id for e in store.events()][:3])  # the centre catches up: back within the limit
        assert [e.seq for e in store.events()] == [5, 6, 7]
        assert {e.seq for e in store.events() if e.uplinked_at is None} == {6, 7}


def test_the_bound_holds_across_a_restart_of_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventStore(path, max_events=4) as store:
        _fill(store, [(602, 1)] * 4)
        store.mark_uplinked([e.id for e in store.events()])
    with EventStore(path, max_events=4) as store:
        _fill(store, [(120, 1)])
        assert store.count() == 4 and [e.seq for e in store.events()] == [2, 3, 4, 5]


def test_max_events_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_events: 0 is below the minimum 1"):
        EventStore(tmp_path / "events.db", max_events=0)
