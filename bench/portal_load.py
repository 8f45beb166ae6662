"""Benchmark: many phones joining the gate WiFi at once, against the real portal and firewall.

The portal runs as in production (``python -m captive_portal``: aiohttp, the nftables
ruleset, the access log) in the gateway's network namespace; the phones are addresses on
the other end of its "radio" cable (a veth pair), each with its own source address, so
every phone is a distinct client to the portal, its neighbour table and nftables.  Each
phone does what a phone does on joining:

1. probe: ``GET /generate_204`` for ``connectivitycheck.gstatic.com`` → 302 to the portal (captive)
2. splash: ``GET /`` on the portal → 200, the page with its accept form
3. accept: ``POST /accept`` with the form's token → 303 to the welcome page; the phone is in the nft set
4. probe again → 204 (online)

Phones arrive evenly over ``--arrive-s`` seconds and a parent reads the page for a random
``--read-s`` before tapping accept, so all of them are mid-join together.  Each request
is a new connection, as a captive-portal browser's are.  An answer with another status,
or no answer, is an error.  The last line printed is one JSON object.

    python bench/portal_load.py [--clients 1000] [--arrive-s 5] [--read-s 2]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw_sim.gatenet import GATEWAY_LAN, LAN_IF, PHONE_IF, GateNetwork  # noqa: E402
from hw_sim.netns import why_unavailable  # noqa: E402
from hw_sim.paths import tool  # noqa: E402

PROBE_HOST = "connectivitycheck.gstatic.com"
PORTAL_HOST = "wifi.alarmpost.lan"
TOKEN = re.compile(rb'name="token" value="([0-9a-f.]+)"')


# -- the phones (run inside the phone namespace) ------------------------------------------------


async def request(source: str, raw: bytes, timeout: float) -> tuple[int, bytes, float]:
    """One request on a new connection from ``source``; (status, body, seconds)."""
    start = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(GATEWAY_LAN, 80, local_addr=(source, 0)), timeout)
    try:
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else 0
    return status, body, time.perf_counter() - start


def get(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench-phone\r\nConnection: close\r\n\r\n".encode()


def post(host: str, path: str, form: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n{form}"
    ).encode()


class Joining:
    """How many phones are part-way through joining, and the most there were at once."""

    now = 0
    peak = 0

    def __enter__(self) -> None:
        Joining.now += 1
        Joining.peak = max(Joining.peak, Joining.now)

    def __exit__(self, *exc: object) -> None:
        Joining.now -= 1


async def phone(source: str, start_at: float, read_s: float, timings: list[float], errors: list[str]) -> None:
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    with Joining():
        await join(source, read_s, timings, errors)


async def join(source: str, read_s: float, timings: list[float], errors: list[str]) -> None:
    steps = 0
    try:
        status, _, took = await request(source, get(PROBE_HOST, "/generate_204"), 10)
        timings.append(took)
        steps += 1
        if status != 302:
            raise ValueError(f"captive probe answered {status}")
        status, body, took = await request(source, get(PORTAL_HOST, "/"), 10)
        timings.append(took)
        steps += 1
        found = TOKEN.search(body)
        if status != 200 or found is None:
            raise ValueError(f"splash answered {status} without a form")
        await asyncio.sleep(read_s)
        form = f"token={found.group(1).decode()}&lang=zh"
        status, _, took = await request(source, post(PORTAL_HOST, "/accept", form), 10)
        timings.append(took)
        steps += 1
        if status != 303:
            raise ValueError(f"accept answered {status}")
        status, _, took = await request(source, get(PROBE_HOST, "/generate_204"), 10)
        timings.append(took)
        steps += 1
        if status != 204:
            raise ValueError(f"probe after accepting answered {status}")
    except (TimeoutError, OSError, ValueError) as exc:
        errors.append(f"{source} step {steps + 1}: {type(exc).__name__}: {exc}")


async def phones(sources: list[str], arrive_s: float, read_s: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    timings: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter() + 0.2
    jobs = [
        phone(source, t0 + arrive_s * i / len(sources), rng.uniform(0, 2 * read_s), timings, errors)
        for i, source in enumerate(sources)
    ]
    await asyncio.gather(*jobs)
    wall = time.perf_counter() - t0
    timings.sort()
    return {
        "requests": len(timings),
        "errors": len(errors),
        "wall_s": round(wall, 2),
        "p50_ms": round(1000 * timings[len(timings) // 2], 1) if timings else None,
        "p99_ms": round(1000 * timings[min(len(timings) - 1, int(0.99 * len(timings)))], 1) if timings else None,
        "max_ms": round(1000 * timings[-1], 1) if timings else None,
        "first_errors": errors[:5],
        "joining_peak": Joining.peak,
    }


# -- the bench (run as root on the host) -------------------------------------------------------


def sources(count: int) -> list[str]:
    network = ipaddress.IPv4Network(f"{GATEWAY_LAN}/22", strict=False)
    hosts = [str(h) for h in network.hosts() if str(h) != GATEWAY_LAN]
    if count > len(hosts):
        raise SystemExit(f"at most {len(hosts)} phones fit the gate network")
    return hosts[:count]


def portal_config(folder: Path) -> Path:
    config = folder / "portal.toml"
    config.write_text(
        f"""
[portal]
session_s = 3600
[content]
cache_dir = "{folder / "cache"}"
[access_log]
path = "{folder / "access.db"}"
[log]
format = "text"
level = "warning"
"""
    )
    return config


def run(args: argparse.Namespace) -> dict[str, Any]:
    why = why_unavailable()
    if why:
        raise SystemExit(f"portal_load needs network namespaces: {why}")
    folder = Path(tempfile.mkdtemp(prefix="portal-load-"))
    with GateNetwork(folder) as net:
        phone_ips = sources(args.clients)
        batch = "".join(f"addr add {a}/22 dev {PHONE_IF}\n" for a in phone_ips)
        subprocess.run([*net.prefix(net.phone), "ip", "-batch", "-"], input=batch, text=True, check=True)
        for knob, value in (("gc_thresh1", 4096), ("gc_thresh2", 8192), ("gc_thresh3", 16384)):
            net.run(net.gateway, "sysctl", "-qw", f"net.ipv4.neigh.{LAN_IF}.{knob}={value}")
            net.run(net.gateway, "sysctl", "-qw", f"net.ipv4.neigh.default.{knob}={value}")
        portal = subprocess.Popen(
            [*net.prefix(net.gateway), sys.executable, "-m", "captive_portal", "--config", str(portal_config(folder))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(net)
            client = net.run(
                net.phone,
                sys.executable,
                __file__,
                "--phones",
                ",".join(phone_ips),
                "--arrive-s",
                str(args.arrive_s),
                "--read-s",
                str(args.read_s),
                timeout=600,
            )
            if client.returncode:
                raise SystemExit(f"the phones failed:\n{client.stdout}{client.stderr}")
            result: dict[str, Any] = json.loads(client.stdout.strip().splitlines()[-1])
            sessions = net.run(net.gateway, tool("nft"), "-j", "list", "set", "inet", "alarmpost_portal", "allowed")
            result["nft_sessions"] = count_elements(sessions.stdout)
        finally:
            portal.terminate()
            out = portal.communicate(timeout=10)[0].decode(errors="replace")
            if portal.returncode not in (0, -15):
                print(out, file=sys.stderr)
    requests = result["requests"]
    return {
        "benchmark": "portal_load",
        "clients": args.clients,
        "requests": requests,
        "errors": result["errors"],
        "rps": round(requests / result["wall_s"], 1),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "max_ms": result["max_ms"],
        "arrive_s": args.arrive_s,
        "read_s": args.read_s,
        "joining_peak": result["joining_peak"],
        "nft_sessions": result["nft_sessions"],
        "first_errors": result["first_errors"],
        "cpus": os.cpu_count(),
    }


def wait_ready(net: GateNetwork, timeout: float = 15.0) -> None:
    """The portal answers once it has loaded the ruleset and opened its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if net.connect(GATEWAY_LAN, 80, timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit("the portal did not start")


def count_elements(nft_json: str) -> int:
    for item in json.loads(nft_json or "{}").get("nftables", []):
        if "set" in item:
            return len(item["set"].get("elem", []))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--arrive-s", type=float, default=5.0, help="the phones arrive evenly over this long")
    parser.add_argument("--read-s", type=float, default=2.0, help="mean time a parent reads the page before accepting")
    parser.add_argument("--phones", help=argparse.SUPPRESS)  # inside the phone namespace: the addresses to use
    args = parser.parse_args()
    if args.phones:
        result = asyncio.run(phones(args.phones.split(","), args.arrive_s, args.read_s, seed=1))
    else:
        result = run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
