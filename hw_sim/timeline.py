"""The bench's timeline: every input and output change, with the host time it happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    t: float  # host time.monotonic() seconds
    device: str
    on: bool
    level: float = 1.0  # PWM duty 0..1, or volts for the supply
    freq: int | None = None


class Timeline:
    """Thread-safe, append-only list of changes with the queries tests need."""

    def __init__(self) -> None:
        self._changes: list[Change] = []
        self._current: dict[str, bool] = {}
        self._lock = threading.Lock()

    def add(self, device: str, on: bool, level: float = 1.0, freq: int | None = None, at: float | None = None) -> None:
        change = Change(time.monotonic() if at is None else at, device, on, level, freq)
        with self._lock:
            self._changes.append(change)
            self._current[device] = on

    def __iter__(self) -> Iterator[Change]:
        with self._lock:
            return iter(list(self._changes))

    def __len__(self) -> int:
        return len(self._changes)

    def since(self, index: int) -> list[Change]:
        """The changes recorded after the first ``index`` ones (for followers such as a display)."""
        with self._lock:
            return self._changes[index:]

    def changes(self, device: str | None = None, after: float = 0.0) -> list[Change]:
        return [c for c in self if (device is None or c.device == device) and c.t >= after]

    def current(self, device: str) -> bool:
        return self._current.get(device, False)

    def first(self, device: str, on: bool, after: float = 0.0) -> float | None:
        """When ``device`` first turned on (or off) at or after ``after``, or None."""
        with self._lock:
            start = len(self._changes)
            # changes arrive from several threads, so allow a little disorder
            while start > 0 and self._changes[start - 1].t >= after - 0.5:
                start -= 1
            hits = [c.t for c in self._changes[start:] if c.device == device and c.on == on and c.t >= after]
        return min(hits) if hits else None

    def on_at(self, device: str, t: float) -> bool:
        """Whether ``device`` was on at time ``t``."""
        state = False
        for c in self.changes(device):
            if c.t > t:
                break
            state = c.on
        return state

    def on_since(self, device: str, t: float) -> float | None:
        """``t`` if ``device`` was already on then, else when it first turned on after ``t``."""
        return t if self.on_at(device, t) else self.first(device, True, after=t)
