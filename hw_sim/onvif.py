"""A dome camera's ONVIF PTZ service, as far as GotoPreset goes: for testing the daemon's PTZ client.

:class:`FakeOnvifCamera` listens on a loopback port at ``/onvif/ptz_service``,
checks each request as a camera does (a SOAP 1.2 envelope, the WS-Security
UsernameToken's PasswordDigest against its account, a preset it knows) and
answers ``GotoPresetResponse`` or the SOAP fault a camera sends: ``ter:NotAuthorized``
for a wrong or missing password, ``ter:NoEntity`` for an unknown preset,
``ter:WellFormed`` for broken XML.  The digest is checked here independently of
:mod:`edge_daemon.onvif`, so a mistake there cannot hide.

Example::

    from hw_sim.onvif import FakeOnvifCamera
    from edge_daemon.onvif import goto_preset

    with FakeOnvifCamera(username="ptz-operator", password="secret", presets=("gate",)) as camera:
        goto_preset(f"http://127.0.0.1:{camera.port}/onvif/ptz_service", "Profile_1", "gate", "ptz-operator", "secret")
        request = camera.wait_for_request(5)   # PtzRequest(profile='Profile_1', preset='gate', ...)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from xml.sax.saxutils import escape

log = logging.getLogger("hw_sim.onvif")

SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
PTZ_WSDL = "http://www.onvif.org/ver20/ptz/wsdl"
ONVIF_ERROR = "http://www.onvif.org/ver10/error"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST_TYPE = "#PasswordDigest"  # the end of the Password element's Type URI


@dataclass(frozen=True)
class PtzRequest:
    """An accepted GotoPreset: its tokens, the account (None without a UsernameToken), when, and what came."""

    profile: str
    preset: str
    username: str | None
    received: float  # unix seconds
    body: bytes
    content_type: str


class Refusal(Exception):
    """A SOAP fault to answer with: HTTP status, the fault code and its subcodes, outermost first, and a reason."""

    def __init__(self, status: int, code: str, subcodes: list[str], reason: str) -> None:
        super().__init__(f"{'/'.join([code, *subcodes])}: {reason}")
        self.status, self.code, self.subcodes, self.reason = status, code, subcodes, reason


class FakeOnvifCamera:
    """An ONVIF PTZ endpoint with one account (or none) and a set of preset tokens.

    ``requests`` lists every accepted GotoPreset, ``refusals`` the innermost
    fault subcode of every refused one.  ``profiles`` None accepts any profile token.
    """

    path = "/onvif/ptz_service"
    not_authorized_status = 400  # what ONVIF Core says; many cameras answer 401
    max_clock_skew_s = 300.0  # a UsernameToken created further from now than this is refused (a replay)
    max_body_bytes = 64 * 1024

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        presets: Iterable[str] = ("1",),
        profiles: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.username = username
        self.password = password or ""
        self.presets = set(presets)
        self.profiles = None if profiles is None else set(profiles)
        self.host = host
        self.port = port
        self.requests: list[PtzRequest] = []
        self.refusals: list[str] = []
        self._taken = 0  # requests already handed out by wait_for_request
        self._arrived = threading.Condition()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen and return the port."""
        if self._httpd is not None:
            raise RuntimeError("the fake ONVIF camera is already running")
        self._httpd = _HttpServer((self.host, self.port), _OnvifHandler)
        self._httpd.camera = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-onvif", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait_for_request(self, timeout: float = 5.0) -> PtzRequest:
        """The next accepted request not handed out before, waiting up to ``timeout`` s; TimeoutError if none."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) > self._taken, timeout):
                raise TimeoutError(f"no GotoPreset accepted within {timeout} s (refused: {self.refusals})")
            self._taken += 1
            return self.requests[self._taken - 1]

    def answer(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        """HTTP status and SOAP envelope for one POST; never raises."""
        try:
            request = self._accept(body, content_type)
        except Refusal as refusal:
            with self._arrived:
                self.refusals.append((refusal.subcodes or [refusal.code])[-1])
            log.info("fake ONVIF camera refused a request: %s", refusal)
            return refusal.status, soap_fault(refusal.code, refusal.subcodes, refusal.reason)
        except Exception as exc:  # a bug or an input nobody foresaw: a camera answers, it does not crash
            log.exception("fake ONVIF camera failed on a request")
            return 500, soap_fault("env:Receiver", [], f"internal error: {exc!r}")
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
        return 200, _envelope(f'<tptz:GotoPresetResponse xmlns:tptz="{PTZ_WSDL}"/>')

    def _accept(self, body: bytes, content_type: str) -> PtzRequest:
        if content_type.split(";")[0].strip().lower() != "application/soap+xml":
            raise Refusal(
                415, "env:Sender", [], f"SOAP 1.2 wants Content-Type application/soap+xml, not {content_type!r}"
            )
        if len(body) > self.max_body_bytes:
            raise Refusal(413, "env:Sender", [], f"a request of {len(body)} bytes is too big")
        try:
            envelope = ET.fromstring(body)
        except ET.ParseError as exc:
            raise Refusal(400, "env:Sender", ["ter:WellFormed"], f"the request is not well-formed XML: {exc}") from None
        if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
            raise Refusal(500, "env:VersionMismatch", [], f"not a SOAP 1.2 Envelope but {envelope.tag}")
        username = self._authenticate(envelope)
        call = envelope.find(f"{{{SOAP_ENV}}}Body/*")
        if call is None or call.tag != f"{{{PTZ_WSDL}}}GotoPreset":
            name = "nothing" if call is None else call.tag
            raise Refusal(
                400, "env:Receiver", ["ter:ActionNotSupported"], f"this camera only does GotoPreset, not {name}"
            )
        profile = call.findtext(f"{{{PTZ_WSDL}}}ProfileToken") or ""
        preset = call.findtext(f"{{{PTZ_WSDL}}}PresetToken") or ""
        if self.profiles is not None and profile not in self.profiles:
            raise Refusal(400, "env:Sender", ["ter:InvalidArgVal", "ter:NoProfile"], f"no profile {profile!r}")
        if preset not in self.presets:
            raise Refusal(400, "env:Sender", ["ter:InvalidArgVal", "ter:NoEntity"], f"no preset {preset!r}")
        return PtzRequest(profile, preset, username, time.time(), body, content_type)

    def _authenticate(self, envelope: ET.Element) -> str | None:
        """The UsernameToken's username once its digest is right; without an account anyone may turn the camera."""
        token = envelope.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        given = None if token is None else token.findtext(f"{{{WSSE}}}Username")
        if self.username is None:
            return given
        if token is None:
            raise self._not_authorized("no WS-Security UsernameToken")
        if given != self.username:
            raise self._not_authorized(f"no account {given!r}")
        password = token.find(f"{{{WSSE}}}Password")
        if password is None or not password.get("Type", "").endswith(PASSWORD_DIGEST_TYPE):
            raise self._not_authorized("the password must be a PasswordDigest")
        created = token.findtext(f"{{{WSU}}}Created") or ""
        try:
            nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "", validate=True)
            age = time.time() - datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except (binascii.Error, ValueError):
            raise self._not_authorized("the nonce or the creation time is malformed") from None
        if abs(age) > self.max_clock_skew_s:
            raise self._not_authorized(f"the token was created {age:.0f} s from now")
        expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + self.password.encode()).digest())
        if not hmac.compare_digest(expected, (password.text or "").strip().encode()):
            raise self._not_authorized("wrong password")
        return given

    def _not_authorized(self, why: str) -> Refusal:
        return Refusal(self.not_authorized_status, "env:Sender", ["ter:NotAuthorized"], f"Sender not authorized: {why}")

    def __enter__(self) -> FakeOnvifCamera:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def soap_fault(code: str, subcodes: list[str], reason: str) -> bytes:
    """A SOAP 1.2 fault envelope; ``subcodes`` nest outermost first, as ONVIF writes them."""
    nested = ""
    for subcode in reversed(subcodes):
        nested = f"<env:Subcode><env:Value>{subcode}</env:Value>{nested}</env:Subcode>"
    return _envelope(
        f"<env:Fault><env:Code><env:Value>{code}</env:Value>{nested}</env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason></env:Fault>'
    )


def _envelope(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope xmlns:env="{SOAP_ENV}" xmlns:ter="{ONVIF_ERROR}">'
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    camera: FakeOnvifCamera


class _OnvifHandler(BaseHTTPRequestHandler):
    server_version = "alarmpost-fake-onvif"
    timeout = 10.0

    def do_POST(self) -> None:
        camera = cast(_HttpServer, self.server).camera
        if self.path != camera.path:
            self._reply(404, b"no such service", "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= camera.max_body_bytes:
            status, answer = 400, soap_fault("env:Sender", [], "a missing, bad or too big Content-Length")
        else:
            status, answer = camera.answer(self.rfile.read(length), self.headers.get("Content-Type", ""))
        self._reply(status, answer, "application/soap+xml; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ONVIF %s: " + format, self.client_address, *args)
