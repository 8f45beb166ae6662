"""The gate WiFi on one machine: a phone, the post's gateway and the internet, each a network namespace.

::

    phone ns            gateway ns                         internet ns
    wlan0 ── veth ── wlan1 10.73.0.1/22    eth0 ── veth ── uplink0 192.0.2.1/24
    (DHCP)           dnsmasq ×2, nft,       192.0.2.2       dnsmasq (every name → 198.51.100.10)
                     the portal                             web server 198.51.100.10:80,8080
                                                            the centre's MQTT broker
                                                            a host on the WAN's own network,
                                                            192.0.2.20:554 (a school camera)

With ``phones=2`` or more, ``wlan1`` is a bridge (as an access point bridges its radio) and
each phone has its own cable to it, so phones see each other's traffic as on one WiFi.

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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hw_sim.netns import ip
from hw_sim.paths import tool

GATEWAY_LAN = "10.73.0.1"
GATEWAY_WAN = "192.0.2.2"
INTERNET_WAN = "192.0.2.1"
WEB_SERVER = "198.51.100.10"
WAN_HOST = "192.0.2.20"  # on the gateway's WAN network, a public-looking address: the school's camera
WAN_HOST_PORT = 554  # RTSP
BRIDGE_MAC = "02:00:00:73:00:01"  # fixed, so the gateway's MAC does not change as phones join
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

    def __init__(self, folder: Path, phones: int = 1) -> None:
        suffix = secrets.token_hex(3)
        self.folder = folder
        self.phone, self.gateway, self.internet = (f"ap{role}-{suffix}" for role in ("phone", "gw", "inet"))
        self.phones = [self.phone, *(f"apphone{n}-{suffix}" for n in range(2, phones + 1))]
        self._procs: list[subprocess.Popen[bytes]] = []
        self._made: list[str] = []

    # -- building it ------------------------------------------------------------------

    def open(self) -> GateNetwork:
        try:
            for ns in (*self.phones, self.gateway, self.internet):
                ip("netns", "add", ns)
                self._made.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            if len(self.phones) == 1:
                self._cable(self.phone, PHONE_IF, self.gateway, LAN_IF)
            else:
                ip("-n", self.gateway, "link", "add", LAN_IF, "address", BRIDGE_MAC, "type", "bridge")
                ip("-n", self.gateway, "link", "set", LAN_IF, "up")
                for n, phone in enumerate(self.phones):
                    self._cable(phone, PHONE_IF, self.gateway, f"radio{n}")
                    ip("-n", self.gateway, "link", "set", f"radio{n}", "master", LAN_IF)
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
        for phone in self.phones:
            shutil.rmtree(Path("/etc/netns") / phone, ignore_errors=True)

    def __enter__(self) -> GateNetwork:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running things in it ---------------------------------------------------------

    def prefix(self, ns: str) -> list[str]:
        return [tool("ip"), "netns", "exec", ns]

    def run(self, ns: str, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(ns), *command], capture_output=True, text=True, timeout=timeout)

    def start(self, ns: str, *command: str, log: str, ready: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``command`` in ``ns`` with its output in ``folder/log``; it is killed on close.

        ``ready``: the line the program prints once it serves; this returns only after it.
        """
        if ready is None:
            with open(self.folder / log, "ab") as out:
                proc = subprocess.Popen([*self.prefix(ns), *command], stdout=out, stderr=subprocess.STDOUT)
            self._procs.append(proc)
            return proc
        proc = subprocess.Popen([*self.prefix(ns), *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._procs.append(proc)
        assert proc.stdout is not None
        seen = b""
        while (line := proc.stdout.readline()) and line.strip() != ready.encode():
            seen += line
        if not line:
            raise RuntimeError(f"{command[0]} ended before it was ready:\n{seen.decode(errors='replace')}")
        threading.Thread(target=_copy, args=(proc.stdout, self.folder / log), daemon=True).start()
        return proc

    def _web_server(self, address: str, ports: list[int], log: str) -> None:
        """``hw_sim.internet`` answering on ``address`` at ``ports``, in the internet namespace."""
        port_args = [arg for port in ports for arg in ("--port", str(port))]
        self.start(
            self.internet,
            sys.executable,
            "-m",
            "hw_sim.internet",
            "--bind",
            address,
            *port_args,
            log=log,
            ready="ready",
        )

    def start_internet(self) -> None:
        """The web server and the upstream DNS that answers every name with it."""
        self._web_server(WEB_SERVER, [80, 8080], "internet-web.log")
        ip("-n", self.internet, "addr", "add", f"{WAN_HOST}/24", "dev", INTERNET_IF)
        self._web_server(WAN_HOST, [WAN_HOST_PORT], "wan-host.log")
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

    def dhcp(self, timeout_s: int = 10, phone: str | None = None, hostname: str | None = None) -> Lease:
        """Ask for an address as a phone does (sending ``hostname``, as phones send their device
        name, e.g. "Li-Mei-de-iPhone"); configure the phone with what came back."""
        phone = phone or self.phone
        folder = self.folder / phone
        folder.mkdir(exist_ok=True)
        script = folder / "udhcpc.sh"
        script.write_text(LEASE_SCRIPT)
        script.chmod(0o755)
        (folder / "lease.env").unlink(missing_ok=True)
        done = self.run(
            phone,
            tool("busybox"),
            "udhcpc",
            *(["-x", f"hostname:{hostname}"] if hostname else []),
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
        if done.returncode or not (folder / "lease.env").exists():
            raise RuntimeError(f"the phone got no DHCP lease:\n{done.stdout}{done.stderr}")
        lease = _parse_lease((folder / "lease.env").read_text())
        ip("-n", phone, "addr", "add", f"{lease.ip}/{lease.prefix}", "dev", PHONE_IF)
        ip("-n", phone, "route", "add", "default", "via", lease.router)
        resolv = Path("/etc/netns") / phone / "resolv.conf"
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

    def connect(self, host: str, port: int, timeout: float = 1.0, ns: str | None = None) -> bool:
        """Whether the phone (or whoever is in ``ns``) can open a TCP connection to ``host:port``."""
        done = self.run(
            ns or self.phone,
            sys.executable,
            "-m",
            "hw_sim.phone",
            "connect",
            host,
            str(port),
            "--timeout",
            str(timeout),
        )
        return bool(_json_line(done)["connected"])

    def dns(self, server: str, name: str, qtype: str = "A") -> dict[str, Any]:
        """The phone asks ``server`` for ``name`` (``A`` or ``PTR``): the reply's rcode and answers."""
        done = self.run(self.phone, sys.executable, "-m", "hw_sim.phone", "dns", server, name, qtype)
        return _json_line(done)

    def phone_mac(self, phone: str | None = None) -> str:
        return self._mac(phone or self.phone, PHONE_IF)

    def _mac(self, ns: str, interface: str) -> str:
        info = json.loads(ip("-n", ns, "-j", "link", "show", interface))
        return str(info[0]["address"])


def _copy(source: IO[bytes], path: Path) -> None:
    """A started program's further output, into its log."""
    with open(path, "ab") as out:
        for line in source:
            out.write(line)
            out.flush()


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
