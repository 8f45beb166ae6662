"""The embedded MQTT broker (hw_sim.mqtt_broker) with real paho-mqtt clients, MQTT 5.0 and 3.1.1.

Each test waits on queues fed by the clients' callbacks.  Where a test shows that
something did NOT arrive, a later "fence" message from the same publisher proves
it: the broker keeps each publisher's order, so whatever came before the fence
would have arrived before it.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from hw_sim.mqtt_broker import BrokerThread
from hw_sim.paths import ROOT

pytestmark = pytest.mark.timeout(20)

WAIT = 3.0  # seconds to wait for anything that should happen
V5, V311 = mqtt.MQTTv5, mqtt.MQTTv311
BOTH_VERSIONS = pytest.mark.parametrize("protocol", [V5, V311], ids=["v5", "v311"])


class Peer:
    """A paho client on its own network thread; its callbacks feed queues the test waits on."""

    def __init__(self, port: int, client_id: str = "", protocol: int = V5, persistent: bool = False) -> None:
        self.port = port
        self.protocol = protocol
        extra: dict[str, Any] = {} if protocol == V5 else {"clean_session": not persistent}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **extra)
        self.connacks: queue.Queue[tuple[mqtt.ConnectFlags, ReasonCode]] = queue.Queue()
        self.connack_properties: Properties | None = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.acks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.acks.put(codes)
        self.client.on_unsubscribe = lambda _c, _u, _mid, codes, _p: self.acks.put(codes)
        self.client.on_disconnect = self._on_disconnect
        self.client.on_socket_open = self._on_socket_open

    @staticmethod
    def _on_socket_open(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # paho leaves Nagle on: a QoS 1 PUBLISH right after a QoS 0 one would wait ~40 ms for a delayed ACK
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, flags: Any, code: ReasonCode, props: Any) -> None:
        self.connack_properties = props
        self.connacks.put((flags, code))

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, code: ReasonCode, _props: Any) -> None:
        client.loop_stop()  # from the network thread: it ends now instead of reconnecting
        self.disconnects.put(code)

    def connect(self, clean_start: bool = True, session_expiry: int = 0, keepalive: int = 60) -> mqtt.ConnectFlags:
        """Connect and wait for the CONNACK; return its flags (the reason code must be success)."""
        flags, code = self.try_connect(clean_start, session_expiry, keepalive)
        assert not code.is_failure, f"refused: {code}"
        return flags

    def try_connect(
        self, clean_start: bool = True, session_expiry: int = 0, keepalive: int = 60
    ) -> tuple[mqtt.ConnectFlags, ReasonCode]:
        kwargs: dict[str, Any] = {}
        if self.protocol == V5:
            properties = Properties(PacketTypes.CONNECT)
            if session_expiry:
                properties.SessionExpiryInterval = session_expiry
            kwargs = {"clean_start": clean_start, "properties": properties}
        self.client.connect("127.0.0.1", self.port, keepalive=keepalive, **kwargs)
        self.client.loop_start()
        return self.connacks.get(timeout=WAIT)

    def subscribe(self, topic: str, qos: int = 1, **options: Any) -> list[int]:
        """Subscribe and wait for the SUBACK; return its reason codes.  options: noLocal, retainHandling, ..."""
        request: Any = [(topic, SubscribeOptions(qos=qos, **options))] if self.protocol == V5 else [(topic, qos)]
        self.client.subscribe(request)
        return [code.value for code in self.acks.get(timeout=WAIT)]

    def subscribe_all(self, topics: list[str], qos: int = 1) -> list[int]:
        """Subscribe to several filters in one SUBSCRIBE."""
        self.client.subscribe([(topic, SubscribeOptions(qos=qos) if self.protocol == V5 else qos) for topic in topics])
        return [code.value for code in self.acks.get(timeout=WAIT)]

    def publish(
        self, topic: str, payload: bytes | str = b"", qos: int = 1, retain: bool = False, **properties: Any
    ) -> None:
        """Publish and wait until it is acknowledged (QoS 1) or written (QoS 0).  properties: MQTT 5 ones."""
        props = None
        if properties:
            props = Properties(PacketTypes.PUBLISH)
            for name, value in properties.items():
                setattr(props, name, value)
        sent = self.client.publish(topic, payload, qos, retain, props)
        sent.wait_for_publish(WAIT)
        assert sent.is_published(), f"PUBLISH to {topic} not acknowledged"

    def receive(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def receive_until(self, fence_topic: str) -> list[mqtt.MQTTMessage]:
        """Every message up to and including the first on fence_topic."""
        received = [self.receive()]
        while received[-1].topic != fence_topic:
            received.append(self.receive())
        return received

    def kill(self) -> None:
        """Drop the TCP connection without a DISCONNECT, as a power cut would."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()  # the network thread sees the connection end, and stops

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def topics(messages: list[mqtt.MQTTMessage]) -> list[str]:
    return [message.topic for message in messages]


@pytest.fixture
def broker() -> Iterator[BrokerThread]:
    with BrokerThread() as running:
        yield running


@pytest.fixture
def peers() -> Iterator[Callable[..., Peer]]:
    """Make Peer clients for the test's broker port; all are closed afterwards."""
    made: list[Peer] = []

    def make(port: int, client_id: str = "", protocol: int = V5, persistent: bool = False) -> Peer:
        made.append(Peer(port, client_id, protocol, persistent))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


@pytest.fixture
def connected(broker: BrokerThread, peers: Callable[..., Peer]) -> Callable[..., Peer]:
    """A connected client of the test's broker: connected(client_id="", protocol=V5, will=(topic, payload, ...))."""

    def make(client_id: str = "", protocol: int = V5, will: tuple[Any, ...] | None = None, **connect: Any) -> Peer:
        peer = peers(broker.port, client_id, protocol, connect.pop("persistent", False))
        if will is not None:
            peer.client.will_set(*will)
        peer.connect(**connect)
        return peer

    return make


# -- raw sockets, for what no well-behaved client sends ----------------------------------------------------------------


def frame(first_byte: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        length, digit = length >> 7, length & 0x7F
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes([first_byte]) + bytes(encoded) + body


def string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(data)) + data


def connect_packet(
    client_id: str | bytes,
    level: int = 5,
    clean_start: bool = True,
    properties: bytes = b"\x00",
    name: str = "MQTT",
    keepalive: int = 60,
    will: tuple[str, bytes] | None = None,
) -> bytes:
    """A CONNECT; properties (MQTT 5) are the encoded property length and properties."""
    flags = (0x02 if clean_start else 0) | (0x04 if will else 0)
    variable = string(name) + bytes([level, flags]) + struct.pack(">H", keepalive)
    payload = string(client_id)
    if will:
        payload += (b"\x00" if level == 5 else b"") + string(will[0]) + string(will[1])
    return frame(0x10, variable + (properties if level == 5 else b"") + payload)


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, body) of each packet in data."""
    found = []
    while data:
        length, shift, index = 0, 0, 1
        while True:
            length |= (data[index] & 0x7F) << shift
            shift, index = shift + 7, index + 1
            if not data[index - 1] & 0x80:
                break
        found.append((data[0], data[index : index + length]))
        data = data[index + length :]
    return found


class RawClient:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        return data

    def read_packet(self) -> tuple[int, bytes]:
        """(first byte, body) of the next packet."""
        first_byte, length, shift = self.read_exactly(1)[0], 0, 0
        while True:
            digit = self.read_exactly(1)[0]
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                return first_byte, self.read_exactly(length)

    def read_to_end(self) -> bytes:
        """Everything until the broker closes the connection."""
        data = b""
        while chunk := self.sock.recv(4096):
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(broker: BrokerThread) -> Iterator[Callable[[], RawClient]]:
    made: list[RawClient] = []

    def make() -> RawClient:
        made.append(RawClient(broker.port))
        return made[-1]

    yield make
    for client in made:
        client.close()


# -- connecting --------------------------------------------------------------------------------------------------------


def test_connack_states_what_the_broker_supports_and_assigns_a_client_id(connected: Callable[..., Peer]) -> None:
    peer = connected("")
    props = peer.connack_properties
    assert props is not None
    assert (props.MaximumQoS, props.RetainAvailable, props.ReceiveMaximum) == (1, 1, 1024)
    assert (props.WildcardSubscriptionAvailable, props.SharedSubscriptionAvailable) == (1, 1)
    assert props.SubscriptionIdentifierAvailable == 0
    assert not hasattr(props, "TopicAliasMaximum")  # absent: 0, topic aliases are not supported
    assert props.AssignedClientIdentifier.startswith("auto-")


# -- publish and subscribe ---------------------------------------------------------------------------------------------


@BOTH_VERSIONS
def test_messages_arrive_in_order_at_the_lower_of_publish_and_granted_qos(
    connected: Callable[..., Peer], protocol: int
) -> None:
    at_qos1, at_qos0 = connected(protocol=protocol), connected(protocol=protocol)
    assert at_qos1.subscribe("seq/#", qos=1) == [1]
    assert at_qos0.subscribe("seq/#", qos=0) == [0]
    publisher = connected(protocol=protocol)
    sent = [(f"seq/{n % 3}", f"m{n}".encode(), n % 2) for n in range(40)]
    for topic, payload, qos in sent:
        publisher.publish(topic, payload, qos=qos)

    for subscriber, granted in ((at_qos1, 1), (at_qos0, 0)):
        received = [subscriber.receive() for _ in sent]
        assert [(m.topic, m.payload, m.qos) for m in received] == [(t, p, min(q, granted)) for t, p, q in sent]
        assert not any(m.retain for m in received)


def test_wildcards_match_levels_and_leave_dollar_topics_to_explicit_filters(connected: Callable[..., Peer]) -> None:
    filters = ["site/+/status", "site/#", "#", "+/+/status", "$SYS/#", "+/broker/#"]
    subscribers = {topic_filter: connected() for topic_filter in filters}
    for topic_filter, subscriber in subscribers.items():
        assert subscriber.subscribe_all([topic_filter, "fence"]) == [1, 1]
    publisher = connected()
    for topic in ["site/gate1/status", "site/gate1/alarm/raised", "site", "$SYS/broker/uptime", "other/x/status"]:
        publisher.publish(topic, b"x")
    publisher.publish("fence")

    received = {topic_filter: topics(peer.receive_until("fence"))[:-1] for topic_filter, peer in subscribers.items()}
    assert received == {
        "site/+/status": ["site/gate1/status"],
        "site/#": ["site/gate1/status", "site/gate1/alarm/raised", "site"],
        "#": ["site/gate1/status", "site/gate1/alarm/raised", "site", "other/x/status"],
        "+/+/status": ["site/gate1/status", "other/x/status"],
        "$SYS/#": ["$SYS/broker/uptime"],
        "+/broker/#": [],
    }


@pytest.mark.parametrize("level, failure", [(5, 0x8F), (4, 0x80)], ids=["v5", "v311"])
def test_invalid_topic_filters_get_a_failure_code_and_the_connection_carries_on(
    raw: Callable[[], RawClient], connected: Callable[..., Peer], level: int, failure: int
) -> None:
    client = raw()  # paho refuses to send these filters at all
    client.send(connect_packet("filters", level=level))
    assert client.read_packet()[0] == 0x20
    filters = ["a/#/b", "a+/b", "$share/g", "$share//x", "$share/g+/x", "ok/#"]
    properties = b"\x00" if level == 5 else b""
    client.send(frame(0x82, b"\x00\x07" + properties + b"".join(string(f) + b"\x01" for f in filters)))
    assert client.read_packet() == (0x90, b"\x00\x07" + properties + bytes([failure] * 5 + [1]))

    connected().publish("ok/still", b"works", qos=0)
    header, body = client.read_packet()
    assert header == 0x30 and body.endswith(b"works")


def test_unsubscribe_stops_delivery(connected: Callable[..., Peer]) -> None:
    subscriber = connected()
    subscriber.subscribe_all(["u/#", "fence"])
    subscriber.client.unsubscribe(["u/#", "never/subscribed"])
    assert [code.value for code in subscriber.acks.get(timeout=WAIT)] == [0x00, 0x11]

    publisher = connected()
    publisher.publish("u/x")
    publisher.publish("fence")
    assert topics(subscriber.receive_until("fence")) == ["fence"]


def test_no_local_subscription_does_not_echo_the_clients_own_messages(connected: Callable[..., Peer]) -> None:
    chatter, listener = connected(), connected()
    assert chatter.subscribe("chat/#", noLocal=True) == [1]
    chatter.subscribe("fence")
    listener.subscribe("chat/#")

    chatter.publish("chat/room", b"hello")
    chatter.publish("fence")
    assert topics(chatter.receive_until("fence")) == ["fence"]
    assert listener.receive().payload == b"hello"


@BOTH_VERSIONS
def test_qos2_publish_is_answered_per_version(connected: Callable[..., Peer], protocol: int) -> None:
    subscriber = connected()
    assert subscriber.subscribe("q2", qos=2) == [1]  # Maximum QoS 1: granted 1
    publisher = connected(protocol=protocol)
    publisher.client.publish("q2", b"exactly once?", qos=2)
    if protocol == V311:  # no way to refuse: PUBREC/PUBREL/PUBCOMP, then the message goes on at QoS 1
        message = subscriber.receive()
        assert (message.payload, message.qos) == (b"exactly once?", 1)
    else:  # MQTT 5 was told Maximum QoS 1 in CONNACK
        assert publisher.disconnects.get(timeout=WAIT).value == 0x9B


# -- retained messages -------------------------------------------------------------------------------------------------


def test_retained_messages_are_set_replaced_and_cleared(connected: Callable[..., Peer]) -> None:
    publisher = connected()
    publisher.publish("cfg/a", b"v1", retain=True)
    publisher.publish("cfg/a", b"v2", retain=True)
    publisher.publish("cfg/b", b"b1", retain=True)
    first = connected()
    first.subscribe_all(["cfg/#", "fence"])
    assert sorted((m.topic, m.payload, m.retain) for m in (first.receive(), first.receive())) == [
        ("cfg/a", b"v2", True),
        ("cfg/b", b"b1", True),
    ]

    publisher.publish("cfg/a", b"", retain=True)  # empty payload: delete; still forwarded to subscribers
    cleared = first.receive()
    assert (cleared.topic, cleared.payload) == ("cfg/a", b"")

    second = connected()
    second.subscribe_all(["cfg/#", "fence"])
    publisher.publish("fence")
    received = second.receive_until("fence")
    assert [(m.topic, m.payload, m.retain) for m in received] == [("cfg/b", b"b1", True), ("fence", b"", False)]


def test_retain_handling_option(connected: Callable[..., Peer]) -> None:
    publisher = connected()
    publisher.publish("state", b"on", retain=True)
    never, first_only = connected(), connected()
    never.subscribe("state", retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
    first_only.subscribe("state", retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    first_only.subscribe("state", retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    for peer in (never, first_only):
        peer.subscribe("fence")
    publisher.publish("fence")

    assert topics(never.receive_until("fence")) == ["fence"]
    assert [(m.topic, m.retain) for m in first_only.receive_until("fence")] == [("state", True), ("fence", False)]


# -- wills -------------------------------------------------------------------------------------------------------------


@BOTH_VERSIONS
def test_will_is_published_and_retained_when_the_connection_drops(
    connected: Callable[..., Peer], protocol: int
) -> None:
    watcher = connected()
    watcher.subscribe("posts/+/online")
    dying = connected("post-3", protocol=protocol, will=("posts/post-3/online", b"0", 1, True))

    dying.kill()
    will = watcher.receive()
    assert (will.topic, will.payload, will.qos) == ("posts/post-3/online", b"0", 1)

    late = connected()
    late.subscribe("posts/#")
    retained = late.receive()
    assert (retained.topic, retained.payload, retained.retain) == ("posts/post-3/online", b"0", True)


def test_will_is_not_published_after_a_clean_disconnect_but_is_with_reason_0x04(
    connected: Callable[..., Peer],
) -> None:
    watcher = connected()
    watcher.subscribe("will/#")
    polite = connected("polite", will=("will/polite", b"gone"))
    with_will = connected("with-will", will=("will/with-will", b"gone"))
    cut = connected("cut", will=("will/cut", b"gone"))

    polite.close()
    with_will.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
    assert with_will.disconnects.get(timeout=WAIT) == 0
    cut.kill()

    # By the time the later connections' wills are in, the clean DISCONNECT was handled long before.
    assert sorted(topics([watcher.receive(), watcher.receive()])) == ["will/cut", "will/with-will"]
    with pytest.raises(queue.Empty):
        watcher.messages.get(timeout=0.2)


def test_will_is_published_on_keepalive_timeout(raw: Callable[[], RawClient], connected: Callable[..., Peer]) -> None:
    watcher = connected()
    watcher.subscribe("will/#")
    silent = raw()
    silent.send(connect_packet("silent", keepalive=1, will=("will/silent", b"timed out")))
    assert silent.read_packet()[0] == 0x20

    assert watcher.messages.get(timeout=1.5 + WAIT).payload == b"timed out"  # after 1.5 x keep alive
    assert [(first_byte, body[:1]) for first_byte, body in packets(silent.read_to_end())] == [(0xE0, b"\x8d")]


def test_second_connection_with_the_same_client_id_takes_over_and_sends_the_old_will(
    connected: Callable[..., Peer],
) -> None:
    watcher = connected()
    watcher.subscribe("will/#")
    old = connected("post-9", will=("will/post-9", b"replaced"))

    new = connected("post-9")
    assert old.disconnects.get(timeout=WAIT).value == 0x8E  # session taken over
    assert watcher.receive().payload == b"replaced"
    new.subscribe("still/here")
    watcher.publish("still/here", b"yes")
    assert new.receive().payload == b"yes"


# -- MQTT 5 properties -------------------------------------------------------------------------------------------------


def test_request_response_properties_arrive_intact(connected: Callable[..., Peer]) -> None:
    responder, requester = connected(), connected()
    responder.subscribe("req/+")
    requester.subscribe("resp/requester-1")
    user_properties = [("b", "2"), ("a", "1"), ("a", "3")]
    requester.publish(
        "req/status",
        b'{"q": 1}',
        ResponseTopic="resp/requester-1",
        CorrelationData=b"\x00\x01corr",
        UserProperty=user_properties,
        ContentType="application/json",
        PayloadFormatIndicator=1,
        MessageExpiryInterval=60,
    )

    request = responder.receive()
    props = request.properties
    assert props is not None
    assert (props.ResponseTopic, props.CorrelationData) == ("resp/requester-1", b"\x00\x01corr")
    assert props.UserProperty == user_properties
    assert (props.ContentType, props.PayloadFormatIndicator) == ("application/json", 1)
    assert 0 < props.MessageExpiryInterval <= 60
    responder.publish(props.ResponseTopic, b"ok", CorrelationData=props.CorrelationData)
    response = requester.receive()
    assert response.payload == b"ok"
    assert response.properties is not None and response.properties.CorrelationData == b"\x00\x01corr"


# -- sessions ----------------------------------------------------------------------------------------------------------


@BOTH_VERSIONS
def test_persistent_session_queues_qos1_while_offline_and_delivers_after_reconnect(
    broker: BrokerThread, peers: Callable[..., Peer], connected: Callable[..., Peer], protocol: int
) -> None:
    gate = peers(broker.port, "gate-7", protocol, persistent=True)
    assert not gate.connect(session_expiry=300).session_present
    gate.subscribe_all(["cmd/#", "fence"])
    gate.close()

    publisher = connected()
    for n in range(5):
        publisher.publish(f"cmd/{n}", str(n), qos=1)
    publisher.publish("cmd/lost", b"QoS 0 is not queued", qos=0)

    back = peers(broker.port, "gate-7", protocol, persistent=True)
    assert back.connect(clean_start=False, session_expiry=300).session_present
    publisher.publish("fence")
    received = back.receive_until("fence")
    assert [(m.topic, m.payload, m.qos) for m in received[:-1]] == [(f"cmd/{n}", str(n).encode(), 1) for n in range(5)]
    assert topics(received[5:]) == ["fence"]


def test_offline_queue_keeps_the_newest_messages_up_to_its_limit(
    broker: BrokerThread, peers: Callable[..., Peer], connected: Callable[..., Peer]
) -> None:
    broker.broker.offline_queue_limit = 3
    publisher = connected()
    publisher.subscribe("gone/#")
    gate = peers(broker.port, "gate-9")
    gate.client.will_set("gone/gate-9")
    gate.connect(session_expiry=300)
    gate.subscribe_all(["cmd/#", "fence"])
    gate.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))  # "with will"
    assert publisher.receive().topic == "gone/gate-9"  # so the broker has seen the session go offline
    for n in range(6):
        publisher.publish("cmd/n", str(n))

    back = peers(broker.port, "gate-9")
    assert back.connect(clean_start=False, session_expiry=300).session_present
    publisher.publish("fence")
    assert [m.payload for m in back.receive_until("fence")] == [b"3", b"4", b"5", b""]


def test_clean_start_discards_the_old_session(
    broker: BrokerThread, peers: Callable[..., Peer], connected: Callable[..., Peer]
) -> None:
    gate = peers(broker.port, "gate-8")
    gate.connect(session_expiry=300)
    gate.subscribe("cmd/#")
    gate.close()

    again = peers(broker.port, "gate-8")
    assert not again.connect(clean_start=True, session_expiry=300).session_present
    again.subscribe("fence")
    publisher = connected()
    publisher.publish("cmd/x")
    publisher.publish("fence")
    assert topics(again.receive_until("fence")) == ["fence"]


def test_unacknowledged_qos1_is_resent_with_dup_on_reconnect(
    raw: Callable[[], RawClient], connected: Callable[..., Peer]
) -> None:
    session_expiry = b"\x05\x11\x00\x00\x01\x2c"  # properties: Session Expiry Interval 300
    first = raw()
    first.send(connect_packet("raw-dup", properties=session_expiry))
    assert first.read_packet()[0] == 0x20
    first.send(frame(0x82, b"\x00\x01\x00" + string("dup/t") + b"\x01"))
    assert first.read_packet() == (0x90, b"\x00\x01\x00\x01")
    connected().publish("dup/t", b"one")
    header, body = first.read_packet()
    assert header == 0x32  # QoS 1, not a duplicate
    first.close()  # no PUBACK

    second = raw()
    second.send(connect_packet("raw-dup", clean_start=False, properties=session_expiry))
    assert second.read_packet()[1][:2] == b"\x01\x00"  # session present, success
    assert second.read_packet() == (0x3A, body)  # DUP set, same packet id and payload
    assert body.endswith(b"one")


@pytest.mark.parametrize("members", [2, 3])
def test_shared_subscription_delivers_each_message_to_exactly_one_member(
    connected: Callable[..., Peer], members: int
) -> None:
    workers = [connected() for _ in range(members)]
    for worker in workers:
        assert worker.subscribe_all(["$share/workers/jobs/#", "fence"]) == [1, 1]
    everyone = connected()
    everyone.subscribe_all(["jobs/#", "fence"])
    publisher = connected()
    jobs = [f"job-{n}".encode() for n in range(members * 10)]
    for job in jobs:
        publisher.publish("jobs/new", job)
    publisher.publish("fence")

    shares = [[m.payload for m in worker.receive_until("fence")[:-1]] for worker in workers]
    assert sorted(payload for share in shares for payload in share) == sorted(jobs)
    assert [len(share) for share in shares] == [10] * members  # round robin
    assert [m.payload for m in everyone.receive_until("fence")[:-1]] == jobs


# -- refusals and bad input --------------------------------------------------------------------------------------------


@BOTH_VERSIONS
def test_bad_user_name_or_password_is_refused(peers: Callable[..., Peer], protocol: int) -> None:
    with BrokerThread(users={"post-1": "secret"}) as broker:
        for username, password, accepted in [
            ("post-1", "wrong", False),
            (None, None, False),
            ("post-1", "secret", True),
        ]:
            peer = peers(broker.port, protocol=protocol)
            peer.client.username_pw_set(username, password)
            _, code = peer.try_connect()
            assert code.value == (0 if accepted else 0x86), (username, password)
            peer.close()


@pytest.mark.parametrize(
    "level, name, expected",
    [(3, "MQIsdp", b"\x00\x01"), (6, "MQTT", b"\x00\x84")],
    ids=["3.1", "level-6"],
)
def test_unsupported_protocol_level_is_refused_with_the_right_connack(
    raw: Callable[[], RawClient], level: int, name: str, expected: bytes
) -> None:
    client = raw()
    client.send(connect_packet("old", level=level, name=name))
    [(first_byte, body)] = packets(client.read_to_end())
    assert (first_byte, body[:2]) == (0x20, expected)


MALFORMED = [
    ("remaining length of five bytes", b"\x30\xff\xff\xff\xff\x01", 0x81),
    ("topic not UTF-8", frame(0x30, string(b"\xff\xfe") + b"\x00"), 0x81),
    ("field runs past the packet", frame(0x30, b"\x00\x64abc"), 0x81),
    ("SUBSCRIBE with wrong header flags", frame(0x80, b"\x00\x01\x00" + string("a") + b"\x01"), 0x81),
    ("unknown property", frame(0x30, string("a") + b"\x02\x7f\x00"), 0x81),
    ("packet too large", b"\x30\x80\x80\x80\x01", 0x95),
    ("wildcard in a topic name", frame(0x30, string("a/+") + b"\x00"), 0x90),
    ("QoS 2 publish", frame(0x34, string("a") + b"\x00\x01\x00"), 0x9B),
    ("second CONNECT", connect_packet("again"), 0x82),
    ("topic alias", frame(0x30, string("a") + b"\x03\x23\x00\x01"), 0x94),
]


@pytest.mark.parametrize("data, reason", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_bad_packet_closes_only_that_connection(
    raw: Callable[[], RawClient], connected: Callable[..., Peer], data: bytes, reason: int
) -> None:
    bystander = connected()
    bystander.subscribe("alive")
    client = raw()
    client.send(connect_packet("bad"))
    assert client.read_packet()[0] == 0x20
    client.send(data)

    [(first_byte, body)] = packets(client.read_to_end())
    assert (first_byte, body[0]) == (0xE0, reason)  # DISCONNECT with the reason, then closed
    connected().publish("alive", b"yes")
    assert bystander.receive().payload == b"yes"


def test_malformed_connect_gets_connack_0x81(raw: Callable[[], RawClient]) -> None:
    client = raw()
    client.send(connect_packet(b"\xc3\x28"))  # client id not UTF-8
    [(first_byte, body)] = packets(client.read_to_end())
    assert (first_byte, body[:2]) == (0x20, b"\x00\x81")


def test_bytes_before_connect_and_bad_v311_packets_just_close(raw: Callable[[], RawClient]) -> None:
    before_connect = raw()
    before_connect.send(frame(0x30, string("a")))
    assert before_connect.read_to_end() == b""

    v311 = raw()
    v311.send(connect_packet("v311", level=4))
    assert v311.read_packet() == (0x20, b"\x00\x00")
    v311.send(b"\x30\xff\xff\xff\xff\x01")
    assert v311.read_to_end() == b""  # MQTT 3.1.1 has no DISCONNECT from the server


# -- running it --------------------------------------------------------------------------------------------------------


def test_command_line_prints_the_address_and_stops_on_sigterm(peers: Callable[..., Peer]) -> None:
    command = [sys.executable, "-m", "hw_sim.mqtt_broker", "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("MQTT broker listening on 127.0.0.1:")
        peer = peers(int(line.rsplit(":", 1)[1]))
        peer.connect()
        peer.subscribe("cli")
        peer.publish("cli", b"hello")
        assert peer.receive().payload == b"hello"
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
