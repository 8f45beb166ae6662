"""Firmware modules run directly on the MicroPython unix port (tests/mpy/), and cross-checks with CPython."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from alarmpost import events as ev
from hw_sim.paths import ROOT
from tools.build import build

from .conftest import require

MPY_TESTS = sorted((Path(__file__).parent / "mpy").glob("test_*.py"))
VECTORS = json.loads((Path(__file__).parent / "vectors" / "event_records.json").read_text())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware compiled by mpy-cross, as a board loads it (a board does not compile its modules)."""
    require("mpy-cross")
    out = tmp_path_factory.mktemp("firmware")
    build("sim", out)
    return out


@pytest.mark.parametrize("script", MPY_TESTS, ids=[p.stem for p in MPY_TESTS])
def test_on_the_unix_port(script: Path, tmp_path: Path, compiled: Path) -> None:
    micropython = require("micropython")
    result = subprocess.run(
        [micropython, "-X", "heapsize=96K", str(script)],
        cwd=ROOT,
        env=dict(os.environ, MICROPYPATH=f".frozen:{compiled}", ALARMPOST_TMP=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "OK"


def test_record_layout_matches_its_specification() -> None:
    # seq u32, uptime u32, boot u16, code u16, qualifier u8, zone u8, value u16, then CRC-32 (little-endian)
    body = bytes.fromhex("02000000d20400000100780001010100")
    expected = body + struct.pack("<I", zlib.crc32(body))
    assert ev.Event(2, 1, 1234, ev.PANIC, ev.NEW, ev.ZONE_BUTTON, 1).pack() == expected
    assert len(expected) == ev.RECORD_SIZE


@pytest.mark.parametrize("vector", VECTORS, ids=[str(v["fields"][0]) for v in VECTORS])
def test_golden_records_on_cpython(vector: dict[str, object]) -> None:
    event = ev.Event(*vector["fields"])  # type: ignore[misc]
    assert event.pack().hex() == vector["record"]
    assert ev.Event.unpack(bytes.fromhex(str(vector["record"]))) == event
