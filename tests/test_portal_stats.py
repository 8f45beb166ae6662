"""The gate WiFi's statistics: counts per period, acknowledged publishing, restarts, and no personal data."""

from __future__ import annotations

import doctest
import hashlib
import json
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from captive_portal import stats as stats_module
from captive_portal.stats import Stats, StatsError

DAY = 1_795_910_400.0  # 2026-11-29T00:00:00Z
MACS = [f"02:ab:cd:00:00:{n:02x}" for n in range(1, 6)]
SNAPSHOT_KEYS = {"time", "period_s", "joins", "acceptances", "impressions", "active_sessions", "content_version"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = DAY + 8 * 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_doctests() -> None:
    assert doctest.testmod(stats_module).failed == 0


def test_snapshot_matches_the_schema(tmp_path: Path) -> None:
    clock = Clock(DAY)
    stats = Stats(tmp_path / "stats.json", clock=clock)
    stats.active_sessions, stats.content_version = 7, 3
    stats.impression("crossing-safely")
    snapshot = stats.snapshot(DAY + 8 * 3600 + 0.0125)
    assert snapshot == {
        "time": "2026-11-29T08:00:00.012Z",
        "period_s": 8 * 3600,
        "joins": 0,
        "acceptances": 0,
        "impressions": {"crossing-safely": 1},
        "active_sessions": 7,
        "content_version": 3,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", snapshot["time"])
    assert all(type(snapshot[key]) is int for key in SNAPSHOT_KEYS - {"time", "impressions"})


def test_devices_are_counted_once_a_day(tmp_path: Path) -> None:
    clock = Clock()
    stats = Stats(None, clock=clock)
    for mac in [*MACS, *MACS, MACS[0].upper()]:
        stats.joined(mac)
    stats.accepted(MACS[0])
    stats.accepted(MACS[0])
    stats.accepted(MACS[1])
    for _ in range(3):
        stats.impression("crossing-safely")
    stats.impression("after-school")
    snapshot = stats.snapshot()
    assert (snapshot["joins"], snapshot["acceptances"]) == (5, 2)
    assert snapshot["impressions"] == {"after-school": 1, "crossing-safely": 3}


def test_a_new_utc_day_counts_every_device_again() -> None:
    clock = Clock(DAY + 86400 - 1)  # 23:59:59Z
    stats = Stats(None, clock=clock)
    stats.joined(MACS[0])
    clock.now += 1  # midnight UTC
    stats.joined(MACS[0])
    stats.joined(MACS[0])
    assert stats.snapshot()["joins"] == 2


def test_the_day_may_start_at_midnight_in_china() -> None:
    clock = Clock(DAY + 15 * 3600)  # 23:00 in China
    stats = Stats(None, clock=clock, day_offset_h=8)
    stats.joined(MACS[0])
    clock.now += 2 * 3600  # 01:00 in China, still the same UTC day
    stats.joined(MACS[0])
    clock.now += 8 * 3600  # 09:00 in China, a new UTC day but not a new day in China
    stats.joined(MACS[0])
    assert stats.snapshot()["joins"] == 2
    with pytest.raises(ValueError, match="day_offset_h: 15 is not a UTC offset"):
        Stats(None, day_offset_h=15)


def test_malformed_input_is_refused_and_not_counted() -> None:
    stats = Stats(None, clock=Clock())
    for mac in ("02:ab:cd:00:00", "ff:ff:ff:ff:ff:ff", "nonsense"):
        with pytest.raises(ValueError, match="mac: "):
            stats.joined(mac)
        with pytest.raises(ValueError, match="mac: "):
            stats.accepted(mac)
    for item in ("", "-leading-dash", "Upper", "under_score", "a" * 65, "crossing-safely\n", "crossing:safely"):
        with pytest.raises(ValueError, match="is not a content item id"):
            stats.impression(item)
    stats.impression("a" * 64)
    snapshot = stats.snapshot()
    assert (snapshot["joins"], snapshot["acceptances"], snapshot["impressions"]) == (0, 0, {"a" * 64: 1})


def test_distinct_items_per_period_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    stats = Stats(None, clock=Clock())
    for n in range(Stats.max_items + 10):
        stats.impression(f"item-{n}")
    stats.impression("item-0")  # one already counted still counts
    snapshot = stats.snapshot()
    assert len(snapshot["impressions"]) == Stats.max_items
    assert snapshot["impressions"]["item-0"] == 2 and "item-200" not in snapshot["impressions"]
    assert len([r for r in caplog.records if "content items in one period" in r.message]) == 1
    assert stats.mark_published(snapshot)
    stats.impression("item-300")  # a new period has room again
    assert stats.snapshot()["impressions"] == {"item-300": 1}


def test_publish_takes_off_only_what_the_snapshot_carried() -> None:
    clock = Clock()
    stats = Stats(None, clock=clock)
    stats.joined(MACS[0])
    stats.impression("crossing-safely")
    first = stats.snapshot(clock.now + 300)
    stats.joined(MACS[1])  # between the snapshot and its PUBACK
    stats.impression("crossing-safely")
    assert stats.mark_published(first)
    second = stats.snapshot(clock.now + 600)
    assert (second["joins"], second["impressions"], second["period_s"]) == (1, {"crossing-safely": 1}, 300)
    assert stats.mark_published(second)
    third = stats.snapshot(clock.now + 900)
    assert (third["joins"], third["impressions"], third["period_s"]) == (0, {}, 300)


def test_a_failed_publish_loses_nothing_and_counts_nothing_twice() -> None:
    clock = Clock()
    stats = Stats(None, clock=clock)
    stats.impression("crossing-safely")
    lost = stats.snapshot(clock.now + 300)  # never acknowledged
    stats.impression("crossing-safely")
    stats.joined(MACS[0])
    retry = stats.snapshot(clock.now + 600)
    assert (retry["impressions"], retry["joins"], retry["period_s"]) == ({"crossing-safely": 2}, 1, 600)
    assert stats.mark_published(retry)
    assert not stats.mark_published(lost)  # a late PUBACK of the older one: its counts went with the retry
    assert not stats.mark_published(retry)  # a repeated PUBACK
    assert not stats.mark_published({"time": "2026-11-29T09:00:00.000Z"})  # never handed out
    after = stats.snapshot(clock.now + 900)
    assert (after["impressions"], after["joins"], after["period_s"]) == ({}, 0, 300)


def test_acknowledgements_out_of_order() -> None:
    clock = Clock()
    stats = Stats(None, clock=clock)
    stats.impression("a")
    older = stats.snapshot(clock.now + 1)
    stats.impression("a")
    newer = stats.snapshot(clock.now + 2)
    stats.impression("a")
    assert stats.mark_published(older)  # the older PUBACK first: the newer one still carries one more
    assert stats.mark_published(newer)
    assert stats.snapshot(clock.now + 3)["impressions"] == {"a": 1}


def test_snapshots_taken_in_the_same_millisecond_are_told_apart() -> None:
    stats = Stats(None, clock=Clock())
    stats.impression("a")
    first = stats.snapshot(DAY)
    stats.impression("a")
    second = stats.snapshot(DAY)
    assert (first["time"], second["time"]) == ("2026-11-29T00:00:00.000Z", "2026-11-29T00:00:00.001Z")
    assert stats.mark_published(first)
    assert stats.snapshot(DAY + 1)["impressions"] == {"a": 1}


def test_a_restart_keeps_unpublished_counts_and_not_published_ones(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    clock = Clock()
    stats = Stats(path, clock=clock)
    stats.impression("crossing-safely")
    stats.joined(MACS[0])
    published = stats.snapshot(clock.now + 300)
    assert stats.mark_published(published)
    stats.impression("after-school")
    stats.accepted(MACS[0])
    unacknowledged = stats.snapshot(clock.now + 600)
    stats.impression("after-school")  # after the last snapshot: written by close()
    stats.close()

    again = Stats(path, clock=clock)
    snapshot = again.snapshot(clock.now + 900)
    assert snapshot["impressions"] == {"after-school": 2}
    assert (snapshot["joins"], snapshot["acceptances"], snapshot["period_s"]) == (0, 1, 600)
    assert not again.mark_published(unacknowledged)  # handed out before the restart: unknown now


def test_a_crash_loses_at_most_the_counts_since_the_last_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    clock = Clock()
    stats = Stats(path, clock=clock)
    stats.impression("a")
    assert stats.mark_published(stats.snapshot(clock.now + 300))
    stats.impression("b")
    stats.snapshot(clock.now + 600)
    stats.impression("c")
    del stats  # no close(): a power cut
    assert Stats(path, clock=clock).snapshot(clock.now + 900)["impressions"] == {"b": 1}


def test_a_restart_within_the_day_may_count_a_device_again(tmp_path: Path) -> None:
    clock = Clock()
    stats = Stats(tmp_path / "stats.json", clock=clock)
    stats.joined(MACS[0])
    stats.close()
    again = Stats(tmp_path / "stats.json", clock=clock)
    again.joined(MACS[0])  # the day's key died with the process: the device looks new
    assert again.snapshot()["joins"] == 2


def test_the_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "new" / "stats.json"
    stats = Stats(path, clock=Clock())
    stats.impression("a")
    stats.flush()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["stats.json"]  # no temporary left behind
    assert json.loads(path.read_text())["impressions"] == {"a": 1}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"format": 2}',
        b'{"format": 1, "period_start_ms": 0, "joins": -1, "acceptances": 0, "impressions": {}}',
        b'{"format": 1, "period_start_ms": 0, "joins": 0, "acceptances": 0, "impressions": {"Bad Id": 1}}',
        b'{"format": 1, "joins": 0, "acceptances": 0, "impressions": {}}',
    ],
)
def test_an_unreadable_file_is_named_in_the_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "stats.json"
    path.write_bytes(content)
    with pytest.raises(StatsError, match=f"^{path}: not a statistics file"):
        Stats(path)


def test_a_file_that_cannot_be_written_does_not_stop_the_counting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "stats.json"
    stats = Stats(path, clock=Clock())
    path.mkdir()  # a folder where the file should be: it cannot be replaced
    stats.impression("a")
    assert stats.snapshot()["impressions"] == {"a": 1}
    assert f"{path}: cannot write the statistics" in caplog.text


def test_counting_and_acknowledging_from_two_threads_loses_nothing() -> None:
    stats = Stats(None, clock=Clock())
    per_thread, threads_counting = 2000, 3
    delivered: list[int] = []

    def count() -> None:
        for _ in range(per_thread):
            stats.impression("a")

    def publish() -> None:  # the MQTT thread: snapshot, then PUBACK (or not, every third time)
        for n in range(300):
            snapshot = stats.snapshot()
            if n % 3 and stats.mark_published(snapshot):
                delivered.append(snapshot["impressions"].get("a", 0))

    threads = [threading.Thread(target=count) for _ in range(threads_counting)] + [threading.Thread(target=publish)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    remaining = stats.snapshot()["impressions"].get("a", 0)
    assert sum(delivered) + remaining == per_thread * threads_counting


# -- privacy --------------------------------------------------------------------------------


def forms_of(value: str) -> list[bytes]:
    """The ways a MAC or an address could show up in a file: as text, as bytes, or hashed."""
    text = value.encode()
    forms = [text, text.upper(), text.replace(b":", b""), text.replace(b":", b"-")]
    if value.count(":") == 5:
        forms.append(bytes.fromhex(value.replace(":", "")))
    for name in ("md5", "sha1", "sha256", "sha512"):
        digest = hashlib.new(name, text)
        forms += [digest.hexdigest().encode(), digest.digest()]
    return forms


def test_no_mac_address_or_hash_of_one_is_stored_or_published(tmp_path: Path) -> None:
    clock = Clock()
    folder = tmp_path / "stats"
    stats = Stats(folder / "stats.json", clock=clock)
    published: list[dict[str, Any]] = []
    for n, mac in enumerate(MACS):
        stats.joined(mac)
        stats.accepted(mac)
        stats.impression("crossing-safely")
        snapshot = stats.snapshot(clock.now + n)
        published.append(snapshot)
        if n % 2:
            stats.mark_published(snapshot)
    stats.close()
    digests = [d for seen in stats._devices._seen.values() for d in seen]  # the day's keyed digests
    assert len(digests) == 2 * len(MACS)
    stored = b"".join(p.read_bytes() for p in folder.iterdir())
    sent = json.dumps(published).encode()
    for blob in (stored, sent):
        for mac in MACS:
            for form in forms_of(mac):
                assert form not in blob, (mac, form)
        for digest in digests:
            assert digest not in blob and digest.hex().encode() not in blob
        assert not re.search(rb"[0-9a-fA-F]{16}", blob)  # nothing that looks like a hash at all
    assert set(json.loads(stored)) == {"format", "period_start_ms", "joins", "acceptances", "impressions"}
    assert all(set(s) == SNAPSHOT_KEYS for s in published)


def test_the_day_key_is_dropped_at_the_day_change() -> None:
    clock = Clock()
    stats = Stats(None, clock=clock)
    stats.joined(MACS[0])
    key = stats._devices._key
    clock.now += 86400
    stats.joined(MACS[1])
    assert stats._devices._key != key and len(stats._devices._key) == 32
    assert sum(len(seen) for seen in stats._devices._seen.values()) == 1  # yesterday's digests are gone
