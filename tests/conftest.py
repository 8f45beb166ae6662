"""Shared fixtures: a bench per test, and the rule for missing components.

A test that needs a component it cannot find skips on a developer laptop; with
ALARMPOST_STRICT=1 (set by CI) such a skip is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from hw_sim import netns
from hw_sim.bench import Bench
from hw_sim.camera import add_sim_backend
from hw_sim.mosquitto import Mosquitto
from hw_sim.paths import MissingTool, tool

STRICT = os.environ.get("ALARMPOST_STRICT") == "1"

collect_ignore_glob = ["mpy/*"]  # MicroPython scripts, run on the unix port by test_unix_port.py

# Short timings so the behaviour shows in seconds, not minutes.
FAST = {
    "siren_cutoff_s": 5,
    "long_press_ms": 500,
    "stuck_ms": 2000,
    "wdt_timeout_ms": 1000,
    "supply_poll_ms": 50,
    "supply_confirm_ms": 200,
    "test_pattern_s": 1,
    # No Pi answers the link in these tests: the longest link timeout keeps its
    # trouble (and trouble flashes) out of behaviour that has nothing to do with it.
    "link_timeout_ms": 30000,
}

add_sim_backend()  # the bench camera is the daemon's "sim" backend in every test (and their daemons)


def missing(why: str) -> NoReturn:
    """Skip the test for lack of a component, or fail it under ALARMPOST_STRICT=1."""
    if STRICT:
        pytest.fail(f"{why} (ALARMPOST_STRICT=1: a missing component is a failure)")
    pytest.skip(why)


def require(name: str) -> str:
    """The path of a tool the test needs; skip without it, or fail under ALARMPOST_STRICT=1."""
    try:
        return tool(name)
    except MissingTool as exc:
        missing(str(exc))


def require_netns() -> None:
    """Network namespaces and veth pairs (root and iproute2), by the same rule as :func:`require`."""
    require("ip")
    why = netns.why_unavailable()
    if why:
        missing(why)


@pytest.fixture
def make_bench(tmp_path: Any) -> Iterator[Callable[..., Bench]]:
    """Start benches with a fresh flash folder; all are stopped after the test."""
    require("micropython")
    require("mpy-cross")
    benches: list[Bench] = []

    def start(config: dict[str, Any] | str | None = None, seed: int = 1, **kwargs: Any) -> Bench:
        if config is None:
            config = dict(FAST)
        flash = kwargs.pop("flash", tmp_path / f"flash{len(benches)}")
        bench = Bench(config=config, seed=seed, flash=flash, **kwargs)
        benches.append(bench)
        bench.start()
        bench.wait_boot(1)
        return bench

    yield start
    for bench in benches:
        bench.stop()


@pytest.fixture
def bench(make_bench: Callable[..., Bench]) -> Bench:
    """A running sim board with the FAST config."""
    return make_bench()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port, anonymous clients allowed, nothing persisted."""
    require("mosquitto")
    with Mosquitto(tmp_path / "broker") as running:
        yield running
