"""The gate WiFi's access log: real SQLite files, explicit times, a crash simulated by dropping the object."""

from __future__ import annotations

import csv
import doctest
import io
import json
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from captive_portal import accesslog as accesslog_module
from captive_portal.accesslog import (
    DAY_S,
    EXPORT_FIELDS,
    SCHEMA_VERSION,
    AccessLog,
    AccessLogError,
    Session,
    main,
    next_purge_delay,
    parse_time,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_793_491_200.0  # 2026-11-01T00:00:00Z
MAC_A, MAC_B = "02:ab:cd:00:00:01", "02:ab:cd:00:00:02"


def open_log(path: Path, retention_days: int = 60) -> AccessLog:
    return AccessLog(path, retention_days, post="gate-north")


def stored(log: AccessLog, session_id: int) -> Session:
    session = log.get(session_id)
    assert session is not None
    return session


def rows(path: Path) -> list[tuple[object, ...]]:
    """Every row as stored, read with a connection of its own."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT id, post, logon, logoff, mac, ip, end_reason FROM sessions ORDER BY id").fetchall()
    finally:
        db.close()


def test_doctests() -> None:
    assert doctest.testmod(accesslog_module).failed == 0


def test_log_on_and_off_round_trip(tmp_path: Path) -> None:
    with open_log(tmp_path / "access.db") as log:
        session = log.log_on("02:AB:CD:00:00:01", "10.73.0.23", at=T0)
        assert log.open_sessions() == [Session(session, "gate-north", T0, None, MAC_A, "10.73.0.23", None)]
        log.log_off(session, at=T0 + 1800, reason="revoked")
        assert log.open_sessions() == []
        assert log.get(session) == Session(session, "gate-north", T0, T0 + 1800, MAC_A, "10.73.0.23", "revoked")
    assert rows(tmp_path / "access.db") == [(session, "gate-north", T0, T0 + 1800, MAC_A, "10.73.0.23", "revoked")]


def test_log_off_is_idempotent_and_never_before_log_on(tmp_path: Path) -> None:
    with open_log(tmp_path / "access.db") as log:
        first = log.log_on(MAC_A, "10.73.0.23", at=T0)
        log.log_off(first, at=T0 + 60)
        log.log_off(first, at=T0 + 999, reason="revoked")  # already closed: nothing changes
        log.log_off(12345, at=T0)  # unknown: nothing changes
        second = log.log_on(MAC_B, "10.73.0.24", at=T0 + 100)
        log.log_off(second, at=T0 + 50)  # a clock set back
        assert (stored(log, first).logoff, stored(log, first).end_reason) == (T0 + 60, "timeout")
        assert stored(log, second).logoff == T0 + 100
        assert second > first


@pytest.mark.parametrize(
    ("mac", "ip", "problem"),
    [
        ("02:ab:cd:00:00", "10.73.0.23", "mac: '02:ab:cd:00:00' is not a MAC address"),
        ("02-ab-cd-00-00-01", "10.73.0.23", "is not a MAC address"),
        ("01:00:5e:00:00:01", "10.73.0.23", "mac: '01:00:5e:00:00:01' is not a unicast MAC address"),
        ("ff:ff:ff:ff:ff:ff", "10.73.0.23", "is not a unicast MAC address"),
        ("00:00:00:00:00:00", "10.73.0.23", "is not a unicast MAC address"),
        (MAC_A, "10.73.0", "ip: '10.73.0' is not an IPv4 address"),
        (MAC_A, "fe80::1", "is not an IPv4 address"),
        (MAC_A, "10.73.0.023", "is not an IPv4 address"),
        (MAC_A, "10.73.0.23\n", "is not an IPv4 address"),
    ],
)
def test_malformed_mac_or_ip_is_refused_and_nothing_written(tmp_path: Path, mac: str, ip: str, problem: str) -> None:
    with open_log(tmp_path / "access.db") as log, pytest.raises(ValueError, match=problem):
        log.log_on(mac, ip, at=T0)
    assert rows(tmp_path / "access.db") == []


@pytest.mark.parametrize("at", [float("nan"), float("inf"), -1.0])
def test_a_time_that_is_not_a_unix_time_is_refused(tmp_path: Path, at: float) -> None:
    with open_log(tmp_path / "access.db") as log, pytest.raises(ValueError, match="at: .* is not a unix time"):
        log.log_on(MAC_A, "10.73.0.23", at=at)
    assert rows(tmp_path / "access.db") == []


def test_an_unknown_end_reason_is_refused(tmp_path: Path) -> None:
    with open_log(tmp_path / "access.db") as log:
        session = log.log_on(MAC_A, "10.73.0.23", at=T0)
        with pytest.raises(ValueError, match="reason: 'crashed' is not one of timeout, revoked, restart"):
            log.log_off(session, reason="crashed")
        assert stored(log, session).logoff is None


def test_a_log_without_a_post_id_cannot_log_on(tmp_path: Path) -> None:
    with AccessLog(tmp_path / "access.db") as log, pytest.raises(RuntimeError, match="without a post id"):
        log.log_on(MAC_A, "10.73.0.23")
    with pytest.raises(ValueError, match="is not a post id"):
        AccessLog(tmp_path / "access.db", post="gate north")


@pytest.mark.parametrize("days", [0, 30, 59])
def test_retention_below_60_days_is_refused(tmp_path: Path, days: int) -> None:
    with pytest.raises(ValueError, match="^MPS Order No. 82 requires at least 60 days$"):
        AccessLog(tmp_path / "access.db", days, post="gate-north")
    assert not (tmp_path / "access.db").exists()


def test_purge_deletes_only_closed_sessions_past_retention(tmp_path: Path) -> None:
    now = T0 + 100 * DAY_S
    with open_log(tmp_path / "access.db") as log:
        old = log.log_on(MAC_A, "10.73.0.23", at=T0)
        log.log_off(old, at=now - 60 * DAY_S - 1)  # 60 days and a second ago: deleted
        boundary = log.log_on(MAC_A, "10.73.0.23", at=T0)
        log.log_off(boundary, at=now - 60 * DAY_S)  # exactly 60 days ago: kept
        recent = log.log_on(MAC_B, "10.73.0.24", at=now - DAY_S)
        log.log_off(recent, at=now - DAY_S + 600)
        still_open = log.log_on(MAC_B, "10.73.0.25", at=T0)  # logged on 100 days ago, never off
        assert log.purge(now=now) == 1
        assert log.purge(now=now) == 0
        assert [row[0] for row in rows(tmp_path / "access.db")] == [boundary, recent, still_open]


def test_purge_follows_a_longer_retention(tmp_path: Path) -> None:
    now = T0 + 200 * DAY_S
    with open_log(tmp_path / "access.db", retention_days=90) as log:
        session = log.log_on(MAC_A, "10.73.0.23", at=T0)
        log.log_off(session, at=now - 80 * DAY_S)
        assert log.purge(now=now) == 0
        assert log.purge(now=now + 11 * DAY_S) == 1


def test_purged_records_leave_the_files(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    now = T0 + 100 * DAY_S
    with open_log(path) as log:
        for n in range(50):
            session = log.log_on(f"02:ab:cd:00:01:{n:02x}", f"10.73.1.{n + 1}", at=T0 + n)
            log.log_off(session, at=T0 + n + 60)
        kept = log.log_on(MAC_B, "10.73.0.99", at=now)
        assert log.purge(now=now) == 50
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        assert b"02:ab:cd:00:01:" not in on_disk and b"10.73.1." not in on_disk
        assert MAC_B.encode() in on_disk
        assert [s.id for s in log.open_sessions()] == [kept]


def test_close_all_after_a_crash_closes_sessions_at_the_restart(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    crashed = open_log(path)
    first = crashed.log_on(MAC_A, "10.73.0.23", at=T0)
    closed = crashed.log_on(MAC_B, "10.73.0.24", at=T0 + 10)
    crashed.log_off(closed, at=T0 + 20)
    del crashed  # dropped without close(): what a power cut leaves
    with open_log(path) as log:
        assert [s.id for s in log.open_sessions()] == [first]
        assert log.close_all(at=T0 + 3600) == 1
        assert log.close_all(at=T0 + 7200) == 0
        assert log.get(first) == Session(first, "gate-north", T0, T0 + 3600, MAC_A, "10.73.0.23", "restart")
        assert stored(log, closed).end_reason == "timeout"


def test_a_killed_writer_leaves_every_committed_log_on(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from captive_portal.accesslog import AccessLog\n"
        "log = AccessLog(Path(sys.argv[1]), post='gate-north')\n"
        "for n in range(20):\n"
        "    log.log_on(f'02:ab:cd:00:00:{n:02x}', '10.73.0.23', at=1.0e9 + n)\n"
        "os._exit(9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, timeout=60)
    assert result.returncode == 9
    with open_log(path) as log:
        assert len(log.open_sessions()) == 20


def test_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "access.db"
    with open_log(path) as log:
        log.log_on(MAC_A, "10.73.0.23", at=T0)
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for file in path.parent.iterdir():  # the database, its WAL and shared memory
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
        assert {f.name for f in path.parent.iterdir()} >= {"access.db", "access.db-wal"}


def test_schema_version_and_durability_settings(tmp_path: Path) -> None:
    with open_log(tmp_path / "access.db") as log:
        db = log._db
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_a_file_that_is_not_an_access_log_is_named_in_the_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not SQLite at all" * 200)
    with pytest.raises(AccessLogError, match=f"^{garbage}: not a usable access log"):
        AccessLog(garbage)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE something (x)").connection.close()
    with pytest.raises(AccessLogError, match=f"^{other}: an SQLite database of something else"):
        AccessLog(other)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    open_log(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(AccessLogError, match="schema version 2 is newer than this portal knows"):
        AccessLog(path)


def test_an_unopenable_file_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "access.db"
    path.mkdir()  # a folder where the file should be: unopenable even for root
    with pytest.raises(AccessLogError, match=f"^{path}: "):
        AccessLog(path)


def test_one_log_is_shared_between_threads(tmp_path: Path) -> None:
    with open_log(tmp_path / "access.db") as log:

        def log_on_many(first: int) -> None:
            for n in range(first, first + 50):
                log.log_off(log.log_on(f"02:ab:cd:00:{n // 256:02x}:{n % 256:02x}", "10.73.0.23", at=T0), at=T0 + 1)

        threads = [threading.Thread(target=log_on_many, args=(i * 50,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(log.export(T0, T0 + 10)) == 200


# -- export ---------------------------------------------------------------------------------


def fill(path: Path) -> None:
    """Three sessions around 2026-11-01/02 and one still open."""
    with open_log(path) as log:
        a = log.log_on(MAC_A, "10.73.0.23", at=T0 - 3600)  # 2026-10-31T23:00Z, across midnight
        log.log_off(a, at=T0 + 1800.25)
        b = log.log_on(MAC_B, "10.73.0.24", at=T0 + DAY_S + 7200)  # 2026-11-02T02:00Z
        log.log_off(b, at=T0 + DAY_S + 9000, reason="revoked")
        c = log.log_on(MAC_A, "10.73.0.25", at=T0 - 7 * DAY_S)  # a week before, over by then
        log.log_off(c, at=T0 - 7 * DAY_S + 60)
        log.log_on("02:ab:cd:00:00:03", "10.73.0.26", at=T0 + 2 * DAY_S)  # 2026-11-03, open


def test_export_gives_the_sessions_overlapping_the_period(tmp_path: Path) -> None:
    fill(tmp_path / "access.db")
    with AccessLog(tmp_path / "access.db") as log:
        assert log.export(T0, T0 + DAY_S) == [
            {
                "id": 1,
                "post": "gate-north",
                "logon": "2026-10-31T23:00:00.000Z",
                "logoff": "2026-11-01T00:30:00.250Z",
                "mac": MAC_A,
                "ip": "10.73.0.23",
                "end_reason": "timeout",
            }
        ]
        assert [r["id"] for r in log.export(T0, T0 + 3 * DAY_S)] == [1, 2, 4]
        assert log.export(T0 + 3 * DAY_S, T0 + 4 * DAY_S)[0]["logoff"] is None  # open: online still
        with pytest.raises(ValueError, match="is not before until"):
            log.export(T0, T0)


def test_parse_time_reads_dates_times_and_offsets() -> None:
    assert parse_time("2026-11-01") == T0
    assert parse_time("2026-11-01", end_of_day=True) == T0 + DAY_S
    assert parse_time("2026-11-01T12:00:00Z") == T0 + 43200
    assert parse_time("2026-11-01T12:00:00Z", end_of_day=True) == T0 + 43200
    assert parse_time("2026-11-01T08:00+08:00") == T0


def test_cli_export_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "access.db")
    assert main(["--db", str(tmp_path / "access.db"), "export", "--since", "2026-11-01", "--until", "2026-11-02"]) == 0
    out, err = capsys.readouterr()
    lines = list(csv.DictReader(io.StringIO(out)))
    assert tuple(lines[0]) == EXPORT_FIELDS
    assert [(r["id"], r["mac"], r["logoff"], r["end_reason"]) for r in lines] == [
        ("1", MAC_A, "2026-11-01T00:30:00.250Z", "timeout"),
        ("2", MAC_B, "2026-11-02T02:30:00.000Z", "revoked"),
    ]
    assert "2 sessions from 2026-11-01T00:00:00.000Z to 2026-11-03T00:00:00.000Z" in err


def test_cli_export_json_to_a_new_private_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "access.db")
    out = tmp_path / "request.json"
    argv = ["--db", str(tmp_path / "access.db"), "export", "--since", "2026-11-03", "--format", "json"]
    assert main([*argv, "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text()) == [
        {
            "id": 4,
            "post": "gate-north",
            "logon": "2026-11-03T00:00:00.000Z",
            "logoff": None,
            "mac": "02:ab:cd:00:00:03",
            "ip": "10.73.0.26",
            "end_reason": None,
        }
    ]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert main([*argv, "--output", str(out)]) == 1  # never overwrites
    assert "File exists" in capsys.readouterr().err


def test_cli_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_ago, lately = time.time() - 61 * DAY_S, time.time() - 59 * DAY_S
    with open_log(tmp_path / "access.db") as log:
        log.log_off(log.log_on(MAC_A, "10.73.0.23", at=long_ago), at=long_ago + 60)
        recent = log.log_on(MAC_A, "10.73.0.23", at=lately)
        log.log_off(recent, at=lately + 60)
        still_open = log.log_on(MAC_B, "10.73.0.24", at=long_ago)
    assert main(["--db", str(tmp_path / "access.db"), "purge", "--retention-days", "60"]) == 0
    assert "deleted 1 sessions logged off more than 60 days ago" in capsys.readouterr().out
    assert [row[0] for row in rows(tmp_path / "access.db")] == [recent, still_open]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "--since", "yesterday"], "'yesterday' is not an ISO 8601 date"),
        (["export", "--since", "2026-11-02", "--until", "2026-11-01"], "--since 2026-11-02 is not before"),
        (["export"], "the following arguments are required: --since"),
        (["export", "--since", "2026-11-01", "--format", "xml"], "invalid choice"),
        (["purge", "--retention-days", "30"], "MPS Order No. 82 requires at least 60 days"),
    ],
)
def test_cli_wrong_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    fill(tmp_path / "access.db")
    with pytest.raises(SystemExit) as exit_:
        main(["--db", str(tmp_path / "access.db"), *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_a_missing_or_damaged_log_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.db"
    assert main(["--db", str(missing), "purge", "--retention-days", "60"]) == 1
    assert f"{missing}: no such access log" in capsys.readouterr().err
    assert not missing.exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert main(["--db", str(garbage), "export", "--since", "2026-11-01"]) == 1
    assert f"{garbage}: not a usable access log" in capsys.readouterr().err


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    fill(tmp_path / "access.db")
    argv = ["--db", str(tmp_path / "access.db"), "export", "--since", "2026-11-01T00:00Z", "--until", "2026-11-01"]
    command = [sys.executable, "-m", "captive_portal.accesslog", *argv]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("1,gate-north,2026-10-31T23:00:00.000Z,")


def test_next_purge_delay_is_daily_at_19_utc() -> None:
    assert next_purge_delay(T0) == 19 * 3600
    assert next_purge_delay(T0 + 19 * 3600 - 0.5) == 0.5
    assert next_purge_delay(T0 + 19 * 3600) == DAY_S
    assert next_purge_delay(T0 + 20 * 3600) == 23 * 3600
