"""The gate WiFi on one machine: a phone, the post's gateway and the internet, each a network namespace.

::

    phone ns            gateway ns                         internet ns
    wlan0 ── veth ── wlan1 10.73.0.1/22    eth0 ── veth ── uplink0 192.0.2.1/24
    (DHCP)           dnsmasq ×2, nft,       192.0.2.2       dnsmasq (every name → 198.51.100.10)
                     the portal                             web server 198.51.100.10:80,8080
                                                            the centre's MQTT broker

The gateway's side of the "radio" is named like the Pi's USB WiFi adapter (``wlan1``) and
its way out like the Pi's Ethernet (``eth0``), so the portal runs on its default config.
The phone gets its address by real DHCP (busybox ``udhcpc``) from the gateway's dnsmasq,
and resolves names through the nameserver DHCP gave it (``/etc/netns/<phone>/resolv.conf``,
which ``ip netns exec`` puts in place of ``/etc/resolv.conf``).

Needs root, iproute2, busybox, dnsmasq and nftables.  Everything made is removed on close.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw_sim.netns import ip
from hw_sim.paths import tool

GATEWAY_LAN = "10.73.0.1"
GATEWAY_WAN = "192.0.2.2"
INTERNET_WAN = "192.0.2.1"
WEB_SERVER = "198.51.100.10"
PHONE_IF, LAN_IF, WAN_IF, INTERNET_IF = "wlan0", "wlan1", "eth0", "uplink0"

LEASE_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in its environment; keep it for the test to read.
case "$1" in bound|renew) env > "$(dirname "$0")/lease.env" ;; esac
exit 0
"""


@dataclass(frozen=True)
class Lease:
    """What the phone got by DHCP."""

    ip: str
    prefix: int
    router: str
    dns: str
    captive_api: str  # DHCP option 114 (RFC 8910)
    seconds: int


class GateNetwork:
    """The three namespaces and their cables; processes started here die with it."""

    def __init__(self, folder: Path) -> None:
        suffix = secrets.token_hex(3)
        self.folder = folder
        self.phone, self.gateway, self.internet = (f"ap{role}-{suffix}" for role in ("phone", "gw", "inet"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []

    # -- building it ------------------------------------------------------------------

    def open(self) -> GateNetwork:
        try:
            for ns in (self.phone, self.gateway, self.internet):
                ip("netns", "add", ns)
                self._made.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            self._cable(self.phone, PHONE_IF, self.gateway, LAN_IF)
            self._cable(self.gateway, WAN_IF, self.internet, INTERNET_IF)
            ip("-n", self.gateway, "addr", "add", f"{GATEWAY_LAN}/22", "dev", LAN_IF)
            ip("-n", self.gateway, "addr", "add", f"{GATEWAY_WAN}/24", "dev", WAN_IF)
            ip("-n", self.gateway, "route", "add", "default", "via", INTERNET_WAN)
            ip("-n", self.internet, "addr", "add", f"{INTERNET_WAN}/24", "dev", INTERNET_IF)
            ip("-n", self.internet, "addr", "add", f"{WEB_SERVER}/32", "dev", "lo")
            self.run(self.gateway, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        except BaseException:
            self.close()
            raise
        return self

    def _cable(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        ip("-n", ns_a, "link", "set", if_a, "up")
        ip("-n", ns_b, "link", "set", if_b, "up")

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._procs.clear()
        for ns in self._made:
            ip("netns", "del", ns, check=False)
        self._made.clear()
        shutil.rmtree(Path("/etc/netns") / self.phone, ignore_errors=True)

    def __enter__(self) -> GateNetwork:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running things in it ---------------------------------------------------------

    def prefix(self, ns: str) -> list[str]:
        return [tool("ip"), "netns", "exec", ns]

    def run(self, ns: str, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(ns), *command], capture_output=True, text=True, timeout=timeout)

    def start(self, ns: str, *command: str, log: str) -> subprocess.Popen[bytes]:
        """Start ``command`` in ``ns`` with its output in ``folder/log``; it is killed on close."""
        with open(self.folder / log, "ab") as out:
            proc = subprocess.Popen([*self.prefix(ns), *command], stdout=out, stderr=subprocess.STDOUT)
        self._procs.append(proc)
        return proc

    def start_internet(self) -> None:
        """The web server and the upstream DNS that answers every name with it."""
        self.start(
            self.internet,
            sys.executable,
            "-m",
            "hw_sim.internet",
            "--bind",
            WEB_SERVER,
            "--port",
            "80",
            "--port",
            "8080",
            log="internet-web.log",
        )
        self.start(
            self.internet,
            tool("dnsmasq"),
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={INTERNET_WAN}",
            "--bind-interfaces",
            f"--address=/#/{WEB_SERVER}",
            f"--pid-file={self.folder / 'internet-dns.pid'}",
            log="internet-dns.log",
        )

    # -- the phone --------------------------------------------------------------------

    def dhcp(self, timeout_s: int = 10) -> Lease:
        """Ask for an address as a phone does; configure the phone with what came back."""
        script = self.folder / "udhcpc.sh"
        script.write_text(LEASE_SCRIPT)
        script.chmod(0o755)
        (self.folder / "lease.env").unlink(missing_ok=True)
        done = self.run(
            self.phone,
            tool("busybox"),
            "udhcpc",
            "-i",
            PHONE_IF,
            "-f",
            "-q",
            "-n",
            "-t",
            str(timeout_s),
            "-T",
            "1",
            "-O",
            "114",
            "-s",
            str(script),
            timeout=timeout_s + 10,
        )
        if done.returncode or not (self.folder / "lease.env").exists():
            raise RuntimeError(f"the phone got no DHCP lease:\n{done.stdout}{done.stderr}")
        lease = _parse_lease((self.folder / "lease.env").read_text())
        ip("-n", self.phone, "addr", "add", f"{lease.ip}/{lease.prefix}", "dev", PHONE_IF)
        ip("-n", self.phone, "route", "add", "default", "via", lease.router)
        resolv = Path("/etc/netns") / self.phone / "resolv.conf"
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text(f"nameserver {lease.dns}\noptions timeout:1 attempts:2\n")
        return lease

    def fetch(self, url: str, form: dict[str, str] | None = None, timeout: float = 3.0) -> dict[str, Any]:
        """The phone fetches ``url`` (POSTs ``form``) without following redirects."""
        command = [sys.executable, "-m", "hw_sim.phone", "fetch", url, "--timeout", str(timeout)]
        for key, value in (form or {}).items():
            command += ["--form", f"{key}={value}"]
        done = self.run(self.phone, *command, timeout=timeout + 20)
        return _json_line(done)

    def connect(self, host: str, port: int, timeout: float = 1.0) -> bool:
        """Whether the phone can open a TCP connection to ``host:port``."""
        done = self.run(
            self.phone, sys.executable, "-m", "hw_sim.phone", "connect", host, str(port), "--timeout", str(timeout)
        )
        return bool(_json_line(done)["connected"])

    def phone_mac(self) -> str:
        return self._mac(self.phone, PHONE_IF)

    def _mac(self, ns: str, interface: str) -> str:
        info = json.loads(ip("-n", ns, "-j", "link", "show", interface))
        return str(info[0]["address"])


def _json_line(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise RuntimeError(f"the phone's command failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _parse_lease(env_text: str) -> Lease:
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line)
    mask = env.get("subnet", "255.255.255.0")
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    return Lease(
        ip=env["ip"],
        prefix=prefix,
        router=env.get("router", "").split()[0],
        dns=env.get("dns", "").split()[0],
        captive_api=_option_text(env.get("opt114", "")),
        seconds=int(env.get("lease", "0")),
    )


def _option_text(value: str) -> str:
    """busybox hands over options it has no name for as hex; RFC 8910's option 114 is a URI."""
    try:
        return bytes.fromhex(value).decode()
    except ValueError:
        return value
