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


def _service_settings(unit: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_portal_runs_apart_from_the_edge_daemon_and_cannot_see_its_secrets() -> None:
    """The portal parses anonymous phones' HTTP: another user, another state directory, the daemon's hidden."""
    edge_unit = Path(__file__).resolve().parent.parent / "edge_daemon" / "systemd" / "alarmpost-edge.service"
    portal_unit = next(unit for unit in UNITS if unit.name == "alarmpost-portal.service")
    portal, edge = _service_settings(portal_unit), _service_settings(edge_unit)
    assert portal["User"] != edge["User"] and portal["Group"] != edge["Group"]
    assert set(portal["StateDirectory"]).isdisjoint(edge["StateDirectory"])
    daemon_state = [f"/var/lib/{name}" for name in edge["StateDirectory"]]
    assert set(portal["ReadWritePaths"]).isdisjoint(daemon_state), "the portal may write the daemon's event store"
    hidden = {path.lstrip("-") for line in portal["InaccessiblePaths"] for path in line.split()}
    assert set(daemon_state) <= hidden, "the daemon's state directory is visible to the portal"
    # the daemon's secrets where its install steps put them
    installed = edge_unit.read_text()
    for secret in ("/etc/alarmpost/command.key", "mqtt.password", "video.password"):
        assert secret in installed, f"the daemon's install steps no longer name {secret}"
        assert any(path.endswith(secret.rsplit("/", 1)[-1]) for path in hidden), f"{secret} is visible to the portal"
