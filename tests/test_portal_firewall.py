"""The firewall's set of accepted phones, through libnftables, in a network namespace of its own.

libnftables works in the network namespace of the process that calls it, so each scenario
runs as a short Python program inside a fresh namespace and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from hw_sim.netns import ip

from .conftest import require, require_netns

PRELUDE = """
import ipaddress, json, time
from captive_portal import netconf
from captive_portal.config import parse_config
from captive_portal.firewall import Client, Firewall, FirewallError
config = parse_config("")
fw = Firewall(config.network)
fw.load(netconf.render_nft(config))
phone = Client.parse("10.73.0.23", "02:00:00:00:00:01", fw.network)
seen = {}
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    require_netns()
    require("nft")
    name = f"apfw-{secrets.token_hex(3)}"
    ip("netns", "add", name)
    yield name
    ip("netns", "del", name, check=False)


def run_in(namespace: str, scenario: str) -> dict[str, Any]:
    program = PRELUDE + textwrap.dedent(scenario) + "\nprint(json.dumps(seen))\n"
    done = subprocess.run(
        [require("ip"), "netns", "exec", namespace, sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def nft_list(namespace: str) -> str:
    return subprocess.run(
        [
            require("ip"),
            "netns",
            "exec",
            namespace,
            require("nft"),
            "list",
            "set",
            "inet",
            "alarmpost_portal",
            "allowed",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_a_session_is_an_element_with_its_own_timeout(namespace: str) -> None:
    seen = run_in(
        namespace,
        """
        seen["before"] = fw.remaining(phone)
        fw.allow(phone, 600)
        seen["copy"] = fw.remaining(phone)
        seen["kernel"] = fw.kernel_remaining(phone)
        fw.allow(phone, 1200)  # extending replaces the element
        seen["extended"] = fw.kernel_remaining(phone)
        seen["sessions"] = {str(c.ip): left for c, left in fw.sessions().items()}
        """,
    )
    assert seen["before"] is None
    assert seen["copy"] == 600 and 598 <= seen["kernel"] <= 600
    assert 1198 <= seen["extended"] <= 1200
    assert list(seen["sessions"]) == ["10.73.0.23"]
    assert "10.73.0.23 . 02:00:00:00:00:01" in nft_list(namespace)


def test_the_kernel_ends_a_session_and_the_copy_follows(namespace: str) -> None:
    seen = run_in(
        namespace,
        """
        fw.allow(phone, 1)
        deadline = time.monotonic() + 10
        while fw.sessions() and time.monotonic() < deadline:
            time.sleep(0.1)
        seen["left"] = {str(c.ip): s for c, s in fw.sessions().items()}
        seen["remaining"] = fw.remaining(phone)
        """,
    )
    assert seen == {"left": {}, "remaining": None}
    assert "10.73.0.23" not in nft_list(namespace)


def test_a_session_deleted_by_hand_leaves_the_copy_at_the_next_sweep(namespace: str) -> None:
    seen = run_in(
        namespace,
        """
        import subprocess
        fw.allow(phone, 600)
        subprocess.run([NFT, "delete", "element", "inet", "alarmpost_portal", "allowed",
                        "{ 10.73.0.23 . 02:00:00:00:00:01 }"], check=True)
        fw.sessions()
        seen["remaining"] = fw.remaining(phone)
        seen["revoked"] = fw.revoke(phone)
        """.replace("NFT", repr(require("nft"))),
    )
    assert seen == {"remaining": None, "revoked": False}


def test_bad_addresses_never_reach_nftables(namespace: str) -> None:
    seen = run_in(
        namespace,
        """
        bad = []
        for ip_, mac in [("10.73.0.23; flush ruleset", "02:00:00:00:00:01"), ("8.8.8.8", "02:00:00:00:00:01"),
                         ("10.73.0.23", "02:00:00:00:00:01 } ; flush ruleset"), ("10.73.0.23", "01:00:5e:00:00:01"),
                         ("10.73.0.0", "02:00:00:00:00:01"), ("10.73.0.23", "")]:
            try:
                Client.parse(ip_, mac, fw.network)
            except ValueError as exc:
                bad.append(str(exc))
        forged = Client(ipaddress.IPv4Address("10.73.0.23"), "02:00:00:00:00:01 } ; flush ruleset")
        try:
            fw.allow(forged, 60)
        except ValueError as exc:
            bad.append(str(exc))
        seen["refused"] = bad
        seen["sessions"] = len(fw.sessions())
        """,
    )
    assert len(seen["refused"]) == 7
    assert "is not a host on the gate network" in seen["refused"][1]
    assert "is not a unicast MAC address" in seen["refused"][3]
    assert seen["sessions"] == 0
    assert "table inet alarmpost_portal" in nft_list(namespace)  # nothing was flushed
