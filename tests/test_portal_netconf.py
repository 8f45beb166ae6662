"""The gate WiFi's generated network files, checked by the real hostapd, dnsmasq and nft.

Each check has a negative control: a deliberately broken file is refused by the same
check, so a pass means the tool read the file, not that the check cannot fail.  The
ruleset is then loaded into fresh network namespaces, where a phone, the gateway and
the internet show what it does: redirects to the portal, the set of accepted phones
checked on every packet, the captive DNS answering every name with the portal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import pytest

from captive_portal import netconf
from captive_portal.config import Config, ConfigError, check_data, parse_config
from hw_sim.netns import ip

from .conftest import require, require_netns

EXAMPLE = Path(netconf.__file__).with_name("portal.example.toml")
# A WiFi interface no machine has, so hostapd can never start a real access point here.
TEST_WIFI = {"wifi": {"interface": "wlgatetest0"}, "lan": {"interface": "wlgatetest0"}}
# hostapd reports a bad line as "Line N: ..." and counts them: "N errors found in configuration file".
HOSTAPD_PARSE_ERROR = re.compile(r"^Line \d+: |errors found in configuration file", re.MULTILINE)
# Printed once the parsed interface is being brought up or torn down: only after a clean parse.
HOSTAPD_PAST_PARSING = "interface state UNINITIALIZED->"


def config(**sections: dict[str, Any]) -> Config:
    """A checked config with the test WiFi interface and the given sections."""
    data: dict[str, dict[str, Any]] = {name: dict(values) for name, values in TEST_WIFI.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return check_data(data)


def run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def require_root() -> None:
    """nft talks to the kernel even to check a file: root, by the same rule as a missing tool."""
    require_netns()  # root, iproute2 and namespaces; the same conditions


# --- hostapd ---------------------------------------------------------------------------------


def hostapd_accepts(path: Path) -> tuple[bool, str]:
    """Whether the real hostapd parses ``path`` without an error (it then fails at the missing radio)."""
    done = run(require("hostapd"), "-dd", str(path))
    output = done.stdout + done.stderr
    return HOSTAPD_PARSE_ERROR.search(output) is None and HOSTAPD_PAST_PARSING in output, output


@pytest.mark.parametrize(
    "wifi",
    [
        pytest.param({}, id="default-open-2.4GHz"),
        pytest.param({"security": "owe"}, id="owe"),
        pytest.param({"hw_mode": "a", "channel": 36}, id="5GHz"),
        pytest.param({"hw_mode": "a", "channel": 52, "security": "owe"}, id="5GHz-dfs-owe"),
        pytest.param({"ssid": "校门安全校门安全校门AB"}, id="ssid-of-32-utf8-bytes"),
    ],
)
def test_hostapd_accepts_the_generated_file(tmp_path: Path, wifi: dict[str, Any]) -> None:
    path = tmp_path / "hostapd.conf"
    path.write_text(netconf.render_hostapd(config(wifi=wifi)), encoding="utf-8")
    accepted, output = hostapd_accepts(path)
    assert accepted, output


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("ap_isolate=1", "ap_isolation=1", id="unknown-key"),
        pytest.param("wpa_key_mgmt=OWE", "wpa_key_mgmt=NOT-A-KEY-MGMT", id="bad-value"),
        pytest.param("ssid=校门安全WiFi", "ssid=校门安全校门安全校门ABC", id="ssid-of-33-bytes"),
    ],
)
def test_hostapd_check_refuses_a_broken_file(tmp_path: Path, old: str, new: str) -> None:
    text = netconf.render_hostapd(config(wifi={"security": "owe"}))
    assert old in text
    path = tmp_path / "hostapd.conf"
    path.write_text(text.replace(old, new), encoding="utf-8")
    accepted, output = hostapd_accepts(path)
    assert not accepted
    assert "errors found in configuration file" in output


def test_hostapd_file_has_the_access_point_settings() -> None:
    lines = netconf.render_hostapd(config(wifi={"max_clients": 40})).splitlines()
    for line in ("utf8_ssid=1", "ssid=校门安全WiFi", "country_code=CN", "ap_isolate=1", "max_num_sta=40"):
        assert line in lines
    assert not [line for line in lines if line.startswith("wpa")], "the default network is open"
    owe = netconf.render_hostapd(config(wifi={"security": "owe"})).splitlines()
    assert {"wpa=2", "wpa_key_mgmt=OWE", "rsn_pairwise=CCMP", "ieee80211w=2"} <= set(owe)


def test_there_is_no_hostapd_file_with_an_external_access_point(tmp_path: Path) -> None:
    cfg = config(wifi={"mode": "external"}, lan={"interface": "eth1"})
    with pytest.raises(ValueError, match="external"):
        netconf.render_hostapd(cfg)
    written = netconf.write_all(cfg, tmp_path)
    assert sorted(path.name for path in written) == ["dnsmasq-captive.conf", "dnsmasq.conf", "portal.nft"]


# --- dnsmasq ---------------------------------------------------------------------------------


def dnsmasq_check(path: Path) -> subprocess.CompletedProcess[str]:
    return run(require("dnsmasq"), "--test", f"--conf-file={path}")


@pytest.mark.parametrize("render", [netconf.render_dnsmasq, netconf.render_captive_dns])
@pytest.mark.parametrize("wan", [{}, {"dns_servers": ["223.5.5.5", "119.29.29.29"]}], ids=["resolv-conf", "servers"])
def test_dnsmasq_accepts_both_files(tmp_path: Path, render: Any, wan: dict[str, Any]) -> None:
    path = tmp_path / "dnsmasq.conf"
    path.write_text(render(config(wan=wan)))
    done = dnsmasq_check(path)
    assert done.returncode == 0, done.stderr
    assert "syntax check OK" in done.stdout + done.stderr


def test_dnsmasq_check_refuses_a_broken_file(tmp_path: Path) -> None:
    text = netconf.render_dnsmasq(config())
    path = tmp_path / "dnsmasq.conf"
    path.write_text(text.replace("dhcp-authoritative", "dhcp-authoritive"))
    done = dnsmasq_check(path)
    assert done.returncode != 0
    assert "syntax check OK" not in done.stdout + done.stderr


def test_dhcp_tells_phones_the_captive_portal_api_and_the_gateway() -> None:
    cfg = config(portal={"hostname": "wifi.school.example", "port": 8080}, lan={"lease_s": 7200})
    lines = netconf.render_dnsmasq(cfg).splitlines()
    assert 'dhcp-option=114,"http://wifi.school.example:8080/api/captive"' in lines
    assert f'dhcp-option=114,"{cfg.api_url}"' in lines
    assert "dhcp-range=10.73.0.10,10.73.3.250,255.255.252.0,7200" in lines
    assert "dhcp-option=option:router,10.73.0.1" in lines
    assert "dhcp-option=option:dns-server,10.73.0.1" in lines
    assert "address=/wifi.school.example/10.73.0.1" in lines


def test_dhcp_points_to_the_https_api_when_the_portal_has_a_certificate() -> None:
    cfg = with_https(config(), https_port=8443)
    assert 'dhcp-option=114,"https://wifi.alarmpost.lan:8443/api/captive"' in netconf.render_dnsmasq(cfg).splitlines()


def test_phones_reach_the_https_api_only_when_the_portal_has_a_certificate() -> None:
    assert "tcp dport 80 accept" in netconf.render_nft(config())
    assert "443" not in netconf.render_nft(config())
    assert "ip daddr 10.73.0.1 tcp dport { 80, 8443 } accept" in netconf.render_nft(with_https(config(), 8443))


def test_upstream_dns_is_the_configured_servers_or_else_the_pis_own() -> None:
    own = netconf.render_dnsmasq(config()).splitlines()
    assert "no-resolv" not in own and not [line for line in own if line.startswith("server=")]
    chosen = netconf.render_dnsmasq(config(wan={"dns_servers": ["223.5.5.5"]})).splitlines()
    assert "no-resolv" in chosen and "server=223.5.5.5" in chosen


def test_lease_and_pid_files_can_be_chosen(tmp_path: Path) -> None:
    text = netconf.render_dnsmasq(config(), lease_file=tmp_path / "leases", pid_file=tmp_path / "main.pid")
    assert f"dhcp-leasefile={tmp_path / 'leases'}" in text.splitlines()
    assert f"pid-file={tmp_path / 'main.pid'}" in text.splitlines()
    assert netconf.render_dnsmasq(config()).count(f"dhcp-leasefile={netconf.LEASE_FILE}") == 1


# --- nftables --------------------------------------------------------------------------------


def nft_check(path: Path) -> subprocess.CompletedProcess[str]:
    require_root()
    return run(require("nft"), "--check", "--file", str(path))


def with_https(cfg: Config, https_port: int = 443) -> Config:
    """``cfg`` with the portal's HTTPS API (the files need not exist: nothing here reads them)."""
    portal = replace(cfg.portal, tls_cert_file="/etc/alarmpost/portal.crt", tls_key_file="/etc/alarmpost/portal.key")
    return replace(cfg, portal=replace(portal, https_port=https_port))


def test_nft_accepts_the_ruleset(tmp_path: Path) -> None:
    variants = {
        "default": config(),
        "portal-on-8080": config(portal={"port": 8080}),
        "https-api": with_https(config()),
    }
    for name, cfg in variants.items():
        path = tmp_path / f"{name}.nft"
        path.write_text(netconf.render_nft(cfg))
        done = nft_check(path)
        assert done.returncode == 0, f"{name}: {done.stderr}"


def test_nft_check_refuses_a_broken_ruleset(tmp_path: Path) -> None:
    path = tmp_path / "portal.nft"
    path.write_text(netconf.render_nft(config()).replace("masquerade", "masquerade-please"))
    done = nft_check(path)
    assert done.returncode != 0
    assert "Error" in done.stderr


def test_ruleset_values_come_from_the_config() -> None:
    cfg = config(portal={"session_s": 1800, "rate_up_kbit": 1024, "rate_down_kbit": 8000})
    text = netconf.render_nft(cfg)
    assert "\t\ttimeout 1800s\n" in text
    # kbit/s (1000 bits) to bytes/s: 1024 kbit/s = 128000 bytes/s, 8000 kbit/s = 1000000 bytes/s
    assert "update @up_rate { ip saddr limit rate over 128000 bytes/second" in text
    assert "update @down_rate { ip daddr limit rate over 1000000 bytes/second" in text
    assert netconf.kbit_to_bytes_per_s(64) == 8000
    assert text.startswith("# Generated from ")
    assert "\ntable inet alarmpost_portal\ndelete table inet alarmpost_portal\ntable inet alarmpost_portal {\n" in text


def test_phones_are_kept_from_private_special_and_the_wans_own_networks(tmp_path: Path) -> None:
    cfg = config(wan={"blocked_networks": ["203.0.113.0/26"]})
    text = netconf.render_nft(cfg, wan_networks=["202.101.8.0/29", "10.1.2.0/24"])
    (rule,) = [line for line in text.splitlines() if "ip daddr {" in line and line.endswith("drop")]
    blocked = rule.split("{ ")[1].split(" }")[0].split(", ")
    for network in ("10.0.0.0/8", "100.64.0.0/10", "0.0.0.0/8", "198.18.0.0/15", "224.0.0.0/3"):
        assert network in blocked
    assert "203.0.113.0/26" in blocked and "202.101.8.0/29" in blocked
    assert "10.1.2.0/24" not in blocked, "a network inside a blocked one is left out (nft refuses overlaps)"
    require_root()
    path = tmp_path / "portal.nft"
    path.write_text(text)
    done = nft_check(path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"202.101.8.0/26"', "not an array of IPv4 networks"),
        ('["202.101.8.0"]', "not an IPv4 network in CIDR form"),
        ('["202.101.8.9/26"]', 'has host bits set: write the network, e.g. "202.101.8.0/26"'),
        ('["0.0.0.0/0"]', "wider than /8"),
        ("[26]", "not an IPv4 network in CIDR form"),
    ],
)
def test_blocked_networks_are_checked(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(f"[wan]\nblocked_networks = {value}")
    assert [error for error in refused.value.errors if error.startswith("wan.blocked_networks: ")]
    assert problem in str(refused.value)


def test_the_wans_own_networks_are_read_from_the_kernels_routes(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t016465CA\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"  # default via 202.101.100.1
        "eth0\t006465CA\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # 202.101.100.0/24 on the link
        "wlan1\t0000490A\t00000000\t0001\t0\t0\t0\t00FCFFFF\t0\t0\t0\n"  # the gate network
    )
    assert netconf.wan_networks("eth0", routes) == ["202.101.100.0/24"]
    assert netconf.wan_networks("eth1", routes) == []


# --- the ruleset loaded, in network namespaces -------------------------------------------------


class Lab:
    """Network namespaces made for one test; removed, with everything running in them, at the end."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[str]] = []

    def namespace(self, role: str) -> str:
        name = f"portaltest-{role}-{self.token}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def run(self, namespace: str, *command: str) -> str:
        """Run ``command`` in ``namespace``; its output, or the test fails with its errors."""
        done = run(require("ip"), "netns", "exec", namespace, *command)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"
        return done.stdout

    def start(self, namespace: str, *command: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [require("ip"), "netns", "exec", namespace, *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()
        for name in self.namespaces:
            for pid in ip("netns", "pids", name, check=False).split():  # a daemon left running in it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", name, check=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_netns()
    require("nft")
    made = Lab()
    try:
        yield made
    finally:
        made.close()


def allowed_elements(lab: Lab, namespace: str) -> list[dict[str, Any]]:
    listing = json.loads(lab.run(namespace, require("nft"), "-j", "list", "set", "inet", "alarmpost_portal", "allowed"))
    found = [item["set"] for item in listing["nftables"] if "set" in item]
    return [element["elem"] for element in found[0].get("elem", [])]


def test_ruleset_loads_and_takes_sessions_that_expire_in_the_kernel(lab: Lab, tmp_path: Path) -> None:
    gateway, nft = lab.namespace("gw"), require("nft")
    path = netconf.write_all(config(portal={"session_s": 900}), tmp_path)[-1]
    assert path.name == "portal.nft"
    lab.run(gateway, nft, "-f", str(path))
    lab.run(gateway, nft, "-f", str(path))  # loading again replaces the table, no error
    lab.run(gateway, nft, "add element inet alarmpost_portal allowed { 10.73.0.23 . 02:00:00:00:00:01 timeout 5s }")
    lab.run(gateway, nft, "add element inet alarmpost_portal allowed { 10.73.0.24 . 02:00:00:00:00:02 }")
    elements = {tuple(element["val"]["concat"]): element for element in allowed_elements(lab, gateway)}
    first = elements[("10.73.0.23", "02:00:00:00:00:01")]
    assert first["timeout"] == 5 and 0 < first["expires"] <= 5
    # Added without a timeout: the set's own, the session length
    assert 890 < elements[("10.73.0.24", "02:00:00:00:00:02")]["expires"] <= 900
    lab.run(gateway, nft, "-f", str(path))
    assert allowed_elements(lab, gateway) == [], "a reload starts with no sessions"
    table = json.loads(lab.run(gateway, nft, "-j", "list", "table", "inet", "alarmpost_portal"))
    chains = {item["chain"]["name"]: item["chain"] for item in table["nftables"] if "chain" in item}
    assert {name: chain["hook"] for name, chain in chains.items()} == {
        "prerouting": "prerouting",
        "input": "input",
        "forward": "forward",
        "postrouting": "postrouting",
    }
    assert chains["input"]["policy"] == chains["forward"]["policy"] == "accept", "other interfaces untouched"


# A server that answers each line with its own name and the line; "ready" once it listens.
SERVER = """
import socketserver, sys, threading
class Answer(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(sys.argv[1].encode() + b" " + line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
servers = [socketserver.ThreadingTCPServer(("", int(port)), Answer) for port in sys.argv[2:]]
for server in servers:
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""

# A phone (or the gateway itself), driven line by line on stdin, one answer line each:
# "ask HOST PORT TEXT" on a new connection, "open HOST PORT" then "say TEXT" on one kept
# open, "dns SERVER NAME TYPE" over UDP, "dhcp INTERFACE MAC" for a DHCP offer.
CLIENT = """
import random, socket, struct, sys
TIMEOUT = 1.5
DHCP_TIMEOUT = 10  # the DHCP server pings an address before it offers it
kept = None
def reply(sock, text):
    sock.sendall(text.encode() + b"\\n")
    data = sock.makefile("rb").readline().decode().strip()
    return data or "closed"
def ask(host, port, text):
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        return reply(sock, text)
def dns(server, name, qtype):
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    query = struct.pack(">HHHHHH", random.randrange(65536), 0x100, 1, 0, 0, 0) + question
    query += struct.pack(">HH", {"A": 1, "AAAA": 28}[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect((server, 53))
        sock.send(query)
        answer = sock.recv(4096)
    count = struct.unpack(">H", answer[6:8])[0]
    if count == 0:
        return "rcode=%d no answer" % (answer[3] & 15)
    return socket.inet_ntoa(answer[-4:])
def dhcp_options(data):
    options, i = {}, 0
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        options[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return options
def dhcp(interface, mac):
    xid = random.randrange(1 << 32)
    zero = bytes(4)
    chaddr = bytes.fromhex(mac.replace(":", ""))
    discover = struct.pack(">BBBBIHH4s4s4s4s16s64s128sI", 1, 1, 6, 0, xid, 0, 0x8000, zero, zero, zero, zero,
                           chaddr, b"", b"", 0x63825363)
    discover += bytes([53, 1, 1, 55, 4, 1, 3, 6, 114, 255])  # DISCOVER, asking for mask, router, DNS, 114
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("", 68))
        sock.settimeout(DHCP_TIMEOUT)
        sock.sendto(discover, ("255.255.255.255", 67))
        offer = sock.recv(4096)
        while offer[4:8] != discover[4:8]:
            offer = sock.recv(4096)
    options = dhcp_options(offer[240:])
    return "type=%d address=%s router=%s dns=%s api=%s" % (
        options[53][0], socket.inet_ntoa(offer[16:20]), socket.inet_ntoa(options[3]),
        socket.inet_ntoa(options[6]), options[114].decode())
for line in sys.stdin:
    word, *args = line.split()
    try:
        if word == "ask":
            out = ask(*args)
        elif word == "open":
            kept = socket.create_connection((args[0], int(args[1])), timeout=TIMEOUT)
            out = "open"
        elif word == "say":
            out = reply(kept, args[0])
        elif word == "dhcp":
            out = dhcp(*args)
        else:
            out = dns(*args)
    except (TimeoutError, socket.timeout):
        out = "timeout"
    except OSError as exc:
        out = type(exc).__name__
    print(out, flush=True)
"""

PHONE_IP, PHONE_MAC = "10.73.0.23", "02:00:00:00:00:23"
INTERNET_IP = "198.51.100.2"  # a documentation address: not in any private range the ruleset keeps phones from


class Client:
    """The client script running in a namespace: one command, one answer."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def __call__(self, command: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()


@dataclass
class Gate:
    """Phone -- lan0 [gateway: the ruleset, both dnsmasq, the portal] wan0 -- internet."""

    cfg: Config
    gateway: str  # the gateway's namespace
    phone: Client
    on_gateway: Client

    def nft(self, command: str) -> None:
        done = run(require("ip"), "netns", "exec", self.gateway, require("nft"), command)
        assert done.returncode == 0, done.stderr

    def accept_phone(self, mac: str = PHONE_MAC) -> None:
        self.nft(f"add element inet alarmpost_portal allowed {{ {PHONE_IP} . {mac} timeout 600s }}")

    def end_session(self) -> None:
        self.nft(f"delete element inet alarmpost_portal allowed {{ {PHONE_IP} . {PHONE_MAC} }}")


def veth(left: str, left_name: str, right: str, right_name: str) -> None:
    ip("-n", left, "link", "add", left_name, "type", "veth", "peer", "name", right_name, "netns", right)
    ip("-n", left, "link", "set", left_name, "up")
    ip("-n", right, "link", "set", right_name, "up")


def start_server(lab: Lab, namespace: str, name: str, *ports: int) -> None:
    server = lab.start(namespace, sys.executable, "-c", SERVER, name, *map(str, ports))
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"


def start_dnsmasq(lab: Lab, namespace: str, path: Path, text: str) -> None:
    path.write_text(text)
    lab.run(namespace, require("dnsmasq"), f"--conf-file={path}")  # returns once it listens


@pytest.fixture
def gate(lab: Lab, tmp_path: Path) -> Gate:
    require("dnsmasq")
    cfg = config(wifi={"mode": "external"}, lan={"interface": "lan0"}, wan={"interface": "wan0"})
    gateway, phone, internet = lab.namespace("gw"), lab.namespace("phone"), lab.namespace("net")
    veth(gateway, "lan0", phone, "eth0")
    veth(gateway, "wan0", internet, "eth0")
    ip("-n", gateway, "addr", "add", f"{cfg.lan.address}/{cfg.lan.prefix}", "dev", "lan0")
    ip("-n", gateway, "addr", "add", "198.51.100.1/24", "dev", "wan0")
    ip("-n", internet, "addr", "add", f"{INTERNET_IP}/24", "dev", "eth0")
    ip("-n", phone, "link", "set", "eth0", "address", PHONE_MAC)
    ip("-n", phone, "addr", "add", f"{PHONE_IP}/{cfg.lan.prefix}", "dev", "eth0")
    ip("-n", phone, "route", "add", "default", "via", cfg.lan.address)
    lab.run(gateway, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    (tmp_path / "portal.nft").write_text(netconf.render_nft(cfg))
    lab.run(gateway, require("nft"), "-f", str(tmp_path / "portal.nft"))
    main = netconf.render_dnsmasq(cfg, lease_file=tmp_path / "leases", pid_file=tmp_path / "main.pid")
    start_dnsmasq(lab, gateway, tmp_path / "dnsmasq.conf", main)
    captive = netconf.render_captive_dns(cfg, pid_file=tmp_path / "captive.pid")
    start_dnsmasq(lab, gateway, tmp_path / "dnsmasq-captive.conf", captive)
    start_server(lab, gateway, "portal", cfg.portal.port)
    start_server(lab, internet, "internet", 80, 8443)
    client = (sys.executable, "-c", CLIENT)
    return Gate(cfg, gateway, Client(lab.start(phone, *client)), Client(lab.start(gateway, *client)))


def test_a_phone_finds_the_portal_until_accepted_then_the_internet_until_its_session_ends(gate: Gate) -> None:
    phone = gate.phone
    # Not accepted: every name is the portal, plain HTTP to any host is the portal, nothing else gets out
    assert phone(f"dns {INTERNET_IP} connectivitycheck.gstatic.com A") == "10.73.0.1"
    assert phone(f"dns {INTERNET_IP} captive.apple.com AAAA") == "rcode=0 no answer"
    assert phone(f"ask {INTERNET_IP} 80 hello") == "portal hello"
    assert phone(f"ask {INTERNET_IP} 8443 hello") == "ConnectionRefusedError"  # refused at once, not left hanging

    gate.accept_phone()
    assert phone(f"ask {INTERNET_IP} 80 hello") == "internet hello"
    assert phone(f"ask {INTERNET_IP} 8443 hello") == "internet hello"
    assert phone(f"dns {INTERNET_IP} connectivitycheck.gstatic.com A") != "10.73.0.1", "no more captive DNS"
    assert phone(f"open {INTERNET_IP} 8443") == "open"
    assert phone("say one") == "internet one"

    # The session ends (as the kernel ends it at timeout): even the open connection stops at once
    gate.end_session()
    assert phone("say two") == "ConnectionResetError"  # the gateway resets it rather than leave it hanging
    assert phone(f"ask {INTERNET_IP} 80 hello") == "portal hello"


def test_a_phone_with_another_mac_is_not_let_out_on_an_accepted_ip(gate: Gate) -> None:
    gate.accept_phone(mac="02:00:00:00:00:99")
    assert gate.phone(f"ask {INTERNET_IP} 80 hello") == "portal hello"
    assert gate.phone(f"ask {INTERNET_IP} 8443 hello") == "ConnectionRefusedError"


def test_dhcp_offers_the_gateway_and_the_captive_portal_api(gate: Gate) -> None:
    offer = dict(item.split("=", 1) for item in gate.phone("dhcp eth0 02:00:00:00:00:42").split())
    assert offer["type"] == "2", "a DHCPOFFER"
    assert ipaddress.IPv4Address(offer["address"]) in gate.cfg.network
    assert offer["router"] == offer["dns"] == "10.73.0.1"
    assert offer["api"] == gate.cfg.api_url == "http://wifi.alarmpost.lan/api/captive"


def test_the_main_dns_answers_accepted_phones_on_the_gateway_only(gate: Gate) -> None:
    gate.accept_phone()
    assert gate.phone("dns 10.73.0.1 wifi.alarmpost.lan A") == "10.73.0.1"
    assert gate.phone("dns 10.73.0.1 no-such-name.example A") != "10.73.0.1", "real DNS, not the captive answer"
    assert gate.on_gateway("dns 127.0.0.1 wifi.alarmpost.lan A") == "ConnectionRefusedError", "not on loopback"


# --- the command line and the files ------------------------------------------------------------


def test_cli_writes_every_file(tmp_path: Path) -> None:
    source = tmp_path / "portal.toml"
    source.write_text('[wifi]\ninterface = "wlgatetest0"\n[lan]\ninterface = "wlgatetest0"\n')
    out = tmp_path / "net"
    assert netconf.main(["--config", str(source), "--out", str(out)]) == 0
    names = sorted(path.name for path in out.iterdir())
    assert names == ["dnsmasq-captive.conf", "dnsmasq.conf", "hostapd.conf", "portal.nft"]
    assert f"# Generated from {source} " in (out / "portal.nft").read_text()
    assert (out / "hostapd.conf").read_text(encoding="utf-8") == netconf.render_hostapd(
        parse_config(source.read_text()), source=str(source)
    )


def test_cli_prints_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert netconf.main(["--config", str(EXAMPLE), "--print", "captive-dns"]) == 0
    assert "address=/#/10.73.0.1" in capsys.readouterr().out.splitlines()


def test_cli_refuses_a_bad_config_with_its_errors(tmp_path: Path) -> None:
    source = tmp_path / "portal.toml"
    source.write_text('[wifi]\ncountry = "china"\n')
    done = run(sys.executable, "-m", "captive_portal.netconf", "--config", str(source), "--out", str(tmp_path / "net"))
    assert done.returncode == 1
    assert 'wifi.country: "china" is not a two-letter ISO 3166 country code' in done.stderr
    assert not (tmp_path / "net").exists()


def test_cli_refuses_a_hostapd_file_for_an_external_access_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "portal.toml"
    source.write_text('[wifi]\nmode = "external"\n[lan]\ninterface = "eth1"\n')
    assert netconf.main(["--config", str(source), "--print", "hostapd"]) == 1
    assert "external access point needs no hostapd.conf" in capsys.readouterr().err


def test_files_are_replaced_whole_and_nothing_is_left_beside_them(tmp_path: Path) -> None:
    (tmp_path / "portal.nft").write_text("old")
    netconf.write_all(config(), tmp_path)
    assert (tmp_path / "portal.nft").read_text() == netconf.render_nft(config())
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "dnsmasq-captive.conf",
        "dnsmasq.conf",
        "hostapd.conf",
        "portal.nft",
    ]


def test_no_value_can_break_out_of_its_line() -> None:
    # Values the config check would refuse, handed to the renderers directly
    cfg = config()
    with pytest.raises(ValueError, match="break its line"):
        netconf.render_hostapd(replace(cfg, wifi=replace(cfg.wifi, ssid="gate\nwpa=0")))
    with pytest.raises(ValueError, match="break its line"):
        netconf.render_captive_dns(cfg, pid_file="/run/captive.pid\nserver=192.0.2.66")
    with pytest.raises(ValueError, match="not a host name"):
        netconf.render_dnsmasq(replace(cfg, portal=replace(cfg.portal, hostname="a.lan/192.0.2.66\nserver=x")))
    with pytest.raises(ValueError, match="not a network interface name"):
        netconf.render_nft(replace(cfg, lan=replace(cfg.lan, interface='wlan1" accept')))


def test_the_example_config_is_valid_and_shows_the_defaults() -> None:
    assert parse_config(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE)) == Config()


def test_the_example_config_shows_every_key() -> None:
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for section in fields(Config):
        keys = {key.name for key in fields(getattr(Config(), section.name))}
        assert set(example[section.name]) == keys, section.name


def test_the_portal_refuses_to_hold_the_command_key_and_runs_its_uplink_without_one(tmp_path: Path) -> None:
    """The portal parses anonymous phones' requests: a config handing it the post's command key is refused."""
    key = tmp_path / "command.key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    public = tmp_path / "centre.pub"
    from captive_portal.content import generate_keypair

    generate_keypair(tmp_path / "centre.key", public)
    uplink = '[uplink]\nenabled = true\ntls = false\nsite = "school-1"\n'
    content = f'[content]\ncentre_key_file = "{public}"\n'
    with pytest.raises(ConfigError) as refused:
        parse_config(uplink + f'command_key_file = "{key}"\n' + content)
    assert [e for e in refused.value.errors if e.startswith("uplink.command_key_file: the portal must not hold")]
    config = parse_config(uplink + content)
    assert config.uplink.enabled and config.uplink.command_key_file == ""
    assert Config().access_log.path.startswith("/var/lib/alarmpost-portal/"), "the portal's state is its own"
    assert Config().content.cache_dir.startswith("/var/lib/alarmpost-portal/")
