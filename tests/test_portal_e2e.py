"""The gate WiFi end to end, in network namespaces: phone → gateway (portal, dnsmasq ×2, nftables) → internet.

Everything is the real thing: busybox's DHCP client on the phone, the generated dnsmasq
configs and nftables ruleset on the gateway, the portal as ``python -m captive_portal``,
a web server and DNS standing in for the internet, mosquitto as the centre's broker, and
headless Chromium with a phone's screen for the browser test.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from captive_portal import netconf
from captive_portal.config import Config, load_config
from captive_portal.content import generate_keypair
from hw_sim.gatenet import GATEWAY_LAN, GATEWAY_WAN, INTERNET_WAN, WAN_HOST, WAN_HOST_PORT, WEB_SERVER, GateNetwork
from hw_sim.mosquitto import Mosquitto

from .conftest import require, require_netns

SESSION_S = 6
SITE, POST = "school-12", "gate-north"
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "test-artifacts"


class Gate:
    """The running gate WiFi and its phone."""

    def __init__(self, net: GateNetwork, folder: Path, config: Config, broker: Mosquitto, centre_key: Path) -> None:
        self.net = net
        self.folder = folder
        self.config = config
        self.broker = broker
        self.centre_key = centre_key
        self.portal_log = folder / "portal.log"

    def nft(self, *args: str) -> str:
        done = self.net.run(self.net.gateway, require("nft"), *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def end_sessions(self) -> None:
        self.nft("flush", "set", "inet", "alarmpost_portal", "allowed")

    def wait_log(self, pattern: str, after: int = 0, timeout: float = 15.0) -> str:
        """The first portal log line matching ``pattern`` written after byte ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.portal_log.read_text(errors="replace")[after:])
            if found:
                return found.group(0)
            time.sleep(0.05)
        raise AssertionError(f"the portal never logged {pattern!r}:\n{self.portal_log.read_text()[-3000:]}")

    def log_size(self) -> int:
        return self.portal_log.stat().st_size

    def publish_content(self, bundle: dict[str, Any], key: Path) -> None:
        """The centre signs ``bundle`` with ``key`` and publishes it, retained, from the internet side."""
        path = self.folder / f"bundle-{bundle['version']}.json"
        path.write_text(json.dumps(bundle, ensure_ascii=False))
        done = self.net.run(
            self.net.internet,
            sys.executable,
            "-m",
            "edge_daemon.centre",
            "--host",
            INTERNET_WAN,
            "--port",
            str(self.broker.port),
            "--no-tls",
            "content",
            f"{SITE}/{POST}",
            str(path),
            "--key",
            str(key),
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def accept(self) -> dict[str, Any]:
        splash = self.net.fetch(self.config.portal_url)
        # a session the test ended may still be running as far as the portal knows (it notices at its
        # next sweep): the welcome page has the form then, or sends back to the splash if it noticed
        for _ in range(3):
            if splash.get("status") != 303:
                break
            splash = self.net.fetch(self.config.portal_url + splash["headers"]["location"].lstrip("/"))
        token = re.search(r'name="token" value="([^"]+)"', splash["body"])
        assert token, splash
        return self.net.fetch(self.config.portal_url + "accept", form={"token": token.group(1), "lang": "zh"})


def _config_text(folder: Path, broker_port: int, centre_public: Path) -> str:
    return f"""
[wan]
dns_servers = ["{INTERNET_WAN}"]
[portal]
session_s = {SESSION_S}
port = 80
[content]
centre_key_file = "{centre_public}"
cache_dir = "{folder / "cache"}"
[access_log]
path = "{folder / "access.db"}"
stats_interval_s = 10
[board]
name = "{POST}"
[uplink]
enabled = true
host = "{INTERNET_WAN}"
port = {broker_port}
site = "{SITE}"
tls = false
[log]
format = "text"
"""


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    require_netns()
    for name in ("nft", "dnsmasq", "busybox", "mosquitto"):
        require(name)
    folder = tmp_path_factory.mktemp("gate")
    with GateNetwork(folder, phones=2) as net:
        net.start_internet()
        with Mosquitto(folder / "broker", host=INTERNET_WAN, netns=net.internet) as broker:
            centre_private, centre_public = folder / "centre.key", folder / "centre.pub"
            generate_keypair(centre_private, centre_public)
            config_file = folder / "portal.toml"
            config_file.write_text(_config_text(folder, broker.port, centre_public))
            config = load_config(config_file)
            (folder / "dnsmasq.conf").write_text(
                netconf.render_dnsmasq(config, lease_file=folder / "leases", pid_file=folder / "dnsmasq.pid")
            )
            (folder / "captive-dns.conf").write_text(
                netconf.render_captive_dns(config, pid_file=folder / "captive-dns.pid")
            )
            dnsmasq = require("dnsmasq")
            # what dnsmasq would send to the system log goes to its log file here, to be checked
            net.start(
                net.gateway, dnsmasq, "-k", "--log-facility=-", "-C", str(folder / "dnsmasq.conf"), log="dnsmasq.log"
            )
            net.start(net.gateway, dnsmasq, "-k", "-C", str(folder / "captive-dns.conf"), log="captive-dns.log")
            net.start(
                net.gateway, sys.executable, "-m", "captive_portal", "--config", str(config_file), log="portal.log"
            )
            gate = Gate(net, folder, config, broker, centre_private)
            gate.wait_log("portal ready")
            yield gate


@pytest.fixture
def phone(gate: Gate) -> Gate:
    """The gate with its phone joined by DHCP and captive (no session open)."""
    if not hasattr(gate, "lease"):
        gate.lease = gate.net.dhcp()  # type: ignore[attr-defined]
    gate.end_sessions()
    return gate


def test_the_phone_gets_an_address_and_the_captive_portal_api_by_dhcp(phone: Gate) -> None:
    lease = phone.lease  # type: ignore[attr-defined]
    assert lease.ip.startswith("10.73.") and lease.prefix == 22
    assert lease.router == GATEWAY_LAN and lease.dns == GATEWAY_LAN
    assert lease.captive_api == phone.config.api_url == "http://wifi.alarmpost.lan/api/captive"


PROBES = {
    "android": ("http://connectivitycheck.gstatic.com/generate_204", 204, ""),
    "apple": ("http://captive.apple.com/hotspot-detect.html", 200, "Success"),
    "windows": ("http://www.msftconnecttest.com/connecttest.txt", 200, "Microsoft Connect Test"),
}


def _probe_says_online(gate: Gate, vendor: str) -> bool:
    url, status, text = PROBES[vendor]
    answer = gate.net.fetch(url)
    return answer.get("status") == status and text in answer.get("body", "")


def test_a_phone_is_captive_then_online_then_captive_again(phone: Gate) -> None:
    net, portal_url = phone.net, phone.config.portal_url
    # captive: web traffic lands on the portal, everything else is dropped
    for url in (f"http://{WEB_SERVER}/", "http://www.example.com/some/page"):
        answer = net.fetch(url)
        assert answer["status"] == 302 and answer["headers"]["location"] == portal_url, answer
    assert not net.connect(WEB_SERVER, 8080)
    assert not any(_probe_says_online(phone, vendor) for vendor in PROBES)
    assert json.loads(net.fetch(phone.config.api_url)["body"])["captive"] is True

    accepted = phone.accept()
    assert accepted["status"] == 303, accepted
    accepted_at = time.monotonic()

    # online: the internet answers, and every probe says there is no portal
    assert net.fetch(f"http://{WEB_SERVER}/")["body"] == "hello from the internet\n"
    assert net.connect(WEB_SERVER, 8080)
    assert all(_probe_says_online(phone, vendor) for vendor in PROBES)
    api = json.loads(net.fetch(phone.config.api_url)["body"])
    assert api["captive"] is False and 0 < api["seconds-remaining"] <= SESSION_S

    # the kernel ends the session on time: captive again, and the log has the session's end
    deadline = accepted_at + SESSION_S + 5
    while _probe_says_online(phone, "android"):
        assert time.monotonic() < deadline, "the session outlived its timeout"
        time.sleep(0.2)
    assert time.monotonic() - accepted_at >= SESSION_S - 1
    answer = net.fetch(f"http://{WEB_SERVER}/")
    assert answer["status"] == 302 and answer["headers"]["location"] == portal_url
    assert not net.connect(WEB_SERVER, 8080)


def _bundle(version: int, title: str, pinned: bool = False) -> dict[str, Any]:
    return {
        "id": f"autumn-{version}",
        "version": version,
        "issued": "2026-11-29T08:00:00.000Z",
        "items": [
            {
                "id": f"notice-{version}",
                "priority": 90,
                "pinned": pinned,
                "valid_from": None,
                "valid_until": None,
                "title": {"zh": title, "en": title},
                "body": {"zh": ["放学时请在黄线外等候。"], "en": ["Please wait behind the yellow line."]},
                "image": None,
            }
        ],
    }


def test_chromium_on_a_phone_accepts_and_a_wrongly_signed_bundle_is_refused(phone: Gate, tmp_path: Path) -> None:
    require("chromium")
    require("chromedriver")
    mark = phone.log_size()
    phone.publish_content(_bundle(7, "今日通知：校门口施工", pinned=True), phone.centre_key)
    phone.wait_log(r"content bundle autumn-7 version 7 in use", after=mark)

    wrong_private, wrong_public = tmp_path / "wrong.key", tmp_path / "wrong.pub"
    generate_keypair(wrong_private, wrong_public)
    mark = phone.log_size()
    phone.publish_content(_bundle(8, "伪造的通知"), wrong_private)
    phone.wait_log(r"content bundle refused: .*signature", after=mark)

    shots = ARTIFACTS / "portal"
    done = phone.net.run(
        phone.net.phone,
        sys.executable,
        "-m",
        "hw_sim.phone_browser",
        "--url",
        "http://www.example.com/",
        "--shots",
        str(shots),
        "--accept",
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["splash_url"] == phone.config.portal_url
    assert seen["lang"] == "zh-CN" and seen["button"] == "同意条款并上网"
    assert seen["urgent"] == ["今日通知：校门口施工"]  # the pinned notice is on top
    assert "伪造的通知" not in seen["headings"]  # the forged bundle never showed
    assert seen["page_width"] <= seen["screen_width"]  # nothing wider than the phone's screen
    assert "/welcome" in seen["after_url"] and "已连接" in seen["after_status"]
    assert (shots / "splash.png").stat().st_size > 10_000 and (shots / "welcome.png").exists()
    assert _probe_says_online(phone, "android")


def test_statistics_reach_the_centre_without_personal_data(phone: Gate) -> None:
    topic = f"alarmpost/v1/{SITE}/{POST}/portal"
    done = phone.net.run(
        phone.net.internet,
        require("mosquitto_sub"),
        "-h",
        INTERNET_WAN,
        "-p",
        str(phone.broker.port),
        "-t",
        topic,
        "-C",
        "1",
        "-W",
        "30",
        timeout=40,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"time", "joins", "acceptances", "impressions", "active_sessions"}
    lease_ip = phone.lease.ip  # type: ignore[attr-defined]
    mac = phone.net.phone_mac()
    assert lease_ip not in done.stdout and mac not in done.stdout.lower()


DEVICE_NAME = "Li-Mei-de-iPhone"  # what an iPhone sends as its DHCP host name: its owner's name


def test_a_phones_device_name_is_neither_in_dns_nor_in_the_dhcp_log(phone: Gate) -> None:
    net = phone.net
    other = net.phones[1]
    named = net.dhcp(phone=other, hostname=DEVICE_NAME)  # Li Mei's phone joins, sending its name
    assert phone.accept()["status"] == 303  # the first phone is online: real DNS answers it
    dns = phone.lease.dns  # type: ignore[attr-defined]
    assert net.dns(dns, phone.config.portal.hostname) == {"rcode": 0, "answers": [GATEWAY_LAN]}, "real DNS"
    assert net.dns(dns, "www.example.com")["answers"] == [WEB_SERVER], "real DNS, from upstream"
    for name in (DEVICE_NAME, DEVICE_NAME.lower()):
        assert net.dns(dns, name)["answers"] == [], f"{name} resolves to the phone"
    reverse = ".".join(reversed(named.ip.split("."))) + ".in-addr.arpa"
    found = net.dns(dns, reverse, "PTR")
    assert "rcode" in found and found["answers"] == [], f"{named.ip} resolves back to a name: {found}"

    log = (phone.folder / "dnsmasq.log").read_text(errors="replace")
    assert "started" in log, "dnsmasq logs to this file"
    for mac in (net.phone_mac(), net.phone_mac(other)):
        assert mac not in log.lower(), "dnsmasq logged a phone's MAC address"
    assert DEVICE_NAME.lower() not in log.lower() and named.ip not in log


def test_an_accepted_phone_reaches_the_internet_but_not_the_wans_own_network(phone: Gate) -> None:
    net = phone.net
    # the school's camera on the Pi's public WAN network is there: the gateway itself reaches it
    assert net.connect(WAN_HOST, WAN_HOST_PORT, ns=net.gateway)
    assert phone.accept()["status"] == 303
    assert net.fetch(f"http://{WEB_SERVER}/")["body"] == "hello from the internet\n"
    assert net.connect(WEB_SERVER, 8080)
    assert not net.connect(WAN_HOST, WAN_HOST_PORT), "a phone reached a host on the WAN's own network"
    assert not net.connect(INTERNET_WAN, 53), "a phone reached the WAN's router directly"


def test_when_the_firewall_refuses_a_phone_is_told_and_the_log_names_no_phone(phone: Gate) -> None:
    mark = phone.log_size()
    phone.nft("delete", "table", "inet", "alarmpost_portal")  # nft now refuses every session
    try:
        answer = phone.accept()
        line = phone.wait_log(r"could not let a phone out: .*", after=mark)
    finally:
        ruleset = phone.folder / "portal.nft"
        wan = str(ipaddress.IPv4Network(f"{GATEWAY_WAN}/24", strict=False))
        ruleset.write_text(netconf.render_nft(phone.config, wan_networks=[wan]))
        phone.nft("-f", str(ruleset))
    assert answer["status"] == 503, answer
    assert "No such file or directory" in line, "the log still says what nft refused"
    written = phone.portal_log.read_text(errors="replace")[mark:]
    assert phone.lease.ip not in written  # type: ignore[attr-defined]
    assert phone.net.phone_mac() not in written.lower()
