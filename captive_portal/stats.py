"""Statistics of the gate WiFi for the monitoring centre: counts only, no personal data.

What goes upstream
------------------
Every ``stats_interval_s`` the service publishes :meth:`Stats.snapshot`::

    {"time": "2026-11-29T08:00:00.000Z", "period_s": 300, "joins": 12, "acceptances": 9,
     "impressions": {"crossing-safely": 14}, "active_sessions": 7, "content_version": 3}

* ``joins``: devices that reached the splash page, each counted once per day;
* ``acceptances``: devices that accepted the terms, each counted once per day;
* ``impressions``: how many times the splash page showed each content item;
* ``active_sessions``: phones online now (set by the portal);
* ``content_version``: the content bundle being shown (set by the portal).

Counts are for the period since the last snapshot the centre acknowledged (``period_s``
seconds before ``time``).  No MAC address, IP address, or anything derived from one, is
stored in the file or published: only numbers and the ids of content items.

How devices are counted once a day without keeping them
-------------------------------------------------------
To count a device once per day, :meth:`Stats.joined` and :meth:`Stats.accepted` must
recognise a MAC seen earlier that day.  They keep HMAC-SHA256 digests of the MACs seen today,
under a random 32-byte key made when the day starts.  The key and the digests are held only in
memory, never written or published, and are dropped at the day change (midnight UTC, or
``day_offset_h`` hours earlier).  A plain hash would not do: the 2^46 unicast MACs can all be
tried in an hour.  A digest under a key nobody has any more cannot be linked to a device, so
once the day is over nothing remains that could tell whether a phone came back.

The price: after a restart within a day the key is new, so a device seen before the restart is
counted again that day.  ``joins`` and ``acceptances`` may over-count on days the portal
restarts, never under-count (except beyond :attr:`Stats.max_devices_per_day`, see there).

Publishing without losing or double counting
--------------------------------------------
The caller publishes a snapshot with MQTT QoS 1 and, when the broker acknowledges it (PUBACK),
calls :meth:`Stats.mark_published` with it: only then are its counts taken off the running
totals.  A snapshot that is never acknowledged leaves its counts in place, so the next
snapshot carries them again, over the longer period; counts that arrive between a snapshot
and its acknowledgement stay for the next one.  A late acknowledgement of an older snapshot,
once a newer one was acknowledged, changes nothing (the newer one carried its counts).

If a snapshot reached the centre but its acknowledgement did not reach the post, the next
snapshot repeats its counts.  Such a pair starts at the same moment (``time`` minus
``period_s``), and the later one includes the earlier, so the centre keeps the later of two
snapshots that start together.

Surviving a restart
-------------------
With a ``path`` the running totals and the start of the period are kept in a small JSON
file, written atomically (a new file, synced, renamed over the old one) on every snapshot,
every acknowledgement and on :meth:`Stats.close`.  So an acknowledged snapshot is never
counted again after a restart, and what a crash loses is at most the counts since the last
snapshot.  A file that cannot be written is logged and the counting goes on; statistics never
stop the portal.

Threads: the portal counts from its asyncio loop and the MQTT client acknowledges from its
own thread, so one lock guards the counts.

>>> clock = lambda: 1_795_910_400.0  # 2026-11-29T00:00:00Z
>>> stats = Stats(None, clock=clock)
>>> stats.joined("02:ab:cd:00:00:01"); stats.joined("02:AB:CD:00:00:01"); stats.impression("crossing-safely")
>>> snap = stats.snapshot(1_795_939_200.0)
>>> snap["time"], snap["period_s"], snap["joins"], snap["impressions"]
('2026-11-29T08:00:00.000Z', 28800, 1, {'crossing-safely': 1})
>>> stats.mark_published(snap), stats.snapshot(1_795_939_500.0)["joins"]
(True, 0)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captive_portal.accesslog import canonical_mac
from captive_portal.files import write_atomically

log = logging.getLogger("alarmpost.portal.stats")

ITEM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
DAY_S = 86400
FILE_FORMAT = 1


class StatsError(OSError):
    """The statistics file cannot be read as one; the message names the file and why."""


@dataclass
class Counts:
    """What happened in a period: devices that joined and accepted, and impressions per item."""

    joins: int = 0
    acceptances: int = 0
    impressions: Counter[str] = field(default_factory=Counter)

    def copy(self) -> Counts:
        return Counts(self.joins, self.acceptances, Counter(self.impressions))

    def subtract(self, other: Counts) -> None:
        """Take ``other`` (counts already delivered) off these; nothing goes below zero."""
        self.joins = max(0, self.joins - other.joins)
        self.acceptances = max(0, self.acceptances - other.acceptances)
        self.impressions.subtract(other.impressions)
        self.impressions = +self.impressions  # drops the items at zero

    def as_json(self) -> dict[str, Any]:
        return {
            "joins": self.joins,
            "acceptances": self.acceptances,
            "impressions": dict(sorted(self.impressions.items())),
        }


def iso_ms(ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC with milliseconds, e.g. ``2026-11-29T08:00:00.000Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def check_item_id(item_id: str) -> str:
    """``item_id`` if it is a content item id (``[a-z0-9][a-z0-9-]{0,63}``); ValueError otherwise."""
    if not isinstance(item_id, str) or not ITEM_ID.fullmatch(item_id):
        raise ValueError(f"item_id: {item_id!r} is not a content item id (a-z 0-9 -, at most 64, not starting with -)")
    return item_id


class DailyDevices:
    """The devices seen today, as keyed digests held in memory only (see the module's docstring)."""

    def __init__(self, day_offset_s: int, limit: int) -> None:
        self.day_offset_s = day_offset_s
        self.limit = limit
        self.day: int | None = None
        self._key = b""
        self._seen: dict[str, set[bytes]] = {}

    def first_today(self, kind: str, mac: str, now: float) -> bool:
        """True the first time today this (canonical) ``mac`` is seen for ``kind``."""
        self._roll_over(now)
        seen = self._seen.setdefault(kind, set())
        digest = hmac.new(self._key, mac.encode(), hashlib.sha256).digest()
        if digest in seen:
            return False
        if len(seen) < self.limit:
            seen.add(digest)
        return True

    def _roll_over(self, now: float) -> None:
        day = math.floor((now + self.day_offset_s) / DAY_S)
        if day != self.day:
            self.day = day
            self._key = secrets.token_bytes(32)  # yesterday's key is gone: its digests mean nothing
            self._seen = {}


@dataclass
class _Pending:
    """A snapshot handed out and not yet acknowledged: the counts it carried."""

    ms: int
    counts: Counts


class Stats:
    """Counts for the centre, kept in the JSON file at ``path`` (or only in memory when None).

    ``clock`` gives the time for the day of :meth:`joined` and :meth:`accepted`; the day
    changes at midnight UTC, or ``day_offset_h`` hours earlier (8: midnight in China).
    """

    max_items = 200  # distinct content items counted per period; more are dropped (and logged)
    max_devices_per_day = 100_000  # beyond this, devices are counted but not remembered
    max_pending = 16  # snapshots awaiting acknowledgement that are remembered

    def __init__(self, path: Path | None, *, clock: Callable[[], float] = time.time, day_offset_h: int = 0) -> None:
        if not -12 <= day_offset_h <= 14:
            raise ValueError(f"day_offset_h: {day_offset_h} is not a UTC offset in hours (-12 to 14)")
        self.path = None if path is None else Path(path)
        self.active_sessions = 0
        self.content_version = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._devices = DailyDevices(day_offset_h * 3600, self.max_devices_per_day)
        self._pending: list[_Pending] = []
        self._last_snapshot_ms = 0
        self._dropped_items = 0
        self._period, self._period_start_ms = self._load()

    # -- counting -------------------------------------------------------------------------

    def joined(self, mac: str) -> None:
        """A device reached the portal; counted once per day.  ValueError for a malformed MAC."""
        self._count_device("joined", canonical_mac(mac))

    def accepted(self, mac: str) -> None:
        """A device accepted the terms; counted once per day.  ValueError for a malformed MAC."""
        self._count_device("accepted", canonical_mac(mac))

    def _count_device(self, kind: str, mac: str) -> None:
        with self._lock:
            if not self._devices.first_today(kind, mac, self._clock()):
                return
            if kind == "joined":
                self._period.joins += 1
            else:
                self._period.acceptances += 1

    def impression(self, item_id: str) -> None:
        """The splash page showed content item ``item_id``.  ValueError for a malformed id."""
        check_item_id(item_id)
        with self._lock:
            impressions = self._period.impressions
            if item_id in impressions or len(impressions) < self.max_items:
                impressions[item_id] += 1
                return
            self._dropped_items += 1
            if self._dropped_items == 1:
                log.warning(
                    "more than %d content items in one period; impressions of the rest are dropped", self.max_items
                )

    # -- publishing -----------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The counts since the last acknowledged snapshot, to publish (see the module's docstring)."""
        with self._lock:
            ms = self._next_snapshot_ms(self._clock() if now is None else now)
            counts = self._period.copy()
            self._pending.append(_Pending(ms, counts))
            del self._pending[: -self.max_pending]  # an older one's counts are in the newer ones too
            self._save()
            return {
                "time": iso_ms(ms),
                "period_s": max(0, (ms - self._period_start_ms) // 1000),
                **counts.as_json(),
                "active_sessions": int(self.active_sessions),
                "content_version": int(self.content_version),
            }

    def _next_snapshot_ms(self, now: float) -> int:
        """``now`` in milliseconds, made later than the last snapshot's so that each time names one snapshot."""
        ms = max(math.floor(now * 1000), self._last_snapshot_ms + 1)
        self._last_snapshot_ms = ms
        return ms

    def mark_published(self, snapshot: Mapping[str, Any]) -> bool:
        """The centre has ``snapshot``: take its counts off; False if it was older or unknown (nothing changes)."""
        with self._lock:
            index = next((i for i, p in enumerate(self._pending) if iso_ms(p.ms) == snapshot.get("time")), None)
            if index is None:
                return False
            published = self._pending[index]
            self._period.subtract(published.counts)
            for later in self._pending[index + 1 :]:
                later.counts.subtract(published.counts)  # they carried these counts too
            self._pending = self._pending[index + 1 :]
            self._period_start_ms = published.ms
            self._dropped_items = 0
            self._save()
            return True

    # -- the file -------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the running counts to the file now."""
        with self._lock:
            self._save()

    def close(self) -> None:
        """Write the running counts, for the next start.  The object can still count afterwards."""
        self.flush()

    def _load(self) -> tuple[Counts, int]:
        if self.path is None or not self.path.exists():
            return Counts(), math.floor(self._clock() * 1000)
        try:
            data = json.loads(self.path.read_bytes())
            return _counts_from(data), _whole(data["period_start_ms"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StatsError(f"{self.path}: not a statistics file this portal can read: {exc!r}") from None

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"format": FILE_FORMAT, "period_start_ms": self._period_start_ms, **self._period.as_json()}
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700)
            write_atomically(self.path, json.dumps(data, sort_keys=True).encode() + b"\n", mode=0o600)
        except OSError as exc:
            log.error("%s: cannot write the statistics (%s); a restart may count some again", self.path, exc)


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def _counts_from(data: Any) -> Counts:
    """The counts in a file's JSON; ValueError (or KeyError, TypeError) if it is not one."""
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise ValueError(f"not format {FILE_FORMAT}")
    impressions = data["impressions"]
    if not isinstance(impressions, dict):
        raise ValueError("impressions is not an object")
    counts = Counter({check_item_id(item): _whole(n) for item, n in impressions.items()})
    return Counts(_whole(data["joins"]), _whole(data["acceptances"]), counts)
