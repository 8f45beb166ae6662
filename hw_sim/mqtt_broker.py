"""A small MQTT broker in pure Python (asyncio only) for the simulated bench.

``make sim`` starts it when mosquitto is not installed, so the demo needs nothing
from outside; the tests of the uplink and the posts in the field use mosquitto.
This is NOT a production broker: one process, everything in memory (sessions and
retained messages are lost on restart), no TLS, no ACLs, no $SYS topics, routing
by a scan of every session, and no throttling of a slow subscriber.

What it speaks, for the features our clients use:

- MQTT 5.0 (protocol level 5) and 3.1.1 (level 4); any other level gets CONNACK
  0x84 (level above 5) or return code 1.
- QoS 0 and 1 both ways.  QoS 2: CONNACK tells an MQTT 5 client Maximum QoS 1, so a
  QoS 2 PUBLISH is a protocol error (DISCONNECT 0x9B) and a QoS 2 will gets CONNACK
  0x9B.  MQTT 3.1.1 cannot refuse QoS 2, so there PUBREC/PUBREL/PUBCOMP are answered
  (a resent PUBLISH is not forwarded twice) and the message goes on at QoS 1.
- Overlapping subscriptions of one session get one copy, at the highest granted QoS.
- Not supported: topic aliases (Topic Alias Maximum 0: a PUBLISH with one gets
  DISCONNECT 0x94), subscription identifiers (0xA1), AUTH (CONNACK 0x8C).
- Offline persistent sessions queue QoS 1 messages (QoS 0 ones are dropped) up to
  ``offline_queue_limit``, the oldest dropped first; the same queue holds messages
  beyond the client's Receive Maximum while it is connected.
- Message expiry intervals count down while a message waits; expired ones are dropped.
- Will Delay Interval is honoured (bounded by the session expiry).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("hw_sim.mqtt_broker")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# MQTT 5 reason codes (V3_SUBSCRIBE_FAILURE: the 3.1.1 SUBACK's)
SUCCESS = NORMAL_DISCONNECTION = 0x00
NO_SUBSCRIPTION_EXISTED, V3_SUBSCRIBE_FAILURE = 0x11, 0x80
MALFORMED, PROTOCOL_ERROR, UNSUPPORTED_VERSION, CLIENT_ID_INVALID, BAD_CREDENTIALS = 0x81, 0x82, 0x84, 0x85, 0x86
SERVER_SHUTTING_DOWN, BAD_AUTH_METHOD, KEEP_ALIVE_TIMEOUT, SESSION_TAKEN_OVER = 0x8B, 0x8C, 0x8D, 0x8E
TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID, TOPIC_ALIAS_INVALID, PACKET_TOO_LARGE = 0x8F, 0x90, 0x94, 0x95
QOS_NOT_SUPPORTED, SUBSCRIPTION_IDS_NOT_SUPPORTED = 0x9B, 0xA1

# MQTT 5 property identifiers
MESSAGE_EXPIRY, SUBSCRIPTION_ID, SESSION_EXPIRY, ASSIGNED_CLIENT_ID, AUTH_METHOD = 0x02, 0x0B, 0x11, 0x12, 0x15
WILL_DELAY, REASON_STRING, RECEIVE_MAXIMUM, TOPIC_ALIAS, MAXIMUM_QOS = 0x18, 0x1F, 0x21, 0x23, 0x24
RETAIN_AVAILABLE, USER_PROPERTY, MAXIMUM_PACKET_SIZE, WILDCARDS_AVAILABLE = 0x25, 0x26, 0x27, 0x28
SUBSCRIPTION_IDS_AVAILABLE, SHARED_AVAILABLE = 0x29, 0x2A

PROPERTY_KINDS: dict[int, str] = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), "u8"),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), "u16"),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), "u32"),
    **dict.fromkeys((0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F), "utf8"),
    **dict.fromkeys((0x09, 0x16), "binary"),
    SUBSCRIPTION_ID: "varint",
    USER_PROPERTY: "pair",
}
NEVER_EXPIRES = 0xFFFFFFFF

PropertyValue = int | str | bytes | tuple[str, str]
Properties = list[tuple[int, PropertyValue]]


class MqttError(Exception):
    """Why a CONNECT is refused or a connection closed: the MQTT 5 reason code, and the 3.1.1 CONNACK code if any."""

    def __init__(self, reason: int, why: str, v3_code: int | None = None) -> None:
        super().__init__(why)
        self.reason = reason
        self.v3_code = v3_code


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = value >> 7, value & 0x7F
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def binary(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def utf8(text: str) -> bytes:
    return binary(text.encode())


def encode_value(kind: str, value: PropertyValue) -> bytes:
    if isinstance(value, tuple):
        return utf8(value[0]) + utf8(value[1])
    if isinstance(value, str):
        return utf8(value)
    if isinstance(value, bytes):
        return binary(value)
    if kind == "varint":
        return varint(value)
    return value.to_bytes({"u8": 1, "u16": 2, "u32": 4}[kind], "big")


def encode_properties(props: Properties) -> bytes:
    body = b"".join(varint(pid) + encode_value(PROPERTY_KINDS[pid], value) for pid, value in props)
    return varint(len(body)) + body


def packet(kind: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connack_packet(version: int, code: int, session_present: bool = False, props: Properties | None = None) -> bytes:
    body = bytes([int(session_present), code])
    return packet(CONNACK, body + encode_properties(props or []) if version == 5 else body)


def disconnect_packet(reason: int, why: str) -> bytes:
    return packet(DISCONNECT, bytes([reason]) + encode_properties([(REASON_STRING, why)]))


def first(props: Properties, pid: int) -> PropertyValue | None:
    return next((value for key, value in props if key == pid), None)


def int_property(props: Properties, pid: int, default: int) -> int:
    value = first(props, pid)
    return value if isinstance(value, int) else default


class Reader:
    """The fields of one packet's body, in order; running off the end is a malformed packet."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise MqttError(MALFORMED, "packet ends in the middle of a field")
        self.pos += count
        return self.data[self.pos - count : self.pos]

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise MqttError(MALFORMED, "variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise MqttError(MALFORMED, "string is not valid UTF-8") from None
        if "\x00" in text:
            raise MqttError(MALFORMED, "string contains U+0000")
        return text

    def properties(self) -> Properties:
        length = self.varint()
        end = self.pos + length
        if end > len(self.data):
            raise MqttError(MALFORMED, "properties run past the end of the packet")
        props: Properties = []
        while self.pos < end:
            pid = self.varint()
            kind = PROPERTY_KINDS.get(pid)
            if kind is None:
                raise MqttError(MALFORMED, f"unknown property 0x{pid:02X}")
            if pid not in (USER_PROPERTY, SUBSCRIPTION_ID) and first(props, pid) is not None:
                raise MqttError(PROTOCOL_ERROR, f"property 0x{pid:02X} given twice")
            props.append((pid, (self.utf8(), self.utf8()) if kind == "pair" else getattr(self, kind)()))
        if self.pos != end:
            raise MqttError(MALFORMED, "a property runs past the properties' length")
        return props


def valid_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic


def valid_filter(topic_filter: str) -> bool:
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if ("#" in level and (level != "#" or index != len(levels) - 1)) or ("+" in level and level != "+"):
            return False
    return bool(topic_filter)


def topic_matches(topic_filter: str, topic: str) -> bool:
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # $SYS-style topics are reached only by filters that name their first level
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for index, want in enumerate(wanted):
        if want == "#":
            return True
        if index >= len(levels) or want not in ("+", levels[index]):
            return False
    return len(wanted) == len(levels)


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties = field(default_factory=list)
    published_at: float = 0.0

    def seconds_left(self) -> int | None:
        """The Message Expiry Interval still to run, or None if it has none."""
        interval = first(self.properties, MESSAGE_EXPIRY)
        if not isinstance(interval, int):
            return None
        return interval - int(time.monotonic() - self.published_at)

    def expired(self) -> bool:
        left = self.seconds_left()
        return left is not None and left <= 0


@dataclass
class Outgoing:
    message: Message
    qos: int
    retain: bool

    def encode(self, version: int, packet_id: int, dup: bool = False) -> bytes:
        body = utf8(self.message.topic) + (struct.pack(">H", packet_id) if self.qos else b"")
        if version == 5:
            left = self.message.seconds_left()
            props = [(pid, left if pid == MESSAGE_EXPIRY and left else value) for pid, value in self.message.properties]
            body += encode_properties(props)
        return packet(PUBLISH, body + self.message.payload, int(dup) << 3 | self.qos << 1 | int(self.retain))


@dataclass
class Subscription:
    topic_filter: str  # without the $share/<group>/ prefix
    qos: int  # as granted
    share: str | None = None  # the whole $share/<group>/<filter>: it names the group
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


def parse_subscription(version: int, text: str, options: int) -> Subscription | None:
    """The subscription a SUBSCRIBE entry asks for; None if its filter is invalid."""
    qos, handling = options & 0x03, (options >> 4) & 0x03
    if options & (0xC0 if version == 5 else 0xFC) or qos == 3 or handling == 3:
        raise MqttError(MALFORMED, f"bad subscription options 0x{options:02X}")
    share, topic_filter = None, text
    if text.startswith("$share/"):
        parts = text.split("/", 2)
        if len(parts) < 3 or not parts[1] or "+" in parts[1] or "#" in parts[1]:
            return None
        share, topic_filter = text, parts[2]
    if not valid_filter(topic_filter):
        return None
    return Subscription(topic_filter, min(qos, 1), share, bool(options & 0x04), bool(options & 0x08), handling)


class Session:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.subscriptions: dict[str, Subscription] = {}
        self.inflight: dict[int, Outgoing] = {}  # QoS 1 sent, awaiting PUBACK, in sending order
        self.pending: deque[Outgoing] = deque()  # QoS 1 not sent yet: offline, or Receive Maximum reached
        self.expiry = 0
        self.connection: Connection | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.delayed_will: tuple[asyncio.TimerHandle, Message] | None = None
        self.qos2_received: set[int] = set()  # MQTT 3.1.1 QoS 2 packet ids forwarded, awaiting PUBREL
        self.dropped = 0
        self._last_packet_id = 0

    def next_packet_id(self) -> int:
        while True:
            self._last_packet_id = self._last_packet_id % 0xFFFF + 1
            if self._last_packet_id not in self.inflight:
                return self._last_packet_id

    def cancel_timers(self) -> None:
        if self.expiry_timer is not None:
            self.expiry_timer.cancel()
        if self.delayed_will is not None:
            self.delayed_will[0].cancel()
        self.expiry_timer = self.delayed_will = None


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.version = 0  # protocol level, known once CONNECT is read
        self.keepalive = 0
        self.receive_max = 0xFFFF
        self.max_packet_size = 0  # the client's limit; 0: none
        self.session: Session | None = None  # set once the CONNECT is accepted
        self.will: Message | None = None
        self.will_delay = 0
        self.ended = False

    def __str__(self) -> str:
        return f"{self.session.client_id}@{self.peer}" if self.session else self.peer

    def send(self, data: bytes) -> None:
        if not self.ended and not self.writer.is_closing():
            self.writer.write(data)


@dataclass
class ConnectRequest:
    client_id: str
    id_assigned: bool
    clean_start: bool
    session_expiry: int
    will: Message | None
    will_delay: int
    username: str | None
    password: bytes | None


class MqttBroker:
    """An MQTT 5.0 / 3.1.1 broker on one asyncio event loop (see the module docstring for what it does not do).

    Example (run it, then ``mosquitto_sub -p PORT -t '#' -v`` in another shell)::

        import asyncio
        from hw_sim.mqtt_broker import MqttBroker

        async def main() -> None:
            broker = MqttBroker(users={"post-1": "secret"})  # None: anonymous clients allowed
            port = await broker.start("127.0.0.1", 0)
            print("listening on port", port)
            await asyncio.sleep(60)
            await broker.stop()

        asyncio.run(main())
    """

    max_packet = 256 * 1024  # bytes; a larger packet from a client closes its connection (0x95)
    offline_queue_limit = 10_000  # QoS 1 messages held per session; beyond it the oldest is dropped
    receive_maximum = 1024  # told to MQTT 5 clients; each PUBLISH is acknowledged at once anyway
    connect_timeout = 10.0  # seconds a new connection has to send its CONNECT

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.users = users  # user name -> password; None allows anonymous clients
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._share_turns: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._stopping = False

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: any free port); return the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("MQTT broker listening on %s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        """Stop listening and close every connection (MQTT 5 clients get DISCONNECT 0x8B); no wills are sent."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if conn.session is not None and conn.version == 5:
                conn.send(disconnect_packet(SERVER_SHUTTING_DOWN, "broker stopping"))
            self._end(conn)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        for session in self.sessions.values():
            session.cancel_timers()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._connections.add(conn)
        try:
            await self._converse(conn)
        except MqttError as exc:
            log.warning("%s: %s (reason 0x%02X); closing the connection", conn, exc, exc.reason)
            self._explain(conn, exc)
        except asyncio.IncompleteReadError as exc:
            if not conn.ended:
                log.info("%s: connection closed%s", conn, " in the middle of a packet" if exc.partial else "")
        except OSError as exc:
            log.info("%s: connection lost: %s", conn, exc)
        except Exception:
            log.exception("%s: internal error; closing the connection", conn)
        finally:
            self._connections.discard(conn)
            self._end(conn)
            if task is not None:
                self._tasks.discard(task)

    async def _converse(self, conn: Connection) -> None:
        kind, _, body = await self._read_packet(conn, self.connect_timeout)
        if kind != CONNECT:
            raise MqttError(PROTOCOL_ERROR, f"first packet is type {kind}, not CONNECT")
        self._accept(conn, Reader(body))
        handlers: dict[int, Callable[[Connection, int, Reader], None]] = {
            PUBLISH: self._on_publish,
            PUBACK: self._on_puback,
            PUBREL: self._on_pubrel,
            SUBSCRIBE: self._on_subscribe,
            UNSUBSCRIBE: self._on_unsubscribe,
            PINGREQ: lambda conn, flags, body: conn.send(packet(PINGRESP, b"")),
        }
        while True:
            await conn.writer.drain()
            kind, flags, body = await self._read_packet(conn, conn.keepalive * 1.5 if conn.keepalive else None)
            if kind == DISCONNECT:
                self._on_disconnect(conn, Reader(body))
                return
            if kind not in handlers:
                raise MqttError(PROTOCOL_ERROR, f"unexpected packet type {kind}")
            handlers[kind](conn, flags, Reader(body))

    async def _read_packet(self, conn: Connection, timeout: float | None) -> tuple[int, int, bytes]:
        try:
            async with asyncio.timeout(timeout):
                header = (await conn.reader.readexactly(1))[0]
                length = await self._read_length(conn.reader)
                if length > self.max_packet:
                    raise MqttError(PACKET_TOO_LARGE, f"packet of {length} bytes, over the {self.max_packet} limit")
                body = await conn.reader.readexactly(length)
        except TimeoutError:
            raise MqttError(KEEP_ALIVE_TIMEOUT, f"nothing received for {timeout:g} s") from None
        kind, flags = header >> 4, header & 0x0F
        expected_flags = 0x02 if kind in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0
        if kind == 0 or (kind != PUBLISH and flags != expected_flags):
            raise MqttError(MALFORMED, f"bad fixed header 0x{header:02X}")
        return kind, flags, body

    @staticmethod
    async def _read_length(reader: asyncio.StreamReader) -> int:
        length = 0
        for shift in range(0, 28, 7):
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return length
        raise MqttError(MALFORMED, "remaining length longer than 4 bytes")

    def _explain(self, conn: Connection, exc: MqttError) -> None:
        """Tell the client why it is being closed, where the protocol has a way to."""
        if conn.session is None and conn.version == 5:
            conn.send(connack_packet(5, exc.reason, props=[(REASON_STRING, str(exc))]))
        elif conn.session is None and conn.version == 4 and exc.v3_code is not None:
            conn.send(connack_packet(4, exc.v3_code))
        elif conn.session is not None and conn.version == 5:
            conn.send(disconnect_packet(exc.reason, str(exc)))

    def _end(self, conn: Connection) -> None:
        """The connection is over, however it ended: close it, leave its will, let its session expire."""
        if conn.ended:
            return
        conn.ended = True
        conn.writer.close()
        session, will = conn.session, conn.will
        conn.will = None
        if session is None or self._stopping:
            return
        log.info("%s: disconnected", conn)
        if session.connection is conn:
            session.connection = None
        if will is not None:
            self._leave_will(session, will, conn.will_delay)
        if session.connection is not None:
            return
        if session.expiry == 0:
            self._end_session(session)
        elif session.expiry != NEVER_EXPIRES:
            session.expiry_timer = asyncio.get_running_loop().call_later(session.expiry, self._expire, session)

    def _accept(self, conn: Connection, reader: Reader) -> None:
        request = self._read_connect(conn, reader)
        if self.users is not None:
            expected = self.users.get(request.username or "")
            if request.username is None or expected is None or request.password != expected.encode():
                raise MqttError(BAD_CREDENTIALS, f"bad user name or password for {request.username!r}", v3_code=4)
        session, present = self._open_session(conn, request)
        conn.send(self._connack(conn, present, request))
        conn.will, conn.will_delay = request.will, request.will_delay
        log.info("%s: connected (MQTT %s, session %s)", conn, "5.0" if conn.version == 5 else "3.1.1", present)
        for packet_id, out in list(session.inflight.items()):
            if not self._send_publish(conn, out, packet_id, dup=True):
                del session.inflight[packet_id]
        self._flush(session)

    def _read_connect(self, conn: Connection, reader: Reader) -> ConnectRequest:
        name, level = reader.utf8(), reader.u8()
        if name != "MQTT" or level not in (4, 5):
            conn.version = 5 if name == "MQTT" and level > 5 else 4  # the CONNACK format the client may understand
            raise MqttError(UNSUPPORTED_VERSION, f"protocol {name!r} level {level} is not supported", v3_code=1)
        conn.version = level
        flags, conn.keepalive = reader.u8(), reader.u16()
        will_flag, will_qos, will_retain = bool(flags & 0x04), (flags >> 3) & 0x03, bool(flags & 0x20)
        if flags & 0x01 or will_qos == 3 or (not will_flag and (will_qos or will_retain)):
            raise MqttError(MALFORMED, f"bad CONNECT flags 0x{flags:02X}")
        if level == 4 and flags & 0x40 and not flags & 0x80:
            raise MqttError(MALFORMED, "password without a user name")
        props = reader.properties() if level == 5 else []
        if first(props, AUTH_METHOD) is not None:
            raise MqttError(BAD_AUTH_METHOD, "enhanced authentication is not supported")
        conn.receive_max = int_property(props, RECEIVE_MAXIMUM, 0xFFFF)
        conn.max_packet_size = int_property(props, MAXIMUM_PACKET_SIZE, 0)
        if not conn.receive_max or first(props, MAXIMUM_PACKET_SIZE) == 0:
            raise MqttError(PROTOCOL_ERROR, "Receive Maximum or Maximum Packet Size is 0")
        client_id = reader.utf8()
        will, will_delay = self._read_will(conn, reader, will_qos, will_retain) if will_flag else (None, 0)
        username = reader.utf8() if flags & 0x80 else None
        password = reader.binary() if flags & 0x40 else None
        if not reader.at_end:
            raise MqttError(MALFORMED, "bytes after the CONNECT payload")
        clean_start = bool(flags & 0x02)
        if level == 5:
            expiry = int_property(props, SESSION_EXPIRY, 0)
        else:
            expiry = 0 if clean_start else NEVER_EXPIRES
        if not client_id and level == 4 and not clean_start:
            raise MqttError(CLIENT_ID_INVALID, "an empty client id needs a clean session", v3_code=2)
        assigned = not client_id
        client_id = client_id or f"auto-{uuid.uuid4().hex}"
        return ConnectRequest(client_id, assigned, clean_start, expiry, will, will_delay, username, password)

    def _read_will(self, conn: Connection, reader: Reader, qos: int, retain: bool) -> tuple[Message, int]:
        props = reader.properties() if conn.version == 5 else []
        topic, payload = reader.utf8(), reader.binary()
        if not valid_topic_name(topic):
            raise MqttError(TOPIC_NAME_INVALID, f"will topic {topic!r} is not a topic name")
        if qos == 2 and conn.version == 5:
            raise MqttError(QOS_NOT_SUPPORTED, "will QoS 2; the broker's Maximum QoS is 1")
        will_delay = int_property(props, WILL_DELAY, 0)
        return Message(topic, payload, min(qos, 1), retain, [p for p in props if p[0] != WILL_DELAY]), will_delay

    def _open_session(self, conn: Connection, request: ConnectRequest) -> tuple[Session, bool]:
        """Take over the client id's connection if it has one; resume or replace its session."""
        old = self.sessions.get(request.client_id)
        if old is not None and old.connection is not None:
            log.info("%s: client id taken over by a new connection from %s", old.connection, conn.peer)
            old.connection.send(disconnect_packet(SESSION_TAKEN_OVER, "client id connected again"))
            self._end(old.connection)
        old = self.sessions.get(request.client_id)  # the takeover ends a session that expires at once
        if old is not None and request.clean_start:
            self._end_session(old)
            old = None
        session = old or Session(request.client_id)
        session.cancel_timers()  # back in time: no expiry, and a delayed will is not sent
        session.expiry = request.session_expiry
        session.connection, conn.session = conn, session
        self.sessions[session.client_id] = session
        return session, old is not None

    def _connack(self, conn: Connection, present: bool, request: ConnectRequest) -> bytes:
        props: Properties = [
            (RECEIVE_MAXIMUM, self.receive_maximum),
            (MAXIMUM_QOS, 1),
            (RETAIN_AVAILABLE, 1),
            (MAXIMUM_PACKET_SIZE, self.max_packet),
            (WILDCARDS_AVAILABLE, 1),
            (SUBSCRIPTION_IDS_AVAILABLE, 0),
            (SHARED_AVAILABLE, 1),
        ]
        if request.id_assigned:
            props.append((ASSIGNED_CLIENT_ID, request.client_id))
        return connack_packet(conn.version, SUCCESS, present, props)

    def _on_publish(self, conn: Connection, flags: int, reader: Reader) -> None:
        qos, retain = (flags >> 1) & 0x03, bool(flags & 0x01)
        if qos == 3:
            raise MqttError(MALFORMED, "PUBLISH with QoS 3")
        topic = reader.utf8()
        packet_id = reader.u16() if qos else 0
        props = reader.properties() if conn.version == 5 else []
        payload = reader.rest()
        if qos and not packet_id:
            raise MqttError(MALFORMED, "PUBLISH with packet id 0")
        if first(props, TOPIC_ALIAS) is not None:
            raise MqttError(TOPIC_ALIAS_INVALID, "topic aliases are not supported (Topic Alias Maximum 0)")
        if first(props, SUBSCRIPTION_ID) is not None:
            raise MqttError(PROTOCOL_ERROR, "a client's PUBLISH carries a subscription identifier")
        if not valid_topic_name(topic):
            raise MqttError(TOPIC_NAME_INVALID, f"cannot publish to {topic!r}")
        if qos == 2 and conn.version == 5:
            raise MqttError(QOS_NOT_SUPPORTED, "QoS 2 PUBLISH; CONNACK said Maximum QoS 1")
        message = Message(topic, payload, min(qos, 1), retain, props)
        assert conn.session is not None
        if qos == 2:  # MQTT 3.1.1 only
            if packet_id not in conn.session.qos2_received:
                conn.session.qos2_received.add(packet_id)
                self._publish(message, conn.session)
            conn.send(packet(PUBREC, struct.pack(">H", packet_id)))
            return
        self._publish(message, conn.session)
        if qos == 1:
            conn.send(packet(PUBACK, struct.pack(">H", packet_id)))

    def _on_pubrel(self, conn: Connection, flags: int, reader: Reader) -> None:
        packet_id = reader.u16()
        assert conn.session is not None
        conn.session.qos2_received.discard(packet_id)
        conn.send(packet(PUBCOMP, struct.pack(">H", packet_id)))

    def _on_puback(self, conn: Connection, flags: int, reader: Reader) -> None:
        assert conn.session is not None
        conn.session.inflight.pop(reader.u16(), None)
        self._flush(conn.session)

    def _on_subscribe(self, conn: Connection, flags: int, reader: Reader) -> None:
        session = conn.session
        assert session is not None
        packet_id = reader.u16()
        props = reader.properties() if conn.version == 5 else []
        if first(props, SUBSCRIPTION_ID) is not None:
            raise MqttError(SUBSCRIPTION_IDS_NOT_SUPPORTED, "subscription identifiers are not supported")
        requests = []
        while not reader.at_end:
            requests.append((reader.utf8(), reader.u8()))
        if not requests:
            raise MqttError(PROTOCOL_ERROR, "SUBSCRIBE without a topic filter")
        codes, wanting_retained = bytearray(), []
        for text, options in requests:
            sub = parse_subscription(conn.version, text, options)
            if sub is None:
                log.info("%s: refused the invalid topic filter %r", conn, text)
                codes.append(TOPIC_FILTER_INVALID if conn.version == 5 else V3_SUBSCRIBE_FAILURE)
                continue
            existed = text in session.subscriptions
            session.subscriptions[text] = sub
            codes.append(sub.qos)
            if sub.share is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed)):
                wanting_retained.append(sub)
        properties = encode_properties([]) if conn.version == 5 else b""
        conn.send(packet(SUBACK, struct.pack(">H", packet_id) + properties + bytes(codes)))
        for sub in wanting_retained:
            self._send_retained(session, sub)

    def _on_unsubscribe(self, conn: Connection, flags: int, reader: Reader) -> None:
        session = conn.session
        assert session is not None
        packet_id = reader.u16()
        if conn.version == 5:
            reader.properties()
        filters = []
        while not reader.at_end:
            filters.append(reader.utf8())
        if not filters:
            raise MqttError(PROTOCOL_ERROR, "UNSUBSCRIBE without a topic filter")
        codes = bytes(SUCCESS if session.subscriptions.pop(f, None) else NO_SUBSCRIPTION_EXISTED for f in filters)
        body = struct.pack(">H", packet_id) + (encode_properties([]) + codes if conn.version == 5 else b"")
        conn.send(packet(UNSUBACK, body))

    def _on_disconnect(self, conn: Connection, reader: Reader) -> None:
        reason = reader.u8() if conn.version == 5 and not reader.at_end else NORMAL_DISCONNECTION
        props = reader.properties() if conn.version == 5 and not reader.at_end else []
        new_expiry = first(props, SESSION_EXPIRY)
        if conn.session is not None and isinstance(new_expiry, int):
            conn.session.expiry = new_expiry
        if reason == NORMAL_DISCONNECTION:  # anything else, 0x04 "with will" included, leaves the will
            conn.will = None
        log.info("%s: DISCONNECT (reason 0x%02X)", conn, reason)

    def _publish(self, message: Message, sender: Session | None) -> None:
        message.published_at = time.monotonic()
        if message.retain and message.payload:
            self.retained[message.topic] = message
        elif message.retain:
            self.retained.pop(message.topic, None)
        self._route(message, sender)

    def _route(self, message: Message, sender: Session | None) -> None:
        groups: dict[str, list[tuple[Session, Subscription]]] = {}
        for session in self.sessions.values():
            best: Subscription | None = None
            for sub in session.subscriptions.values():
                if not topic_matches(sub.topic_filter, message.topic):
                    continue
                if sub.share is not None:
                    groups.setdefault(sub.share, []).append((session, sub))
                elif not (sub.no_local and session is sender) and (best is None or sub.qos > best.qos):
                    best = sub
            if best is not None:
                self._deliver(session, message, best.qos, message.retain and best.retain_as_published)
        for share, members in groups.items():
            session, sub = self._next_member(share, members)
            self._deliver(session, message, sub.qos, message.retain and sub.retain_as_published)

    def _next_member(self, share: str, members: list[tuple[Session, Subscription]]) -> tuple[Session, Subscription]:
        """Round robin over the group's connected members (over all of them if none is connected)."""
        connected = [member for member in members if member[0].connection is not None]
        pool = connected or members
        turn = self._share_turns.get(share, 0)
        self._share_turns[share] = turn + 1
        return pool[turn % len(pool)]

    def _deliver(self, session: Session, message: Message, granted_qos: int, retain: bool) -> None:
        out = Outgoing(message, min(message.qos, granted_qos), retain)
        if out.qos == 0:
            if session.connection is not None:
                self._send_publish(session.connection, out, 0)
            return
        if len(session.pending) >= self.offline_queue_limit:
            session.pending.popleft()
            session.dropped += 1
            if session.dropped == 1 or session.dropped % 1000 == 0:
                log.warning("session %s: queue full, %d oldest messages dropped", session.client_id, session.dropped)
        session.pending.append(out)
        self._flush(session)

    def _flush(self, session: Session) -> None:
        """Send queued QoS 1 messages while the client's Receive Maximum allows."""
        conn = session.connection
        while conn is not None and session.pending and len(session.inflight) < conn.receive_max:
            out = session.pending.popleft()
            packet_id = session.next_packet_id()
            if self._send_publish(conn, out, packet_id):
                session.inflight[packet_id] = out

    def _send_publish(self, conn: Connection, out: Outgoing, packet_id: int, dup: bool = False) -> bool:
        if out.message.expired():
            return False
        data = out.encode(conn.version, packet_id, dup)
        if conn.max_packet_size and len(data) > conn.max_packet_size:
            log.warning("%s: dropped a %d-byte message on %s (client's limit)", conn, len(data), out.message.topic)
            return False
        conn.send(data)
        return True

    def _send_retained(self, session: Session, sub: Subscription) -> None:
        for topic, message in list(self.retained.items()):
            if message.expired():
                del self.retained[topic]
            elif topic_matches(sub.topic_filter, topic):
                self._deliver(session, message, sub.qos, retain=True)

    def _leave_will(self, session: Session, will: Message, delay: int) -> None:
        delay = min(delay, session.expiry)
        if delay == 0:
            self._publish_will(session.client_id, will)
            return
        timer = asyncio.get_running_loop().call_later(delay, self._send_delayed_will, session)
        session.delayed_will = (timer, will)

    def _send_delayed_will(self, session: Session) -> None:
        if session.delayed_will is not None:
            timer, will = session.delayed_will
            timer.cancel()
            session.delayed_will = None
            self._publish_will(session.client_id, will)

    def _publish_will(self, client_id: str, will: Message) -> None:
        log.info("%s: publishing its will on %s", client_id, will.topic)
        self._publish(will, None)

    def _expire(self, session: Session) -> None:
        log.info("session %s expired", session.client_id)
        self._end_session(session)

    def _end_session(self, session: Session) -> None:
        self._send_delayed_will(session)
        session.cancel_timers()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]


class BrokerThread:
    """An MqttBroker on its own event loop in a daemon thread, for code that is not async.

    Example::

        import paho.mqtt.client as mqtt
        from hw_sim.mqtt_broker import BrokerThread

        with BrokerThread() as broker:  # listening once the with-block starts
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", broker.port)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, users: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port  # the bound port once started
        self.broker = MqttBroker(users)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="mqtt-broker")

    def start(self) -> int:
        """Start the thread and return once the broker listens; return the port."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the MQTT broker did not start within 10 s")
        if self._failure is not None:
            raise self._failure
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop_requested is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop_requested.set)
            self._thread.join(10)

    def __enter__(self) -> BrokerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # reported to start(), which is waiting for the broker to listen
            self._failure = exc
            self._ready.set()

    async def _run(self) -> None:
        self.port = await self.broker.start(self.host, self.port)
        self._loop, self._stop_requested = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stop_requested.wait()
        await self.broker.stop()


async def serve_until_signalled(host: str, port: int, users: dict[str, str] | None) -> None:
    broker = MqttBroker(users)
    bound = await broker.start(host, port)
    print(f"MQTT broker listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    await broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw_sim.mqtt_broker", description="A small MQTT 5.0 / 3.1.1 broker for the simulated bench."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="port to listen on; 0: any free port (default: 1883)")
    parser.add_argument("--user", action="append", metavar="NAME:PASSWORD", help="allow this user (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    args = parser.parse_args(argv)
    if args.user and any(":" not in user for user in args.user):
        parser.error("--user takes NAME:PASSWORD")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    users = dict(user.split(":", 1) for user in args.user) if args.user else None
    try:
        asyncio.run(serve_until_signalled(args.host, args.port, users))
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
