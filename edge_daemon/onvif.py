"""Turning the dome camera to a preset over ONVIF PTZ: one SOAP call, standard library only.

On the wire: an HTTP POST to the camera's PTZ service (e.g.
``http://192.0.2.10/onvif/ptz_service``) with Content-Type
``application/soap+xml; charset=utf-8; action=".../ptz/wsdl/GotoPreset"`` and a
SOAP 1.2 envelope whose body is ``tptz:GotoPreset`` with the media profile's and
the preset's tokens.  A camera with accounts wants a WS-Security ``UsernameToken``
in the header: the username, a random nonce (Base64), the creation time (UTC) and
PasswordDigest = Base64(SHA1(nonce + created + password)), so the password itself
never crosses the wire.  The camera answers ``GotoPresetResponse`` (HTTP 200) or a
SOAP fault whose subcode says why (``ter:NotAuthorized``, ``ter:NoEntity`` for an
unknown preset, ...), usually with HTTP 400 or 401.

Example::

    goto_preset("http://192.0.2.10/onvif/ptz_service", "Profile_1", "1", "ptz-operator", "secret")
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from xml.sax.saxutils import escape

SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
PTZ_WSDL = "http://www.onvif.org/ver20/ptz/wsdl"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
GOTO_PRESET_ACTION = f"{PTZ_WSDL}/GotoPreset"
CONTENT_TYPE = f'application/soap+xml; charset=utf-8; action="{GOTO_PRESET_ACTION}"'

# A camera is on the local network: a proxy from the environment would only be in the way.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class PtzError(RuntimeError):
    """The camera did not take the command: unreachable, no answer in time, an HTTP error or a SOAP fault."""


def goto_preset(
    url: str,
    profile_token: str,
    preset_token: str,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 3.0,
) -> None:
    """Ask the camera at ``url`` to turn to ``preset_token``; returns once it has accepted, else :class:`PtzError`."""
    request = urllib.request.Request(
        url,
        data=goto_preset_request(profile_token, preset_token, username, password),
        headers={"Content-Type": CONTENT_TYPE},
        method="POST",
    )
    where = f"ONVIF GotoPreset {preset_token!r} at {url}"
    try:
        with _opener.open(request, timeout=timeout) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        raise PtzError(f"{where}: HTTP {exc.code} {exc.reason}: {_describe(_read(exc))}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise PtzError(f"{where}: no answer within {timeout:g} s") from None
        raise PtzError(f"{where}: cannot reach the camera: {exc.reason}") from None
    except TimeoutError:
        raise PtzError(f"{where}: no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise PtzError(f"{where}: the connection failed: {exc!r}") from None
    root = _parse(answer)
    if root is None or root.find(f"{{{SOAP_ENV}}}Body/{{{PTZ_WSDL}}}GotoPresetResponse") is None:
        raise PtzError(f"{where}: not a GotoPresetResponse: {_describe(answer)}")


def goto_preset_request(
    profile_token: str,
    preset_token: str,
    username: str | None = None,
    password: str | None = None,
    *,
    nonce: bytes | None = None,
    created: str | None = None,
) -> bytes:
    """The SOAP envelope :func:`goto_preset` posts; ``nonce`` and ``created`` are fresh unless given."""
    header = ""
    if username is not None:
        nonce = os.urandom(16) if nonce is None else nonce
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if created is None else created
        digest = password_digest(nonce, created, password or "")
        header = (
            f'<s:Header><wsse:Security s:mustUnderstand="1" xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}">'
            f"<wsse:UsernameToken><wsse:Username>{escape(username)}</wsse:Username>"
            f'<wsse:Password Type="{PASSWORD_DIGEST}">{digest}</wsse:Password>'
            f'<wsse:Nonce EncodingType="{BASE64_BINARY}">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
            f"<wsu:Created>{escape(created)}</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<s:Envelope xmlns:s="{SOAP_ENV}">{header}<s:Body>'
        f'<tptz:GotoPreset xmlns:tptz="{PTZ_WSDL}">'
        f"<tptz:ProfileToken>{escape(profile_token)}</tptz:ProfileToken>"
        f"<tptz:PresetToken>{escape(preset_token)}</tptz:PresetToken>"
        "</tptz:GotoPreset></s:Body></s:Envelope>"
    ).encode()


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """WS-Security's PasswordDigest: Base64(SHA1(nonce + created + password)), the nonce as raw bytes."""
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()


def _read(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except (OSError, http.client.HTTPException):
        return b""


def _parse(body: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _describe(body: bytes) -> str:
    """A SOAP fault as 'env:Sender/ter:InvalidArgVal/ter:NoEntity: reason', or the start of whatever came instead."""
    root = _parse(body)
    fault = None if root is None else root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    if fault is None:
        text = body[:200].decode(errors="replace").strip()
        return repr(text) if text else "(empty answer)"
    codes = "/".join((value.text or "").strip() for value in fault.iter(f"{{{SOAP_ENV}}}Value"))
    reason = (fault.findtext(f"{{{SOAP_ENV}}}Reason/{{{SOAP_ENV}}}Text") or "").strip()
    return f"SOAP fault {codes}: {reason or '(no reason given)'}"
