"""The shipped broker config and ACL (``edge_daemon/mosquitto/``) run by a real mosquitto, and the rig that runs it.

The broker runs ``mosquitto.conf`` as shipped, with only its paths, its port and
its log destination swapped for the test's (each swap checks the shipped line is
there), and a copy of the shipped ``acl``.  Clients are paho MQTT 5 clients over
TLS.  That a message is NOT delivered is shown without sleeping: a marker the
sender may publish follows it, and the marker must be the first thing to arrive.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hw_sim.certs import CertKey, Pki, make_pki
from hw_sim.mosquitto import Mosquitto, TlsListener, free_port, write_password_file
from hw_sim.netns import NetnsLink, ip
from hw_sim.paths import ROOT
from hw_sim.uplinked import UplinkedPost

from .conftest import require, require_netns

SHIPPED = ROOT / "edge_daemon" / "mosquitto"
SITE = "school-12"
NORTH, SOUTH = f"{SITE}/gate-north", f"{SITE}/gate-south"  # the posts' usernames: "<site>/<post>"
PASSWORDS = {"centre": "centre-pw", NORTH: "north-pw", SOUTH: "south-pw", "homeassistant": "ha-pw"}
NOT_AUTHORIZED = 0x87
WAIT_S = 5.0

_client_ids = itertools.count(1)


def topic(user: str, channel: str) -> str:
    return f"alarmpost/v1/{user}/{channel}"


# -- the shipped files, made runnable here -------------------------------------------------------------------------


def shipped_config(folder: Path, pki: Pki, port: int, certificates: bool = False) -> str:
    """The shipped mosquitto.conf with the test's paths and port (and its client-certificate lines on, if asked)."""
    swaps = {
        "listener 8883": f"listener {port} 127.0.0.1",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {pki.ca}",
        "certfile /etc/mosquitto/certs/server.crt": f"certfile {pki.server.cert}",
        "keyfile /etc/mosquitto/certs/server.key": f"keyfile {pki.server.key}",
        "password_file /etc/mosquitto/passwd": f"password_file {folder / 'passwd'}",
        "acl_file /etc/mosquitto/acl": f"acl_file {folder / 'acl'}",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {folder}/",
        "log_dest file /var/log/mosquitto/mosquitto.log": "log_dest stderr\nlog_type all",
    }
    if certificates:
        swaps["#require_certificate true"] = "require_certificate true"
        swaps["#use_identity_as_username true"] = "use_identity_as_username true"
    lines = (SHIPPED / "mosquitto.conf").read_text().splitlines()
    for shipped, ours in swaps.items():
        assert lines.count(shipped) == 1, f"the shipped mosquitto.conf no longer has the line {shipped!r}"
        lines[lines.index(shipped)] = ours
    return "\n".join(lines) + "\n"


def shipped_acl(home_assistant: bool = False) -> str:
    """The shipped acl; with ``home_assistant`` its commented Home Assistant lines are switched on."""
    text = (SHIPPED / "acl").read_text()
    return re.sub(r"(?m)^#(?=(user|topic|pattern) )", "", text) if home_assistant else text


def shipped_broker(folder: Path, pki: Pki, home_assistant: bool = False, certificates: bool = False) -> Mosquitto:
    """A broker (not started) on the shipped files, with the accounts in PASSWORDS."""
    folder.mkdir(parents=True, exist_ok=True)
    write_password_file(folder / "passwd", PASSWORDS)
    (folder / "acl").write_text(shipped_acl(home_assistant))
    port = free_port()
    return Mosquitto(folder, port=port, config=shipped_config(folder, pki, port, certificates))


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
    ) -> None:
        self.port = port
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, f"test-{next(_client_ids)}", protocol=mqtt.MQTTv5)
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
        self.paho.connect(host, self.port, keepalive=10)
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
        broker = shipped_broker(tmp_path / f"broker{len(brokers)}", pki, **variant)
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

POST_CHANNELS = ("availability", "state", "events", "results", "audit", "health", "snapshots", "stream")


def test_a_post_publishes_on_each_of_its_channels_and_the_centre_gets_them(client: Callable[..., Client]) -> None:
    centre, north = client("centre"), client(NORTH)
    assert centre.subscribe("alarmpost/v1/#") == 1
    for channel in POST_CHANNELS:
        assert north.publish(topic(NORTH, channel), retain=channel in ("availability", "state")) == 0
    assert [centre.messages.get(timeout=WAIT_S).topic for _ in POST_CHANNELS] == [
        topic(NORTH, channel) for channel in POST_CHANNELS
    ]


@pytest.mark.parametrize(
    "forbidden",
    [
        topic(SOUTH, "events"),  # another post's channel
        topic(SOUTH, "state"),
        topic(NORTH, "commands"),  # commands come from the centre only, its own included
        topic(SOUTH, "commands"),
        topic(NORTH, "requests"),  # requests come from Home Assistant only
        topic(NORTH, "receipts"),  # receipts come from the centre only: a post cannot confirm its own events
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


def test_the_centre_may_command_any_post_but_not_speak_for_one(client: Callable[..., Client]) -> None:
    centre = client("centre")
    assert accepted(centre.publish(topic(NORTH, "commands")))
    assert centre.publish(topic(NORTH, "events")) == NOT_AUTHORIZED
    assert centre.publish(topic(NORTH, "state"), retain=True) == NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("user", "password"), [(None, None), (f"{SITE}/gate-east", "north-pw"), (NORTH, PASSWORDS[SOUTH]), (NORTH, "")]
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


def test_the_post_reaches_the_centre_over_tls_with_its_own_account(broker: Mosquitto, pki: Pki, tmp_path: Path) -> None:
    """The edge daemon with TLS (server verified), its own account and the shipped ACL; the centre likewise."""
    require("micropython")
    (tmp_path / "post.password").write_text(PASSWORDS[NORTH] + "\n")
    post = UplinkedPost(
        tmp_path,
        "localhost",
        broker.port,
        post="gate-north",
        site=SITE,
        uplink={"tls": True, "ca_file": str(pki.ca), "password_file": str(tmp_path / "post.password")},
    )
    post.start()
    try:
        centre = post.centre(username="centre", password=PASSWORDS["centre"], tls=True, ca_file=str(pki.ca))
        post.wait_online(centre)
        post.bench.press()
        event = centre.wait_for(lambda m: m.channel == "events" and m.payload["code"] == 120, since=0).payload
        assert (event["site"], event["post"]) == (SITE, "gate-north")
        assert centre.command(SITE, "gate-north", "acknowledge")["status"] == "ok"
        post.bench.wait_state("acknowledged")
        assert centre.invalid == []
    finally:
        post.stop()


def test_the_acl_grants_a_post_every_channel_the_contract_gives_it() -> None:
    from edge_daemon.contract import CHANNELS

    lines = set((SHIPPED / "acl").read_text().splitlines())
    for name, channel in CHANNELS.items():
        access = "write" if channel.sender == "post" else "read"
        assert f"pattern {access} alarmpost/v1/%u/{name}" in lines, name


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


def test_only_the_centre_may_publish_a_posts_content_and_only_that_post_reads_it(
    client: Callable[..., Client],
) -> None:
    centre, north, south = client("centre"), client(NORTH), client(SOUTH)
    assert accepted(centre.publish(topic(NORTH, "content"), "for north", retain=True))
    for forbidden in (topic(NORTH, "content"), topic(SOUTH, "content")):  # a post cannot write content, its own neither
        assert north.publish(forbidden, "forged", retain=True) == NOT_AUTHORIZED
    assert north.subscribe("#") == 1 and south.subscribe("#") == 1  # the retained content: only north's own arrives
    first = north.messages.get(timeout=WAIT_S)
    assert (first.topic, bytes(first.payload), first.retain) == (topic(NORTH, "content"), b"for north", True)
    assert centre.publish(topic(SOUTH, "content"), "for south") == 0
    assert south.topics_until(topic(SOUTH, "content")) == [topic(SOUTH, "content")]  # north's never came first


def test_a_post_reports_its_portal_statistics_and_cannot_report_for_another(client: Callable[..., Client]) -> None:
    centre, north = client("centre"), client(NORTH)
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
    with Centre("localhost", broker.port, password=PASSWORDS["centre"], ca_file=str(pki.ca), clean=True) as centre:
        assert centre.max_packet_size == 1048576  # the shipped broker's max_packet_size, told in its CONNACK
        centre.publish_content(site, post, payload)
        oversized = {"format": "alarmpost-content-v1", "bundle": "A" * 1048576, "signature": "A" * 86 + "=="}
        with pytest.raises(CentreError, match="the broker takes packets of at most 1048576"):
            centre.publish_content(site, post, json.dumps(oversized).encode())
    north = client(NORTH)
    assert north.subscribe(topic(NORTH, "content")) == 1
    store = ContentStore(tmp_path / "cache", public, 2048 * 1024)
    assert store.offer(north.messages.get(timeout=WAIT_S).payload).id == "notice-1"


def test_the_broker_refusing_content_is_an_error_for_the_centre(broker: Mosquitto, pki: Pki) -> None:
    from edge_daemon.centre import Centre, CentreError

    envelope = {"format": "alarmpost-content-v1", "bundle": "e30=", "signature": "A" * 86 + "=="}
    post = Centre("localhost", broker.port, username=NORTH, password=PASSWORDS[NORTH], ca_file=str(pki.ca), clean=True)
    with post, pytest.raises(CentreError, match=f"the broker refused the content for {NORTH}: Not authorized"):
        post.publish_content(*NORTH.split("/"), json.dumps(envelope).encode())
