"""The portal's HTTP behaviour on loopback: probes, splash, accept, the RFC 8908 API, bad requests.

The real server (aiohttp) runs on a free loopback port with the bench's in-memory firewall;
each loopback source address is a different phone.  The same server behind real nftables in
network namespaces is tested in test_portal_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from captive_portal.accesslog import AccessLog
from captive_portal.config import parse_config
from captive_portal.content import ContentStore
from captive_portal.firewall import Client
from captive_portal.server import Portal, serve
from captive_portal.stats import Stats
from hw_sim.mosquitto import free_port
from hw_sim.portal_sim import MemoryFirewall, loopback_mac

PORTAL = "wifi.alarmpost.lan"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class LoopbackPortal:
    """The real portal server on a loopback port, in its own thread's event loop."""

    def __init__(self, folder: Path, session_s: int = 600) -> None:
        self.port = free_port("127.0.0.1")
        self.config = parse_config(
            f"""
[lan]
interface = "lo"
address = "127.0.0.1"
prefix = 16
dhcp_start = "127.0.0.10"
dhcp_end = "127.0.255.250"
[wifi]
mode = "external"
[portal]
port = {self.port}
session_s = {session_s}
"""
        )
        self.clock = Clock()
        self.firewall = MemoryFirewall(self.config.network, clock=self.clock)
        self.access_log = AccessLog(folder / "access.db", 60, post="gate-1")
        self.stats = Stats(folder / "stats.db")
        content = ContentStore(folder / "cache", None, 1 << 20)
        self.unknown: set[str] = set()  # addresses whose MAC the "kernel" has not resolved
        self.portal = Portal(self.config, self.firewall, content, self.access_log, self.stats, mac_lookup=self._mac)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the portal did not start"

    def _mac(self, ip: str) -> str | None:
        return None if ip in self.unknown else loopback_mac(ip)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = self.loop.run_until_complete(serve(self.portal, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.access_log.close()

    def client(self, source: str) -> Client:
        return Client.parse(source, loopback_mac(source), self.config.network)

    def raw(self, data: bytes, source: str = "127.0.0.2") -> tuple[int, dict[str, str], bytes]:
        """Send ``data`` as it is from ``source``; the status, headers and body that come back."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(source, 0)) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        return status, headers, body

    def get(self, host: str, path: str, source: str = "127.0.0.2", **headers: str) -> tuple[int, dict[str, str], bytes]:
        extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        return self.raw(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode(), source)

    def post(self, path: str, form: str, source: str = "127.0.0.2") -> tuple[int, dict[str, str], bytes]:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {PORTAL}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form.encode())}\r\nConnection: close\r\n\r\n{form}"
        )
        return self.raw(request.encode(), source)

    def accept(self, source: str = "127.0.0.2") -> tuple[int, dict[str, str], bytes]:
        status, _, page = self.get(PORTAL, "/", source)
        assert status == 200
        token = re.search(rb'name="token" value="([^"]+)"', page)
        assert token is not None, "the splash has no accept form"
        return self.post("/accept", f"token={token.group(1).decode()}&lang=zh", source)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[LoopbackPortal]:
    served = LoopbackPortal(tmp_path)
    yield served
    served.stop()


PROBES = [
    ("connectivitycheck.gstatic.com", "/generate_204", 204, b""),
    ("www.google.com", "/gen_204", 204, b""),
    ("connect.rom.miui.com", "/generate_204", 204, b""),
    ("connectivitycheck.platform.hicloud.com", "/generate_204", 204, b""),
    ("captive.apple.com", "/hotspot-detect.html", 200, b"<BODY>Success</BODY>"),
    ("www.msftconnecttest.com", "/connecttest.txt", 200, b"Microsoft Connect Test"),
    ("detectportal.firefox.com", "/success.txt", 200, b"success"),
    ("detectportal.firefox.com", "/canonical.html", 200, b"captive-portal"),
]


@pytest.mark.parametrize(("host", "path", "online_status", "online_body"), PROBES)
def test_probes_say_captive_before_and_online_after_accepting(
    portal: LoopbackPortal, host: str, path: str, online_status: int, online_body: bytes
) -> None:
    status, headers, _ = portal.get(host, path)
    assert status == 302 and headers["location"] == portal.config.portal_url
    assert portal.accept()[0] == 303
    status, _, body = portal.get(host, path)
    assert status == online_status and online_body in body


def test_any_other_page_goes_to_the_splash_until_accepted(portal: LoopbackPortal) -> None:
    status, headers, _ = portal.get("www.example.com", "/news?id=1")
    assert status == 302 and headers["location"] == portal.config.portal_url
    assert headers["cache-control"] == "no-store"
    assert portal.stats.snapshot(0)["joins"] == 1


def test_splash_is_chinese_by_default_english_on_request(portal: LoopbackPortal) -> None:
    status, headers, page = portal.get(PORTAL, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    assert '<html lang="zh-CN">' in text and "同意条款并上网" in text
    assert "<script" not in text.lower()  # works with JavaScript off
    assert 'method="post" action="/accept"' in text  # accepting is a full navigation
    assert len(page) < 30_000  # light for a slow phone
    english = portal.get(PORTAL, "/?lang=en")[2].decode()
    assert '<html lang="en">' in english and "Accept the terms and go online" in english
    preferred = portal.get(PORTAL, "/", Accept_Language="en-GB,en;q=0.9,zh;q=0.5")[2].decode()
    assert '<html lang="en">' in preferred


def test_accept_opens_a_logged_session_and_the_api_reports_it(portal: LoopbackPortal) -> None:
    api = portal.get(PORTAL, "/api/captive")
    assert api[1]["content-type"] == "application/captive+json"
    before = json.loads(api[2])
    assert before == {
        "captive": True,
        "user-portal-url": portal.config.portal_url,
        "venue-info-url": portal.config.portal_url + "venue",
    }
    status, headers, _ = portal.accept()
    assert status == 303 and headers["location"] == "/welcome?lang=zh"
    assert portal.firewall.remaining(portal.client("127.0.0.2")) == 600
    after = json.loads(portal.get(PORTAL, "/api/captive")[2])
    assert after["captive"] is False and after["seconds-remaining"] == 600 and after["can-extend-session"] is True
    (session,) = portal.access_log.open_sessions()
    assert (session.mac, session.ip) == (loopback_mac("127.0.0.2"), "127.0.0.2")
    welcome = portal.get(PORTAL, "/welcome?lang=zh")[2].decode()
    assert "已连接" in welcome and 'http-equiv="refresh" content="601;url=/?lang=zh"' in welcome
    # another phone is still captive
    assert portal.get("captive.apple.com", "/hotspot-detect.html", source="127.0.0.3")[0] == 302


def test_session_end_blocks_again_and_is_logged_off(portal: LoopbackPortal) -> None:
    portal.accept()
    portal.clock.now += 601
    assert portal.get("connectivitycheck.gstatic.com", "/generate_204")[0] == 302
    assert portal.get(PORTAL, "/welcome")[1]["location"] == "/?lang=zh"
    portal.portal.sweep()
    assert portal.access_log.open_sessions() == []
    (ended,) = portal.access_log.export(0, 2**40)
    assert ended["end_reason"] == "timeout"


def test_a_forged_or_stale_accept_form_opens_nothing(portal: LoopbackPortal) -> None:
    status, _, page = portal.post("/accept", "token=1700000000.0123456789abcdef0123456789abcdef&lang=zh")
    assert status == 400 and "页面已过期" in page.decode()
    # a token from another phone's page
    other = re.search(rb'name="token" value="([^"]+)"', portal.get(PORTAL, "/", source="127.0.0.3")[2])
    assert other is not None
    assert portal.post("/accept", f"token={other.group(1).decode()}")[0] == 400
    assert portal.firewall.sessions() == {}
    assert portal.access_log.open_sessions() == []


@pytest.mark.parametrize(
    "token",
    [
        "１７００００００００.0123456789abcdef0123456789abcdef",  # full-width digits: isdigit() says yes
        "٣.0123456789abcdef0123456789abcdef",  # Arabic-Indic digit
        "1700000000.0123456789abcdef0123456789abcdeé",
        "令牌",
    ],
)
def test_a_non_ascii_accept_token_gets_a_clear_400(portal: LoopbackPortal, token: str) -> None:
    status, _, body = portal.post("/accept", urllib.parse.urlencode({"token": token, "lang": "zh"}))
    assert status == 400 and b"token is not plain ASCII" in body, (status, body[:300])
    assert portal.firewall.sessions() == {}
    assert portal.access_log.open_sessions() == []
    assert portal.accept()[0] == 303  # and the phone can still accept with its real form


def test_a_device_the_kernel_cannot_name_gets_a_clear_403(portal: LoopbackPortal) -> None:
    portal.unknown.add("127.0.0.9")
    status, _, page = portal.get(PORTAL, "/", source="127.0.0.9")
    assert status == 403 and "校门WiFi" in page.decode()


BAD_REQUESTS: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("garbage request line", b"HELLO\r\n\r\n", (400,)),
    ("binary noise", bytes(range(256)) + b"\r\n\r\n", (400,)),
    ("no Host", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", (400,)),
    ("Host with a path", b"GET / HTTP/1.1\r\nHost: wifi.alarmpost.lan/../x\r\nConnection: close\r\n\r\n", (400,)),
    ("Host with spaces", b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n", (400,)),
    (
        "oversized header",
        b"GET / HTTP/1.1\r\nHost: wifi.alarmpost.lan\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        (400, 431),
    ),
    ("oversized request line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x.lan\r\n\r\n", (400, 414)),
    ("bare LF in a header", b"GET / HTTP/1.1\r\nHost: wifi.alarmpost.lan\nX-Injected: 1\r\n\r\n", (400,)),
    (
        "wrong method",
        b"PUT /accept HTTP/1.1\r\nHost: wifi.alarmpost.lan\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        (405,),
    ),
    ("unknown page", b"GET /admin HTTP/1.1\r\nHost: wifi.alarmpost.lan\r\nConnection: close\r\n\r\n", (404,)),
    (
        "oversized body",
        b"POST /accept HTTP/1.1\r\nHost: wifi.alarmpost.lan\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 20000\r\nConnection: close\r\n\r\n" + b"a" * 20000,
        (413,),
    ),
]


@pytest.mark.parametrize(("name", "request_bytes", "statuses"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_clear_4xx_and_change_nothing(
    portal: LoopbackPortal, name: str, request_bytes: bytes, statuses: tuple[int, ...]
) -> None:
    status, _, body = portal.raw(request_bytes)
    assert status in statuses, f"{name}: {status} {body[:200]!r}"
    assert body.strip(), "the refusal says what is wrong"
    assert portal.firewall.sessions() == {}
    assert portal.get(PORTAL, "/")[0] == 200  # and the portal still serves


@pytest.mark.parametrize(
    "path",
    [
        "/img/../../../etc/passwd",
        "/img/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/img/..%2F..%2Fetc%2Fpasswd",
        "/../etc/passwd",
    ],
)
def test_path_traversal_finds_nothing(portal: LoopbackPortal, path: str) -> None:
    status, _, body = portal.get(PORTAL, path)
    assert status in (400, 404) and b"root:" not in body


def test_nothing_from_the_request_reaches_a_response_header(portal: LoopbackPortal) -> None:
    status, headers, _ = portal.get(PORTAL, "/welcome?lang=en%0d%0aSet-Cookie:%20stolen=1")
    assert status == 303 and headers["location"] == "/?lang=zh"
    assert "set-cookie" not in headers
    status, headers, _ = portal.get("evil.example%0d%0aX-A:1", "/")
    assert status == 400 and "x-a" not in headers


def test_security_headers_on_pages(portal: LoopbackPortal) -> None:
    headers = portal.get(PORTAL, "/")[1]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_answers_for_other_hosts_close_the_connection(portal: LoopbackPortal) -> None:
    """A connection the firewall redirected before accepting must not be reused after it."""
    keep_alive = b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
    status, headers, _ = portal.raw(keep_alive)
    assert status == 302 and headers["connection"] == "close"
    portal.accept()
    status, headers, _ = portal.raw(keep_alive)
    assert status == 503 and headers["connection"] == "close"


@pytest.mark.parametrize("host", ["my_printer.local", "www.example.com.", "captive.apple.com."])
def test_unusual_but_real_host_names_still_reach_the_splash(portal: LoopbackPortal, host: str) -> None:
    status, headers, _ = portal.get(host, "/hotspot-detect.html")
    assert status == 302 and headers["location"] == portal.config.portal_url
    portal.accept()
    expected = 200 if host.startswith("captive.apple.com") else 503
    assert portal.get(host, "/hotspot-detect.html")[0] == expected


def test_impressions_count_splash_views_only(portal: LoopbackPortal) -> None:
    shown = len(portal.portal.content.current_items(0))  # type: ignore[attr-defined]
    portal.get(PORTAL, "/")
    portal.raw(f"HEAD / HTTP/1.1\r\nHost: {PORTAL}\r\nConnection: close\r\n\r\n".encode())
    portal.get(PORTAL, "/venue")
    impressions = portal.stats.snapshot(0)["impressions"]
    assert len(impressions) == shown and set(impressions.values()) == {1}
