"""Turning the dome camera: the daemon's ONVIF GotoPreset against the bench's fake camera."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from edge_daemon.onvif import CONTENT_TYPE, PtzError, goto_preset, goto_preset_request
from hw_sim.onvif import FakeOnvifCamera

USER, PASSWORD = "ptz-operator", "dome-secret"
SOAP = "{http://www.w3.org/2003/05/soap-envelope}"
WSSE = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}"
WSU = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}"
TPTZ = "{http://www.onvif.org/ver20/ptz/wsdl}"


@pytest.fixture
def dome() -> Iterator[FakeOnvifCamera]:
    with FakeOnvifCamera(username=USER, password=PASSWORD, presets=("gate", "a<b&c>'\"")) as camera:
        yield camera


def url(camera: FakeOnvifCamera) -> str:
    return f"http://127.0.0.1:{camera.port}/onvif/ptz_service"


def test_goto_preset_is_recorded_with_its_tokens_and_account(dome: FakeOnvifCamera) -> None:
    before = time.time()
    goto_preset(url(dome), "Profile_1", "gate", USER, PASSWORD)
    request = dome.wait_for_request(1)
    assert (request.profile, request.preset, request.username) == ("Profile_1", "gate", USER)
    assert before <= request.received <= time.time()
    assert request.content_type == CONTENT_TYPE
    assert 'action="http://www.onvif.org/ver20/ptz/wsdl/GotoPreset"' in request.content_type
    goto_preset(url(dome), "Profile_1", "a<b&c>'\"", USER, PASSWORD)  # tokens are escaped, not pasted in
    assert dome.wait_for_request(1).preset == "a<b&c>'\""
    assert dome.refusals == []


def test_the_request_is_a_soap_12_envelope_with_a_username_token(dome: FakeOnvifCamera) -> None:
    goto_preset(url(dome), "Profile_1", "gate", USER, PASSWORD)
    envelope = ET.fromstring(dome.wait_for_request(1).body)
    assert envelope.tag == f"{SOAP}Envelope"
    security = envelope.find(f"{SOAP}Header/{WSSE}Security")
    assert security is not None and security.get(f"{SOAP}mustUnderstand") == "1"
    token = security.find(f"{WSSE}UsernameToken")
    assert token is not None
    assert token.findtext(f"{WSSE}Username") == USER
    password = token.find(f"{WSSE}Password")
    assert password is not None and password.get("Type", "").endswith("#PasswordDigest")
    nonce = base64.b64decode(token.findtext(f"{WSSE}Nonce") or "", validate=True)
    created = token.findtext(f"{WSU}Created") or ""
    assert len(nonce) >= 16
    assert abs(datetime.fromisoformat(created) - datetime.now(UTC)) < timedelta(seconds=60)
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + PASSWORD.encode()).digest()).decode()
    assert password.text == digest and PASSWORD not in dome.requests[0].body.decode()
    call = envelope.find(f"{SOAP}Body/{TPTZ}GotoPreset")
    assert call is not None
    assert [(child.tag, child.text) for child in call] == [
        (f"{TPTZ}ProfileToken", "Profile_1"),
        (f"{TPTZ}PresetToken", "gate"),
    ]


def test_without_a_username_there_is_no_security_header() -> None:
    body = ET.fromstring(goto_preset_request("Profile_1", "1"))
    assert body.find(f"{SOAP}Header") is None and body.find(f"{SOAP}Body/{TPTZ}GotoPreset") is not None
    with FakeOnvifCamera(presets=("1",)) as open_camera:  # a camera without accounts
        goto_preset(url(open_camera), "Profile_1", "1")
        assert open_camera.wait_for_request(1).username is None


@pytest.mark.parametrize(
    ("username", "password"),
    [(USER, "wrong"), (None, None), ("someone-else", PASSWORD), (USER, None)],
    ids=["wrong-password", "no-account", "wrong-user", "no-password"],
)
def test_a_wrong_or_missing_login_is_not_authorized(
    dome: FakeOnvifCamera, username: str | None, password: str | None
) -> None:
    with pytest.raises(PtzError, match=r"HTTP 400.*ter:NotAuthorized") as failure:
        goto_preset(url(dome), "Profile_1", "gate", username, password)
    assert "Sender not authorized" in str(failure.value)  # the fault's reason text
    assert dome.requests == [] and dome.refusals == ["ter:NotAuthorized"]


def test_a_camera_that_answers_401_and_a_replayed_token_are_refused_too(dome: FakeOnvifCamera) -> None:
    dome.not_authorized_status = 401
    with pytest.raises(PtzError, match=r"HTTP 401.*NotAuthorized"):
        goto_preset(url(dome), "Profile_1", "gate", USER, "wrong")
    stale = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = goto_preset_request("Profile_1", "gate", USER, PASSWORD, created=stale)
    assert dome.answer(old, CONTENT_TYPE)[0] == 401
    assert dome.requests == [] and dome.refusals == ["ter:NotAuthorized", "ter:NotAuthorized"]


def test_an_unknown_preset_is_no_entity(dome: FakeOnvifCamera) -> None:
    with pytest.raises(PtzError, match=r"ter:InvalidArgVal/ter:NoEntity: no preset 'door'"):
        goto_preset(url(dome), "Profile_1", "door", USER, PASSWORD)
    assert dome.requests == [] and dome.refusals == ["ter:NoEntity"]


def test_malformed_xml_gets_a_fault_and_the_camera_carries_on(dome: FakeOnvifCamera) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for body in (b"<s:Envelope><unclosed>", b"", b"\xff\xfe not xml at all"):
        request = urllib.request.Request(url(dome), data=body, headers={"Content-Type": CONTENT_TYPE})
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=3)
        assert answer.value.code == 400
        fault = ET.fromstring(answer.value.read())
        assert fault.findtext(f"{SOAP}Body/{SOAP}Fault/{SOAP}Code/{SOAP}Subcode/{SOAP}Value") == "ter:WellFormed"
    assert dome.answer(b"<Envelope/>", CONTENT_TYPE)[0] == 500  # not SOAP 1.2: VersionMismatch
    goto_preset(url(dome), "Profile_1", "gate", USER, PASSWORD)
    assert dome.wait_for_request(1).preset == "gate"


def test_a_wrong_path_is_an_http_error(dome: FakeOnvifCamera) -> None:
    with pytest.raises(PtzError, match=r"HTTP 404.*no such service"):
        goto_preset(f"http://127.0.0.1:{dome.port}/onvif/device_service", "Profile_1", "gate", USER, PASSWORD)


def test_an_unreachable_camera_fails_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        started = time.monotonic()
        with pytest.raises(PtzError, match="cannot reach the camera"):
            goto_preset(f"http://127.0.0.1:{port}/onvif/ptz_service", "Profile_1", "gate", USER, PASSWORD)
    assert time.monotonic() - started < 1.0


def test_a_camera_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever reads or answers
        started = time.monotonic()
        with pytest.raises(PtzError, match=r"no answer within 0.3 s"):
            goto_preset(f"http://127.0.0.1:{silent.getsockname()[1]}/onvif/ptz_service", "P", "gate", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2.0


def test_wait_for_request_hands_out_each_request_once_and_times_out(dome: FakeOnvifCamera) -> None:
    goto_preset(url(dome), "Profile_1", "gate", USER, PASSWORD)
    assert dome.wait_for_request(1).preset == "gate"
    with pytest.raises(TimeoutError, match="no GotoPreset accepted"):
        dome.wait_for_request(0.05)
