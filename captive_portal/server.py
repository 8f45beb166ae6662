"""The portal's HTTP server (aiohttp): probes, the splash, accept, the RFC 8908 API.

Every request arrives here either because the phone asked for the portal's own name, or
because the firewall redirected an unauthenticated phone's HTTP (and its DNS answered
every name with the portal).  So the ``Host`` header decides what a request is:

* another host: an OS probe (answered "online" once the phone has accepted) or any web
  page (sent to the splash with a 302 while the phone is captive);
* the portal's own name or address: its pages and API.

A phone is known by its address and the MAC the kernel resolved for it; both are checked
(:class:`captive_portal.firewall.Client`) before anything reaches nftables.  The portal
keeps nothing per phone but the access log's open session: whether a phone is online is
read from the kernel's set, so a session ends on time whatever happens to this process.

Bad requests get a 4xx with a line that says what is wrong: aiohttp's parser refuses
malformed HTTP and header lines over :attr:`Portal.max_field_size`; a missing or malformed
``Host``, a body over :attr:`Portal.max_body`, a forged or stale accept form (or one whose
token is not ASCII), and a wrong method are refused here.  Nothing from a request is ever
written into a response header, and the portal's log holds no phone's IP or MAC address
(the access log keeps those, for as long as the law requires).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from captive_portal import pages, probes
from captive_portal.config import Config
from captive_portal.firewall import Client, FirewallError, NeighbourTable

log = logging.getLogger("alarmpost.portal")

# a host name (underscores and a final dot happen in the wild) or an IPv4 address, and a port
HOST_HEADER = re.compile(
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?(:[0-9]{1,5})?"
)
IMAGE_NAME = re.compile(r"[0-9a-f]{64}\.(jpg|png|webp)")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}
CAPTIVE_JSON = "application/captive+json"
# What in a message could name a phone: its IPv4 address or its MAC (nft's errors quote the command)
PHONE_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}\b")


def without_addresses(text: str) -> str:
    """``text`` for the portal's log: every IPv4 and MAC address in it replaced, as the log keeps none.

    >>> without_addresses("add element inet alarmpost_portal allowed { 10.73.0.23 . 02:00:00:00:00:01 }")
    'add element inet alarmpost_portal allowed { [address] . [address] }'
    """
    return PHONE_ADDRESS.sub("[address]", text)


class Firewall(Protocol):
    def allow(self, client: Client, seconds: int) -> None: ...
    def remaining(self, client: Client) -> int | None: ...
    def sessions(self) -> dict[Client, int]: ...


class Content(Protocol):
    def current_items(self, now: float) -> Sequence[Any]: ...
    def image(self, name: str) -> tuple[bytes, str] | None: ...


class AccessLog(Protocol):
    def log_on(self, mac: str, ip: str, at: float | None = None) -> int: ...
    def log_off(self, session_id: int, at: float | None = None, reason: str = "timeout") -> None: ...


class Stats(Protocol):
    active_sessions: int

    def joined(self, mac: str) -> None: ...
    def accepted(self, mac: str) -> None: ...
    def impression(self, item_id: str) -> None: ...


class Portal:
    """The request handler and the session sweeper.

    Run it with :func:`serve`; the service (:mod:`captive_portal.service`) builds its parts.
    """

    token_ttl_s = 1800  # how long a splash page's accept form stays valid
    sweep_s = 2.0  # how often ended sessions are found in the kernel's set and logged off
    max_field_size = 4096  # a request line or header line longer than this is refused (400)
    max_body = 4096  # an accept form is under 100 bytes

    def __init__(
        self,
        config: Config,
        firewall: Firewall,
        content: Content,
        access_log: AccessLog,
        stats: Stats,
        mac_lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self.config = config
        self.firewall = firewall
        self.content = content
        self.access_log = access_log
        self.stats = stats
        self.mac_lookup = mac_lookup or NeighbourTable()
        self.network = config.network
        self.sessions: dict[Client, int] = {}  # online phones -> their open access log session
        self._secret = secrets.token_bytes(32)
        portal = config.portal
        own = {portal.hostname, config.lan.address}
        ports = {portal.port, portal.https_port} if portal.tls_cert_file else {portal.port}
        self.own_hosts = own | {f"{h}:{p}" for h in own for p in ports}

    # -- the application ----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        host = request.headers.get("Host", "").strip().lower()
        if not host:
            return self._text(400, "400 Bad Request: the Host header is missing")
        if len(host) > 260 or not HOST_HEADER.fullmatch(host):
            return self._text(400, "400 Bad Request: the Host header is not a host name or address")
        client = self._client(request.remote)
        remaining = self.firewall.remaining(client) if client is not None else None
        host = _without_final_dot(host)
        probe = probes.probe(host.partition(":")[0], request.path)
        if probe is not None and remaining is not None:
            return web.Response(
                status=probe.answer.status,
                body=probe.answer.body,
                content_type=probe.answer.content_type,
                headers={"Cache-Control": "no-store"},
            )
        if host not in self.own_hosts or probe is not None:
            return self._elsewhere(client, remaining)
        return await self._own(request, client, remaining)

    def _elsewhere(self, client: Client | None, remaining: int | None) -> web.StreamResponse:
        """A request for another host: captive phones go to the splash."""
        if remaining is not None:
            # online, yet it reached the portal on a connection the firewall redirected before it
            # accepted: close it, so the browser's next try opens a new one that goes out
            response = self._text(503, "503 Service Unavailable: you are online; please reload", {"Retry-After": "1"})
        else:
            if client is not None:
                self.stats.joined(client.mac)
            response = web.Response(status=302, headers={"Location": self.config.portal_url, **SECURITY_HEADERS})
        response.force_close()
        return response

    async def _own(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        routes: dict[str, tuple[tuple[str, ...], Callable[..., Any]]] = {
            "/": (("GET", "HEAD"), self._splash),
            "/accept": (("POST",), self._accept),
            "/welcome": (("GET", "HEAD"), self._welcome),
            "/api/captive": (("GET", "HEAD"), self._api),
            "/venue": (("GET", "HEAD"), self._venue),
        }
        path = request.path
        if path.startswith("/img/"):
            routes[path] = (("GET", "HEAD"), self._image)
        if path not in routes:
            return self._text(404, f"404 Not Found: there is no page {path[:80]!r} on the portal")
        methods, handler = routes[path]
        if request.method not in methods:
            return self._text(405, f"405 Method Not Allowed: use {' or '.join(methods)}", {"Allow": ", ".join(methods)})
        response: web.StreamResponse = await handler(request, client, remaining)
        return response

    # -- pages --------------------------------------------------------------------------

    async def _splash(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        lang = self._lang(request)
        if remaining is not None:
            return self._redirect(f"/welcome?lang={lang}")
        if client is None:
            return self._html(403, pages.message(self._copy(lang), self._copy(lang).lang.not_on_wifi))
        return self._html(200, self._splash_page(client, lang, seen=request.method == "GET"))

    def _splash_page(self, client: Client, lang: str, note: str = "", seen: bool = False) -> str:
        """The splash; ``seen``: a phone is shown it, so each item counts one impression."""
        items = self.content.current_items(time.time())
        if seen:
            for item in items:
                self.stats.impression(item.id)
        return pages.splash(self._copy(lang), items, self._token(client), lang, note)

    async def _accept(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        form = await request.post()
        lang = pages.pick_lang(str(form.get("lang", "")), None)
        copy = self._copy(lang)
        if client is None:
            return self._html(403, pages.message(copy, copy.lang.not_on_wifi))
        token = str(form.get("token", ""))
        if not token.isascii():
            # a page of ours never makes one: the form was altered, or mangled on the way
            return self._text(400, "400 Bad Request: the accept form's token is not plain ASCII; reload the page")
        if not self._token_ok(client, token):
            return self._html(400, self._splash_page(client, lang, note=copy.lang.out_of_date))
        if remaining is not None and not self.config.portal.can_extend:
            return self._redirect(f"/welcome?lang={lang}")
        try:
            self._open_session(client)
        except (FirewallError, OSError, ValueError) as exc:
            log.error("could not let a phone out: %s", without_addresses(str(exc)))
            return self._html(503, pages.message(copy, copy.lang.busy))
        self.stats.accepted(client.mac)
        return self._redirect(f"/welcome?lang={lang}")

    def _open_session(self, client: Client) -> None:
        """Log on first, then open the firewall: nobody goes online without the log the law requires."""
        new = client not in self.sessions
        session_id = self.access_log.log_on(client.mac, str(client.ip)) if new else self.sessions[client]
        try:
            self.firewall.allow(client, self.config.portal.session_s)
        except FirewallError:
            if new:
                self.access_log.log_off(session_id, reason="revoked")
            raise
        self.sessions[client] = session_id

    async def _welcome(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        lang = self._lang(request)
        if client is None or remaining is None:
            return self._redirect(f"/?lang={lang}")
        page = pages.welcome(
            self._copy(lang), self._items(), remaining, self._token(client), self.config.portal.can_extend
        )
        return self._html(200, page)

    async def _venue(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        lang = self._lang(request)
        return self._html(200, pages.venue(self._copy(lang), self._items()))

    async def _api(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        """RFC 8908: whether this phone is captive, where to go, and how long it has left."""
        state: dict[str, Any] = {
            "captive": remaining is None,
            "user-portal-url": self.config.secure_portal_url,
            "venue-info-url": self.config.secure_portal_url + "venue",
        }
        if remaining is not None:
            state["seconds-remaining"] = remaining
            state["can-extend-session"] = self.config.portal.can_extend
        return web.Response(
            status=200,
            body=json.dumps(state).encode(),
            headers={"Content-Type": CAPTIVE_JSON, "Cache-Control": "private, no-store"},
        )

    async def _image(self, request: web.Request, client: Client | None, remaining: int | None) -> web.StreamResponse:
        name = request.path[len("/img/") :]
        found = self.content.image(name) if IMAGE_NAME.fullmatch(name) else None
        if found is None:
            return self._text(404, "404 Not Found: no such picture")
        data, media_type = found
        # named by their SHA-256, so a name always means the same bytes
        return web.Response(body=data, content_type=media_type, headers={"Cache-Control": "max-age=86400, immutable"})

    # -- sessions -----------------------------------------------------------------------

    def sweep(self) -> None:
        """Log off the phones whose sessions the kernel has ended."""
        current = self.firewall.sessions()
        for client, session_id in list(self.sessions.items()):
            if client not in current:
                self.access_log.log_off(session_id, reason="timeout")
                del self.sessions[client]
        self.stats.active_sessions = len(current)

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            try:
                self.sweep()
            except (FirewallError, OSError) as exc:
                log.error("session sweep failed: %s", without_addresses(str(exc)))

    # -- helpers ------------------------------------------------------------------------

    def _client(self, remote: str | None) -> Client | None:
        """The phone behind ``remote``, if it is on the gate network and the kernel knows its MAC."""
        if remote is None:
            return None
        try:
            if ipaddress.IPv4Address(remote) not in self.network:
                return None
        except ValueError:
            return None
        mac = self.mac_lookup(remote)
        if mac is None:
            return None
        try:
            return Client.parse(remote, mac, self.network)
        except ValueError as exc:
            log.warning("refused a phone: %s", without_addresses(str(exc)))
            return None

    def _items(self) -> Sequence[Any]:
        return self.content.current_items(time.time())

    def _lang(self, request: web.Request) -> str:
        return pages.pick_lang(request.query.get("lang"), request.headers.get("Accept-Language"))

    def _copy(self, lang: str) -> pages.Copy:
        portal = self.config.portal
        zh = lang == "zh"
        return pages.Copy.of(
            pages.LANGS[lang],
            portal.venue_name_zh if zh else portal.venue_name_en,
            portal.terms_zh if zh else portal.terms_en,
            self.config.access_log.retention_days,
        )

    def _token(self, client: Client, issued: int | None = None) -> str:
        """An accept form's token: bound to this phone and to the time the splash was shown."""
        issued = int(time.time()) if issued is None else issued
        message = f"{client.ip}|{client.mac}|{issued}".encode()
        return f"{issued}.{hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]}"

    def _token_ok(self, client: Client, token: str) -> bool:
        issued_text, _, _ = token.partition(".")
        if not issued_text.isdigit() or len(token) > 64:
            return False
        issued = int(issued_text)
        if not -60 <= time.time() - issued <= self.token_ttl_s:
            return False
        return hmac.compare_digest(self._token(client, issued), token)

    @staticmethod
    def _html(status: int, page: str) -> web.Response:
        return web.Response(status=status, text=page, content_type="text/html", headers=SECURITY_HEADERS)

    @staticmethod
    def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=text + "\n", headers={**SECURITY_HEADERS, **(headers or {})})

    @staticmethod
    def _redirect(location: str) -> web.Response:
        # Locations are built from fixed paths and checked languages only, never from the request
        return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _without_final_dot(host: str) -> str:
    name, colon, port = host.partition(":")
    return name.rstrip(".") + colon + port


async def serve(portal: Portal, host: str, port: int, ssl_context: Any = None) -> web.AppRunner:
    """Start ``portal`` listening on ``host:port``; stop it with ``await runner.cleanup()``."""
    runner = web.AppRunner(
        portal.app(),
        access_log=None,  # an HTTP access log would keep addresses the law does not ask for
        keepalive_timeout=10,  # an idle connection is closed soon: a phone cannot hoard sockets
        max_line_size=portal.max_field_size,
        max_field_size=portal.max_field_size,
        max_headers=64,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=1024, reuse_address=True)
    await site.start()
    return runner
