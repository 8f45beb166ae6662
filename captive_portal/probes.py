"""The connectivity probes phones send on joining a network, and the answers that mean "online".

A phone decides whether it is behind a captive portal by fetching a known URL over plain
HTTP.  If the answer is exactly the expected one, the phone is online; anything else (the
portal's redirect, here) makes it open its captive-portal browser on the splash page.

>>> probe("connectivitycheck.gstatic.com", "/generate_204").vendor
'android'
>>> probe("connect.rom.miui.com", "/generate_204").answer.status
204
>>> probe("captive.apple.com", "/hotspot-detect.html").answer.body
b'<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>'
>>> probe("www.example.com", "/") is None
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """The reply that tells a probing OS it is online."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True)
class Probe:
    vendor: str
    answer: Answer


NO_CONTENT = Answer(204)
APPLE_SUCCESS = Answer(200, b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>", "text/html")
WINDOWS_CONNECT_TEST = Answer(200, b"Microsoft Connect Test")
WINDOWS_NCSI = Answer(200, b"Microsoft NCSI")
FIREFOX_CANONICAL = Answer(
    200,
    b'<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>',
    "text/html",
)
FIREFOX_SUCCESS = Answer(200, b"success\n")

# Android and the Chinese Android vendors (MIUI, EMUI/HarmonyOS, vivo, OPPO, Smartisan...)
# all fetch /generate_204 (or Google's /gen_204), each from its own host: match the path on any host.
ANDROID_PATHS = ("/generate_204", "/gen_204")

APPLE_HOSTS = (
    "captive.apple.com",
    "www.apple.com",
    "www.appleiphonecell.com",
    "www.itools.info",
    "www.ibook.info",
    "www.airport.us",
    "www.thinkdifferent.us",
)
APPLE_PATHS = ("/hotspot-detect.html", "/library/test/success.html")

BY_HOST_AND_PATH: dict[tuple[str, str], Probe] = {
    ("www.msftconnecttest.com", "/connecttest.txt"): Probe("windows", WINDOWS_CONNECT_TEST),
    ("www.msftncsi.com", "/ncsi.txt"): Probe("windows", WINDOWS_NCSI),
    ("detectportal.firefox.com", "/canonical.html"): Probe("firefox", FIREFOX_CANONICAL),
    ("detectportal.firefox.com", "/success.txt"): Probe("firefox", FIREFOX_SUCCESS),
}
for _host in APPLE_HOSTS:
    for _path in APPLE_PATHS:
        BY_HOST_AND_PATH[(_host, _path)] = Probe("apple", APPLE_SUCCESS)


def probe(host: str, path: str) -> Probe | None:
    """The probe a request for ``host`` and ``path`` is, or None if it is an ordinary request."""
    if path in ANDROID_PATHS:
        return Probe("android", NO_CONTENT)
    return BY_HOST_AND_PATH.get((host, path))
