"""The portal's systemd units pass systemd's own check, and the portal modules' examples run."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import require

UNITS = sorted((Path(__file__).resolve().parent.parent / "captive_portal" / "systemd").glob("*.service"))


def test_systemd_analyze_verifies_the_units_together(tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    require("hostapd")
    require("dnsmasq")
    assert {u.name for u in UNITS} >= {"alarmpost-portal.service", "alarmpost-portal-netconf.service"}
    copies = []
    for unit in UNITS:
        # the units name the installed venv; verify checks ExecStart is executable, so use this interpreter
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/alarmpost/.venv/bin/python ", f"{sys.executable} "))
        copies.append(str(copy))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *copies], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # warnings too: an unknown key is only a warning


@pytest.mark.parametrize(
    "name",
    [
        f"captive_portal.{m}"
        for m in ("config", "files", "firewall", "probes", "pages", "content", "accesslog", "stats", "netconf")
    ]
    + ["hw_sim.portal_sim"],
)
def test_module_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
