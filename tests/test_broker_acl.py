"""The shipped broker config and ACL (``edge_daemon/mosquitto/``) run by a real mosquitto, and the rig that runs it.

The broker runs ``mosquitto.conf`` as shipped, with only its paths, its port and
its log destination swapped for the test's (each swap checks the shipped line is
there), and the shipped ``acl`` with the account tool's blocks for two posts
(``hw_sim.shipped_broker``).  Clients are paho MQTT 5 clients over TLS.  That a
message is NOT delivered is shown without sleeping: a marker the sender may publish
follows it, and the marker must be the first thing to arrive.
"""

from __future__ import annotations

import itertools
import json
import queue
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hw_sim.certs import CertKey, Pki, make_pki
from hw_sim.mosquitto import Mosquitto, TlsListener
from hw_sim.netns import NetnsLink, ip
from hw_sim.shipped_broker import SHIPPED, accounts, password_of, shipped_broker
from hw_sim.uplinked import UplinkedPost

from .conftest import require, require_netns

SITE = "school-12"
NORTH, SOUTH = f"{SITE}/gate-north", f"{SITE}/gate-south"  # the posts' daemon accounts: "<site>/<post>"
POSTS = (NORTH, SOUTH)
PASSWORDS = {name: password_of(name) for name in accounts(POSTS)}
NOT_AUTHORIZED = 0x87
WAIT_S = 5.0

_client_ids = itertools.count(1)


def topic(user: str, channel: str) -> str:
    return f"alarmpost/v1/{user}/{channel}"


# -- an MQTT 5 client a test can wait on ---------------------------------------------------------------------------


class Client:
    """A paho MQTT 5 client whose callbacks feed queues, so a test waits for what arrives.

    TLS trusting ``ca`` unless it is None; ``password`` defaults to the user's in PASSWORDS.
    """

    def __init__(
        self,
        port: int,
        ca: Path | None,
        user: str | None = None,
        password: str | None = None,
        cert: CertKey | None = None,
        client_id: str | None = None,
        session_s: int = 0,
    ) -> None:
        """``client_id``: the id asked for (a fresh one if None); ``session_s`` > 0: resume or keep a session."""
        self.port = port
        self.session_s = session_s
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id or f"test-{next(_client_ids)}", protocol=mqtt.MQTTv5
        )
        self.paho.connect_timeout = 1.0
        self.paho.reconnect_delay_set(min_delay=0.05)  # type: ignore[arg-type]  # close() waits out this delay
        if ca is not None:
            self.paho.tls_set(str(ca), *((str(cert.cert), str(cert.key)) if cert else ()))
        if user is not None:
            self.paho.username_pw_set(user, password if password is not None else PASSWORDS[user])
        self.connacks: queue.Queue[ReasonCode | None] = queue.Queue()  # None: closed before any CONNACK
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acks: dict[int, list[ReasonCode]] = {}  # mid → reason codes of its PUBACK or SUBACK
        self.acked = threading.Condition()
        self.paho.on_connect = lambda _c, _u, _f, reason, _p: self.connacks.put(reason)
        self.paho.on_disconnect = lambda _c, _u, _f, _reason, _p: self.connacks.put(None)
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_publish = lambda _c, _u, mid, reason, _p: self._ack(mid, [reason])
        self.paho.on_subscribe = lambda _c, _u, mid, reasons, _p: self._ack(mid, reasons)

    def _ack(self, mid: int, reasons: list[ReasonCode]) -> None:
        with self.acked:
            self.acks[mid] = reasons
            self.acked.notify_all()

    def _wait_ack(self, mid: int) -> list[ReasonCode]:
        with self.acked:
            assert self.acked.wait_for(lambda: mid in self.acks, WAIT_S), f"no answer to message {mid}"
            return self.acks.pop(mid)

    def connect(self, host: str = "127.0.0.1") -> int:
        """The CONNACK's reason code; ConnectionError if the broker closed the connection without one."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_s
        self.paho.connect(host, self.port, keepalive=10, clean_start=not self.session_s, properties=properties)
        self.paho.loop_start()
        reason = self.connacks.get(timeout=WAIT_S)
        if reason is None:
            raise ConnectionError("closed by the broker before its CONNACK")
        return int(reason.value)

    def publish(self, topic: str, payload: str = "x", retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        return int(self._wait_ack(info.mid)[0].value)

    def subscribe(self, topic_filter: str) -> int:
        """Subscribe at QoS 1 and return the SUBACK's reason code."""
        _, mid = self.paho.subscribe(topic_filter, qos=1)
        assert mid is not None
        return int(self._wait_ack(mid)[0].value)

    def topics_until(self, marker: str) -> list[str]:
        """The topics of the messages received up to and including the first on ``marker``."""
        received = [self.messages.get(timeout=WAIT_S).topic]
        while received[-1] != marker:
            received.append(self.messages.get(timeout=WAIT_S).topic)
        return received

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def accepted(reason: int) -> bool:
    return reason < 0x80  # 0x00, or 0x10 "no matching subscribers"


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require("openssl")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start_broker(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., Mosquitto]]:
    """Start mosquitto on the shipped files (``home_assistant``, ``certificates``: their commented lines on)."""
    require("mosquitto")
    brokers: list[Mosquitto] = []

    def start(**variant: bool) -> Mosquitto:
        broker = shipped_broker(tmp_path / f"broker{len(brokers)}", pki, POSTS, **variant)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def broker(start_broker: Callable[..., Mosquitto]) -> Mosquitto:
    return start_broker()


@pytest.fixture
def client(broker: Mosquitto, pki: Pki) -> Iterator[Callable[..., Client]]:
    """Connected clients of ``broker`` as the user named (all closed after the test)."""
    made: list[Client] = []

    def connect(user: str) -> Client:
        made.append(Client(broker.port, pki.ca, user))
        assert made[-1].connect() == 0, f"{user} was refused"
        return made[-1]

    yield connect
    for each in made:
        each.close()


# -- the ACL -------------------------------------------------------------------------------------------------------

# what each of a post's accounts publishes: the daemon's, its pictures' and its portal's
POST_CHANNELS = {
    NORTH: ("availability", "state", "events", "results", "audit", "health", "selftest"),
    f"{NORTH}/video": ("snapshots", "stream"),
    f"{NORTH}/portal": ("portal",),
}


def test_each_of_a_posts_accounts_publishes_on_its_channels_and_the_centre_gets_them(
    client: Callable[..., Client],
) -> None:
    centre = client("centre")
    assert centre.subscribe("alarmpost/v1/#") == 1
    sent = []
    for account, channels in POST_CHANNELS.items():
        sender = client(account)
        for channel in channels:
            assert sender.publish(topic(NORTH, channel), retain=channel in ("availability", "state")) == 0, channel
            sent.append(topic(NORTH, channel))
    assert [centre.messages.get(timeout=WAIT_S).topic for _ in sent] == sent


@pytest.mark.parametrize(
    ("account", "forbidden"),
    [
        (NORTH, topic(NORTH, "snapshots")),  # the daemon's account: pictures go by the video account
        (NORTH, topic(NORTH, "portal")),  # nor the gate WiFi's statistics
        (f"{NORTH}/video", topic(NORTH, "events")),  # the pictures' account: no alarm, no state
        (f"{NORTH}/video", topic(NORTH, "state")),
        (f"{NORTH}/video", topic(SOUTH, "snapshots")),
        (f"{NORTH}/portal", topic(NORTH, "events")),  # the portal's: no alarm, no command, no receipt
        (f"{NORTH}/portal", topic(NORTH, "commands")),
        (f"{NORTH}/portal", topic(NORTH, "receipts")),
        (f"{NORTH}/portal", topic(NORTH, "content")),  # content comes from an operator, signed
        (f"{NORTH}/portal", topic(SOUTH, "portal")),
    ],
)
def test_each_of_a_posts_accounts_may_publish_only_its_own_channels(
    client: Callable[..., Client], account: str, forbidden: str
) -> None:
    centre, sender = client("centre"), client(account)
    assert centre.subscribe("alarmpost/v1/#") == 1
    assert sender.publish(forbidden) == NOT_AUTHORIZED
    marker = topic(NORTH, POST_CHANNELS[account][0])
    assert sender.publish(marker) == 0
    assert centre.topics_until(marker) == [marker]  # the forbidden message would have come first


@pytest.mark.parametrize(
    "forbidden",
    [
        topic(SOUTH, "events"),  # another post's channel
        topic(SOUTH, "state"),
        topic(NORTH, "commands"),  # commands come from the centre only, its own included
        topic(SOUTH, "commands"),
        topic(NORTH, "requests"),  # requests come from Home Assistant only
        topic(NORTH, "receipts"),  # receipts come from the centre only: a post cannot confirm its own events
        topic(NORTH, "content"),  # content comes from an operator only
        topic(SOUTH, "receipts"),  # nor make another post drop its unconfirmed alarms
        "alarmpost/v1/school-12/events",  # not a post's topic at all
        "elsewhere/entirely",
    ],
)
def test_a_post_publishing_where_it_may_not_is_refused_and_nothing_is_delivered(
    client: Callable[..., Client], forbidden: str
) -> None:
    centre, north, south = client("centre"), client(NORTH), client(SOUTH)
    for watcher in (centre, south):
        assert watcher.subscribe("#") == 1  # each receives only what it may read
    assert north.publish(forbidden) == NOT_AUTHORIZED
    marker = topic(NORTH, "events")
    assert north.publish(marker) == 0
    assert centre.topics_until(marker) == [marker]  # the forbidden message would have come first
    assert centre.publish(topic(SOUTH, "commands")) == 0
    assert south.topics_until(topic(SOUTH, "commands")) == [topic(SOUTH, "commands")]


def test_a_post_gets_its_own_commands_and_nothing_else_whatever_it_subscribes_to(
    client: Callable[..., Client],
) -> None:
    centre, north, south = client("centre"), client(NORTH), client(SOUTH)
    assert accepted(south.publish(topic(SOUTH, "state"), "south's retained state", retain=True))
    for greedy in ("#", "alarmpost/v1/#", "alarmpost/v1/+/+/commands", topic(SOUTH, "commands")):
        assert north.subscribe(greedy) == 1  # mosquitto grants it, then filters what it delivers
    assert south.subscribe(topic(SOUTH, "commands")) == 1
    assert centre.publish(topic(SOUTH, "commands"), "for south") == 0
    assert centre.publish(topic(NORTH, "commands"), "for north") == 0
    assert north.topics_until(topic(NORTH, "commands")) == [topic(NORTH, "commands")]
    assert south.topics_until(topic(SOUTH, "commands")) == [topic(SOUTH, "commands")]


@pytest.mark.parametrize("user", ["centre", "operator"])
def test_the_centre_and_an_operator_may_command_any_post_but_not_speak_for_one(
    client: Callable[..., Client], user: str
) -> None:
    centre = client(user)
    assert accepted(centre.publish(topic(NORTH, "commands")))  # the recorder's are replay requests
    assert centre.publish(topic(NORTH, "events")) == NOT_AUTHORIZED
    assert centre.publish(topic(NORTH, "state"), retain=True) == NOT_AUTHORIZED
    assert centre.publish(topic(NORTH, "portal")) == NOT_AUTHORIZED


def test_only_the_recorder_confirms_events_and_only_an_operator_sends_content(client: Callable[..., Client]) -> None:
    centre, operator = client("centre"), client("operator")
    assert operator.publish(topic(NORTH, "receipts")) == NOT_AUTHORIZED  # what it did not record
    assert accepted(centre.publish(topic(NORTH, "receipts")))
    assert centre.publish(topic(NORTH, "content"), retain=True) == NOT_AUTHORIZED
    assert accepted(operator.publish(topic(NORTH, "content"), retain=True))


# -- client ids: one account's password displaces nobody ------------------------------------------------------------


def still_connected(victim: Client, account: str) -> bool:
    """True if ``victim`` kept its connection: no disconnect seen, and a publish of its own still goes through."""
    marker = topic(NORTH, POST_CHANNELS[account][0]) if account in POST_CHANNELS else topic(NORTH, "commands")
    code = victim.publish(marker)
    return victim.connacks.empty() and accepted(code)


@pytest.mark.parametrize("victim", [NORTH, f"{NORTH}/video", "centre", "operator"])
@pytest.mark.parametrize("asked_id", ["victims-account", "old-default-id"])
def test_a_stolen_posts_account_asking_for_anothers_client_id_displaces_nobody(
    broker: Mosquitto, pki: Pki, client: Callable[..., Client], victim: str, asked_id: str
) -> None:
    """With SOUTH's password (a post's SD card read), ask for the victim's client id: it keeps its connection."""
    ids = {
        NORTH: ("school-12/gate-north", "alarmpost-school-12-gate-north"),
        f"{NORTH}/video": (f"{NORTH}/video", "alarmpost-school-12-gate-north-video"),
        "centre": ("centre", "alarmpost-centre-watch-centre"),
        "operator": ("operator", "alarmpost-centre-watch-operator"),
    }
    wanted = ids[victim][0 if asked_id == "victims-account" else 1]
    target = Client(broker.port, pki.ca, victim, client_id=wanted)
    attacker = Client(broker.port, pki.ca, SOUTH, client_id=wanted)
    try:
        assert target.connect() == 0
        assert attacker.connect() == 0  # let in, but as itself: its id is its own account's
        assert still_connected(target, victim), f"{SOUTH} pushed {victim} off by asking for the id {wanted!r}"
    finally:
        attacker.close()
        target.close()


def test_the_check_above_sees_a_displacement_when_there_is_one(broker: Mosquitto, pki: Pki) -> None:
    """A second client of the same account does push the first off (why each connection has its own account)."""
    first, second = (Client(broker.port, pki.ca, NORTH) for _ in range(2))
    try:
        assert first.connect() == 0 and second.connect() == 0
        assert first.connacks.get(timeout=WAIT_S) is None, "the first client kept its connection"
    finally:
        first.close()
        second.close()


def test_a_stolen_posts_account_cannot_take_over_the_centres_stored_session(broker: Mosquitto, pki: Pki) -> None:
    """The centre is away with a stored session; a post's account resuming a session under its id gets nothing."""

    def recorder() -> Client:
        return Client(broker.port, pki.ca, "centre", client_id="centre", session_s=3600)

    centre = recorder()
    assert centre.connect() == 0 and centre.subscribe(topic("+/+", "events")) == 1
    centre.close()  # away: the broker keeps its subscription and queues for it
    north, operator = Client(broker.port, pki.ca, NORTH), Client(broker.port, pki.ca, "operator")
    attacker = Client(broker.port, pki.ca, SOUTH, client_id="centre", session_s=3600)
    back = recorder()
    try:
        assert north.connect() == 0 and operator.connect() == 0
        assert north.publish(topic(NORTH, "events"), "the alarm") == 0
        assert attacker.connect() == 0
        assert attacker.subscribe(topic(SOUTH, "commands")) == 1
        assert operator.publish(topic(SOUTH, "commands"), "marker") == 0
        # a taken-over session would hand its queued alarm over first, right after the CONNACK
        assert attacker.topics_until(topic(SOUTH, "commands")) == [topic(SOUTH, "commands")]
        assert back.connect() == 0
        alarm = back.messages.get(timeout=WAIT_S)
        assert (alarm.topic, bytes(alarm.payload)) == (topic(NORTH, "events"), b"the alarm")
    finally:
        for each in (north, operator, attacker, back):
            each.close()


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), (f"{SITE}/gate-east", PASSWORDS[NORTH]), (NORTH, PASSWORDS[SOUTH]), (NORTH, "")],
)
def test_anonymous_unknown_and_wrong_password_clients_are_refused(
    broker: Mosquitto, pki: Pki, user: str | None, password: str | None
) -> None:
    refused = Client(broker.port, pki.ca, user, password)
    try:
        assert refused.connect() in (0x86, 0x87)  # bad user name or password / not authorized
    finally:
        refused.close()


def test_home_assistant_lines_once_uncommented(start_broker: Callable[..., Mosquitto], pki: Pki) -> None:
    broker = start_broker(home_assistant=True)
    ha, north, south = (Client(broker.port, pki.ca, user) for user in ("homeassistant", NORTH, SOUTH))
    try:
        for each in (ha, north, south):
            assert each.connect() == 0
        discovery = f"homeassistant/device/{NORTH}/config"
        assert accepted(north.publish(discovery, "{}", retain=True))
        assert south.publish(discovery, "{}") == NOT_AUTHORIZED  # a post announces only itself
        assert accepted(south.publish(f"homeassistant/device/{SOUTH}/config", "{}", retain=True))
        assert accepted(north.publish(topic(NORTH, "events")))
        assert ha.publish(topic(NORTH, "commands")) == NOT_AUTHORIZED
        assert north.subscribe(topic(NORTH, "requests")) == 1
        assert ha.publish(topic(NORTH, "requests"), "status") == 0
        assert north.topics_until(topic(NORTH, "requests")) == [topic(NORTH, "requests")]
    finally:
        for each in (ha, north, south):
            each.close()


# -- TLS -----------------------------------------------------------------------------------------------------------


def test_a_client_trusting_another_ca_refuses_the_broker(broker: Mosquitto, pki: Pki) -> None:
    stranger = Client(broker.port, pki.stranger, "centre")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        stranger.connect()


def test_a_client_expecting_another_host_name_refuses_the_broker(broker: Mosquitto, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", broker.port), WAIT_S) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            context.wrap_socket(raw, server_hostname="broker.elsewhere.example")


def test_with_client_certificates_on_a_client_needs_one_and_its_cn_is_its_username(
    start_broker: Callable[..., Mosquitto], pki: Pki
) -> None:
    broker = start_broker(certificates=True)
    without = Client(broker.port, pki.ca, NORTH)
    with pytest.raises(OSError):  # an SSLError, or (TLS 1.3) the broker closing before its CONNACK
        without.connect()
    without.close()
    centre = Client(broker.port, pki.ca, cert=pki.client("centre"))
    north = Client(broker.port, pki.ca, cert=pki.client(NORTH))  # no username: its certificate's CN is one
    try:
        assert centre.connect() == 0 and north.connect() == 0
        centre.subscribe("alarmpost/v1/#")
        assert north.publish(topic(SOUTH, "events")) == NOT_AUTHORIZED
        assert north.publish(topic(NORTH, "events")) == 0
        assert centre.topics_until(topic(NORTH, "events")) == [topic(NORTH, "events")]
    finally:
        centre.close()
        north.close()


# -- the rig: Mosquitto and NetnsLink ------------------------------------------------------------------------------


def test_a_generated_tls_listener_asking_for_certificates(tmp_path: Path, pki: Pki) -> None:
    require("mosquitto")
    tls = TlsListener(pki.ca, pki.server.cert, pki.server.key, require_certificate=True)
    with Mosquitto(tmp_path, tls=tls) as broker:
        assert broker.tls_port is not None
        with_cert = Client(broker.tls_port, pki.ca, cert=pki.client("anyone"))
        without = Client(broker.tls_port, pki.ca)
        try:
            assert with_cert.connect() == 0
            with pytest.raises(OSError):
                without.connect()
        finally:
            with_cert.close()
            without.close()


def test_mosquitto_restarts_and_comes_back_from_a_kill_on_its_port_with_its_saved_retained_messages(
    tmp_path: Path,
) -> None:
    require("mosquitto")
    with Mosquitto(tmp_path, persistence=True) as broker:
        port = broker.port
        publisher = Client(port, ca=None)
        assert publisher.connect() == 0
        assert publisher.publish("alarmpost/v1/s/p/state", "kept", retain=True) == 0x10  # no subscriber yet
        broker.restart()  # a clean stop saves the retained message; the start loads it
        assert publisher.connacks.get(timeout=WAIT_S) is None  # the connection dropped
        publisher.close()
        assert retained(port, "alarmpost/v1/s/p/state") == b"kept"
        broker.kill()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), WAIT_S)
        broker.start()
        assert broker.port == port
        assert retained(port, "alarmpost/v1/s/p/state") == b"kept"
        assert broker.log_text().count(" running") == 3


def retained(port: int, state_topic: str) -> bytes:
    """The retained message on ``state_topic``, as a new subscriber receives it."""
    reader = Client(port, ca=None)
    try:
        assert reader.connect() == 0
        assert reader.subscribe(state_topic) == 1
        return bytes(reader.messages.get(timeout=WAIT_S).payload)
    finally:
        reader.close()


def test_a_paused_mosquitto_answers_nothing_until_resumed(tmp_path: Path) -> None:
    require("mosquitto")
    with Mosquitto(tmp_path) as broker:
        client = Client(broker.port, ca=None)
        try:
            assert client.connect() == 0
            broker.pause()
            mid = client.paho.publish("t", "x", qos=1).mid
            with client.acked:
                assert not client.acked.wait_for(lambda: mid in client.acks, 0.3)  # connected, nobody answers
            broker.resume()
            assert client._wait_ack(mid)[0] == 0x10
        finally:
            client.close()


def test_netns_link_reaches_a_broker_inside_until_cut_and_again_once_restored(tmp_path: Path) -> None:
    require("mosquitto")
    require_netns()
    with NetnsLink() as link:
        with Mosquitto(tmp_path, host=link.inner_ip, netns=link.name) as broker:
            assert reach(link.inner_ip, broker.port) == 0
            link.cut()
            with pytest.raises(OSError):  # a timeout: the SYN goes nowhere
                socket.create_connection((link.inner_ip, broker.port), 0.3)
            link.restore()
            assert reach(link.inner_ip, broker.port) == 0
    assert link.name not in ip("netns", "list")
    assert subprocess.run([require("ip"), "link", "show", link.host_end], capture_output=True).returncode != 0


def reach(host: str, port: int) -> int:
    """Connect an MQTT client to ``host`` and return its CONNACK's reason code."""
    client = Client(port, ca=None)
    try:
        return client.connect(host)
    finally:
        client.close()


# -- the whole post through the shipped broker ----------------------------------------------------------------------


def test_the_post_reaches_the_centre_over_tls_with_its_own_accounts(
    broker: Mosquitto, pki: Pki, tmp_path: Path
) -> None:
    """The edge daemon with TLS (server verified), its two accounts and the shipped ACL; the centre likewise."""
    require("micropython")
    secrets = {}
    for account, name in ((NORTH, "mqtt.password"), (f"{NORTH}/video", "video.password")):
        secrets[name] = tmp_path / name
        secrets[name].write_text(PASSWORDS[account] + "\n")
    post = UplinkedPost(
        tmp_path,
        "localhost",
        broker.port,
        post="gate-north",
        site=SITE,
        uplink={
            "tls": True,
            "ca_file": str(pki.ca),
            "password_file": str(secrets["mqtt.password"]),
            "video_password_file": str(secrets["video.password"]),
        },
        camera={},
    )
    post.start()
    try:
        centre = post.centre(username="centre", password=PASSWORDS["centre"], tls=True, ca_file=str(pki.ca))
        post.wait_online(centre)
        post.bench.press()
        event = centre.wait_for(lambda m: m.channel == "events" and m.payload["code"] == 120, since=0).payload
        assert (event["site"], event["post"]) == (SITE, "gate-north")
        # the alarm's picture came over the daemon's second connection, under its video account
        centre.wait_for(lambda m: m.channel == "snapshots" and m.payload.kind == "alarm", since=0)
        assert centre.command(SITE, "gate-north", "acknowledge")["status"] == "ok"
        post.bench.wait_state("acknowledged")
        assert centre.invalid == []
        assert "already connected, closing old connection" not in broker.log_text(), "two connections, one account"
    finally:
        post.stop()


def test_the_account_tool_makes_a_posts_three_accounts_that_the_shipped_broker_takes(tmp_path: Path, pki: Pki) -> None:
    """``broker_accounts post`` on the shipped ACL: each new account logs in with its file and may do its job."""
    require("mosquitto")
    from edge_daemon import broker_accounts

    broker = shipped_broker(tmp_path / "broker", pki)  # the centre's accounts only
    acl, passwd = tmp_path / "broker" / "acl", tmp_path / "broker" / "passwd"
    out = tmp_path / "gate-east"
    assert (
        broker_accounts.main(
            ["post", f"{SITE}/gate-east", "--passwd", str(passwd), "--acl", str(acl), "--out", str(out)]
        )
        == 0
    )
    assert (
        broker_accounts.main(
            ["post", f"{SITE}/gate-east", "--passwd", str(passwd), "--acl", str(acl), "--out", str(out)]
        )
        == 0
    )
    assert acl.read_text().count(f"# BEGIN {SITE}/gate-east") == 1, "a second run replaces the block"
    files = {name: (out / name) for name in ("mqtt.password", "video.password", "portal.password")}
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files.values())
    east = f"{SITE}/gate-east"
    with broker:
        made = [
            Client(broker.port, pki.ca, account, files[name].read_text().strip())
            for account, name in (
                (east, "mqtt.password"),
                (f"{east}/video", "video.password"),
                (f"{east}/portal", "portal.password"),
            )
        ]
        try:
            assert [each.connect() for each in made] == [0, 0, 0]
            daemon, video, portal = made
            assert daemon.publish(topic(east, "events")) == 0x10 and video.publish(topic(east, "snapshots")) == 0x10
            assert (
                portal.publish(topic(east, "portal")) == 0x10
                and portal.publish(topic(east, "events")) == NOT_AUTHORIZED
            )
        finally:
            for each in made:
                each.close()
    assert broker_accounts.main(["remove", east, "--passwd", str(passwd), "--acl", str(acl)]) == 0
    assert east not in passwd.read_text() and east not in acl.read_text()


def test_the_acl_grants_a_post_every_channel_the_contract_gives_it() -> None:
    from edge_daemon.broker_accounts import post_acl
    from edge_daemon.contract import CHANNELS

    lines = set((SHIPPED / "acl").read_text().splitlines()) | set(post_acl(NORTH).splitlines())
    for name, channel in CHANNELS.items():
        access = "write" if channel.sender == "post" else "read"
        assert f"pattern {access} alarmpost/v1/%u/{name}" in lines or f"topic {access} {topic(NORTH, name)}" in lines


def test_only_the_centre_may_confirm_a_posts_events_and_only_that_post_reads_the_receipt(
    client: Callable[..., Client],
) -> None:
    centre, north, south = client("centre"), client(NORTH), client(SOUTH)
    assert north.subscribe("#") == 1 and south.subscribe(topic(SOUTH, "receipts")) == 1
    assert centre.publish(topic(SOUTH, "receipts"), "for south") == 0
    assert centre.publish(topic(NORTH, "receipts"), "for north") == 0
    assert north.topics_until(topic(NORTH, "receipts")) == [topic(NORTH, "receipts")]  # south's never came first
    assert south.topics_until(topic(SOUTH, "receipts")) == [topic(SOUTH, "receipts")]


# -- the gate WiFi: content from the centre, statistics from the post -----------------------------------------------


def test_only_an_operator_may_publish_a_posts_content_and_only_that_posts_portal_reads_it(
    client: Callable[..., Client],
) -> None:
    centre, north, south = client("operator"), client(f"{NORTH}/portal"), client(f"{SOUTH}/portal")
    assert north.publish(topic(NORTH, "content"), "forged", retain=True) == NOT_AUTHORIZED
    daemon = client(NORTH)  # the daemon's own account neither writes nor reads content
    assert daemon.subscribe(topic(NORTH, "content")) == 1
    assert accepted(centre.publish(topic(NORTH, "content"), "for north", retain=True))
    for forbidden in (topic(NORTH, "content"), topic(SOUTH, "content")):  # a post cannot write content, its own neither
        assert daemon.publish(forbidden, "forged", retain=True) == NOT_AUTHORIZED
    assert north.subscribe("#") == 1 and south.subscribe("#") == 1  # the retained content: only north's own arrives
    first = north.messages.get(timeout=WAIT_S)
    assert (first.topic, bytes(first.payload), first.retain) == (topic(NORTH, "content"), b"for north", True)
    assert centre.publish(topic(SOUTH, "content"), "for south") == 0
    assert south.topics_until(topic(SOUTH, "content")) == [topic(SOUTH, "content")]  # north's never came first
    assert accepted(daemon.publish(topic(NORTH, "events")))
    assert daemon.subscribe(topic(NORTH, "commands")) == 1
    assert centre.publish(topic(NORTH, "commands")) == 0
    assert daemon.topics_until(topic(NORTH, "commands")) == [topic(NORTH, "commands")]  # no content came first


def test_a_post_reports_its_portal_statistics_and_cannot_report_for_another(client: Callable[..., Client]) -> None:
    centre, north = client("centre"), client(f"{NORTH}/portal")
    assert centre.subscribe(topic(NORTH, "portal")) == 1 and centre.subscribe(topic(SOUTH, "portal")) == 1
    assert north.publish(topic(SOUTH, "portal")) == NOT_AUTHORIZED
    assert north.publish(topic(NORTH, "portal")) == 0
    assert centre.topics_until(topic(NORTH, "portal")) == [topic(NORTH, "portal")]
    assert centre.publish(topic(NORTH, "portal")) == NOT_AUTHORIZED  # the centre does not speak for a post


def test_signed_content_from_the_reference_centre_reaches_its_post_over_tls(
    broker: Mosquitto, pki: Pki, client: Callable[..., Client], tmp_path: Path
) -> None:
    from captive_portal.content import ContentStore, generate_keypair, load_private_key, sign_bundle
    from edge_daemon.centre import Centre, CentreError

    public = generate_keypair(tmp_path / "content.key", tmp_path / "content.pub")
    item = {"id": "notice", "priority": 100, "pinned": True, "title": {"zh": "今天提前放学"}, "body": {"zh": []}}
    bundle = {"id": "notice-1", "version": 1, "issued": "2027-01-15T08:00:00Z", "items": [item]}
    payload = sign_bundle(bundle, load_private_key(tmp_path / "content.key"))
    site, post = NORTH.split("/")
    operator = Centre(
        "localhost", broker.port, username="operator", password=PASSWORDS["operator"], ca_file=str(pki.ca), clean=True
    )
    with operator as centre:
        assert centre.max_packet_size == 1048576  # the shipped broker's max_packet_size, told in its CONNACK
        centre.publish_content(site, post, payload)
        oversized = {"format": "alarmpost-content-v1", "bundle": "A" * 1048576, "signature": "A" * 86 + "=="}
        with pytest.raises(CentreError, match="the broker takes packets of at most 1048576"):
            centre.publish_content(site, post, json.dumps(oversized).encode())
    north = client(f"{NORTH}/portal")
    assert north.subscribe(topic(NORTH, "content")) == 1
    store = ContentStore(tmp_path / "cache", public, 2048 * 1024)
    assert store.offer(north.messages.get(timeout=WAIT_S).payload).id == "notice-1"


def test_the_broker_refusing_content_is_an_error_for_the_centre(broker: Mosquitto, pki: Pki) -> None:
    from edge_daemon.centre import Centre, CentreError

    envelope = {"format": "alarmpost-content-v1", "bundle": "e30=", "signature": "A" * 86 + "=="}
    post = Centre("localhost", broker.port, username=NORTH, password=PASSWORDS[NORTH], ca_file=str(pki.ca), clean=True)
    with post, pytest.raises(CentreError, match=f"the broker refused the content for {NORTH}: Not authorized"):
        post.publish_content(*NORTH.split("/"), json.dumps(envelope).encode())


# -- memory: what one post can make the broker hold ------------------------------------------------------------------

QUEUE_BOUND_MB = 16  # the shipped max_queued_bytes


def test_endless_pictures_for_an_away_viewer_stay_within_the_queue_bound_and_alarms_still_arrive(
    broker: Mosquitto, pki: Pki, client: Callable[..., Client]
) -> None:
    """A post's pictures account floods 1 MB pictures while the viewer is away: the broker keeps at most the
    queue bound for it (more than that would be the flood itself), and a post's alarm still reaches the centre."""
    viewer = Client(broker.port, pki.ca, "operator", client_id="operator", session_s=3600)
    assert viewer.connect() == 0 and viewer.subscribe(topic("+/+", "snapshots")) == 1
    viewer.close()  # away, with a stored session: the broker queues for it
    recorder, video, south = client("centre"), client(f"{NORTH}/video"), client(SOUTH)
    assert recorder.subscribe(topic("+/+", "events")) == 1
    before_mb = broker.memory_mb("VmRSS")
    picture = b"\xff" * 1_000_000
    flood_mb = 3 * QUEUE_BOUND_MB
    for _ in range(flood_mb):
        info = video.paho.publish(topic(NORTH, "snapshots"), picture, qos=1)
        assert video._wait_ack(info.mid)[0].value == 0  # the broker took it
    assert south.publish(topic(SOUTH, "events"), "an alarm") == 0
    assert recorder.topics_until(topic(SOUTH, "events")) == [topic(SOUTH, "events")]
    grown_mb = broker.memory_mb("VmHWM") - before_mb
    assert grown_mb < QUEUE_BOUND_MB + 8, f"the broker grew {grown_mb:.0f} MB for a {flood_mb} MB flood"


def test_a_stolen_posts_accounts_once_removed_are_cut_off_at_the_reload(broker: Mosquitto, pki: Pki) -> None:
    """The revocation in docs/security.md: ``broker_accounts remove`` and a reload end its connections for good."""
    from edge_daemon import broker_accounts

    stolen = [Client(broker.port, pki.ca, account) for account in (NORTH, f"{NORTH}/video", f"{NORTH}/portal")]
    other = Client(broker.port, pki.ca, SOUTH)
    folder = broker.folder
    try:
        assert [each.connect() for each in [*stolen, other]] == [0, 0, 0, 0]
        assert (
            broker_accounts.main(["remove", NORTH, "--passwd", str(folder / "passwd"), "--acl", str(folder / "acl")])
            == 0
        )
        broker.reload()
        for each in stolen:
            assert each.connacks.get(timeout=WAIT_S) is None, "still connected after the reload"
            again = each.connacks.get(timeout=WAIT_S)  # paho tries again at once
            assert again is None or again.is_failure, "let in again"
        assert other.connacks.empty() and accepted(other.publish(topic(SOUTH, "events")))
    finally:
        for each in [*stolen, other]:
            each.close()


# -- the account tool's files ---------------------------------------------------------------------------------------


def test_account_tool_examples_run() -> None:
    import doctest

    from edge_daemon import broker_accounts

    result = doctest.testmod(broker_accounts)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", ["school-12", "a/b/c", "school 12/gate", "school-12/gate+", "x/" + "p" * 65])
def test_account_tool_refuses_a_name_that_is_not_site_slash_post(tmp_path: Path, name: str, capsys: Any) -> None:
    from edge_daemon import broker_accounts

    acl = tmp_path / "acl"
    acl.write_text((SHIPPED / "acl").read_text())
    argv = ["post", name, "--passwd", str(tmp_path / "passwd"), "--acl", str(acl), "--out", str(tmp_path / "out")]
    assert broker_accounts.main(argv) == 1
    assert "is not SITE/POST" in capsys.readouterr().err
    assert acl.read_text() == (SHIPPED / "acl").read_text() and not (tmp_path / "passwd").exists()


def test_account_tool_keeps_the_other_accounts_and_blocks(tmp_path: Path) -> None:
    from edge_daemon.broker_accounts import new_passwords, post_accounts, post_acl, provision

    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text("centre:$7$101$keep$keep\n")
    acl.write_text((SHIPPED / "acl").read_text())
    provision(passwd, acl, new_passwords(post_accounts("a/b")), "a/b", post_acl("a/b"))
    provision(passwd, acl, new_passwords(post_accounts("a/c")), "a/c", post_acl("a/c"))
    provision(passwd, acl, dict.fromkeys(post_accounts("a/b")), "a/b", None)
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == [
        "centre",
        "a/c",
        "a/c/video",
        "a/c/portal",
    ]
    assert "centre:$7$101$keep$keep" in passwd.read_text()
    assert acl.read_text() == (SHIPPED / "acl").read_text() + post_acl("a/c")


def test_account_tool_refuses_to_remove_the_centres_recorder(tmp_path: Path, capsys: Any) -> None:
    from edge_daemon import broker_accounts

    acl, passwd = tmp_path / "acl", tmp_path / "passwd"
    acl.write_text((SHIPPED / "acl").read_text())
    passwd.write_text("centre:$7$101$keep$keep\n")
    assert broker_accounts.main(["remove", "centre", "--passwd", str(passwd), "--acl", str(acl)]) == 1
    assert "is not a post (SITE/POST) or an operator this tool made" in capsys.readouterr().err
    assert passwd.read_text() == "centre:$7$101$keep$keep\n"
