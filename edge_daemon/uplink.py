"""The uplink to the monitoring centre: MQTT 5 over TLS, with the event store as a durable outbox.

paho-mqtt's in-memory queue loses what a restart or power cut interrupts, so the
store is the outbox.  An event (or audit record) leaves it (``uplinked_at`` is set)
only when the centre's signed **receipt** says the centre has recorded it: the
alarm industry's kiss-off.  The broker's PUBACK is flow control only (``window``
messages unacknowledged at a time): a broker that dies after its PUBACK and before
delivering takes the message with it, and only the centre can say it arrived.

Unconfirmed events are sent again, in order, oldest first, when no receipt has
made progress for ``confirm_timeout_s`` (doubling up to ``confirm_timeout_max_s``),
and on every new connection, so they survive broker outages, network cuts, daemon
crashes and power loss; the centre drops the copies it already has by the event's
``id`` and confirms them again.  An event unconfirmed for ``confirm_trouble_s``
raises Contact ID 354 (failure to communicate an event), restored once the outbox
is confirmed again.

Each connection is a fresh paho client run by one network thread, with its own
reconnect backoff (``reconnect_min_s`` doubling to ``reconnect_max_s``, ±20 %
jitter).  Every connection starts the same way, so the centre sees the newest
state first and the backlog after it:

1. the retained ``state`` (the post's alarm state now),
2. the subscription to the post's ``commands`` and ``receipts``,
3. the backlog of events, then of audit records, in order, ``window`` at a time,
4. once the broker has granted the subscription (SUBACK), the retained
   ``availability`` ``online`` (the Last Will says ``offline``): a post says it is
   online only when a command sent to it can arrive.

Everything touching the store runs in the daemon's asyncio loop; paho's thread
only hands callbacks over with ``call_soon_threadsafe``, so the serial link is
never held up by a slow network, a TLS handshake or a dead broker.

Example (inside the daemon's running loop)::

    uplink = Uplink(config.uplink, Topics("school-12", "gate-north"), store, daemon.post_state, key=command_key)
    uplink.start()
    uplink.tick()  # several times a second: state, health, outbox
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alarmpost import eventnames
from alarmpost import events as ev
from edge_daemon import auth, contract
from edge_daemon.config import UplinkConfig
from edge_daemon.contract import Topics, iso_time
from edge_daemon.store import AuditRecord, EventStore, StoredEvent

log = logging.getLogger("edge_daemon.uplink")

# A command arrived: (payload, signature headers, via) -> result, published to ``results``.
CommandHandler = Callable[[bytes, dict[str, str] | None, str], Awaitable[dict[str, Any]]]


def event_payload(event: StoredEvent, topics: Topics, store_id: str, replayed: bool = False) -> dict[str, Any]:
    """The ``events`` payload of a stored event."""
    digit = event.qualifier if event.qualifier in contract.QUALIFIERS else 6  # anything else reports as status
    qualifier = contract.QUALIFIERS[digit]
    code = event.code
    return {
        "id": event.uid,
        "site": topics.site,
        "post": topics.post,
        "n": event.id,
        "store": store_id,
        "source": event.source,
        "boot": event.boot,
        "seq": event.seq,
        "code": code,
        "qualifier": qualifier,
        "zone": event.zone,
        "value": event.value,
        "contact_id": f"{digit}{code:03d} 01 {event.zone:03d}",
        "text": eventnames.describe(ev.Event(event.seq, event.boot, 0, code, event.qualifier, event.zone)),
        "board_time": {"boot": event.boot, "uptime_ms": event.uptime_ms},
        "pi_time": iso_time(event.received_at),
        "sent_at": iso_time(time.time()),
        "replayed": replayed,
    }


def send_at_once(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: turn Nagle's algorithm off, so a small PUBLISH leaves at once
    instead of waiting (~40 ms) for the TCP acknowledgement of the previous one."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (e.g. a websocket wrapper)
        pass


def account(config: UplinkConfig, topics: Topics, service: str = "") -> str:
    """The broker account of one of the post's connections.

    The daemon's (``service`` ""): ``uplink.username``, or ``<site>/<post>``.  Its pictures'
    ("video"): ``uplink.video_username``, or ``<site>/<post>/video``.  The portal's ("portal",
    from the portal's own ``[uplink]``): ``uplink.username``, or ``<site>/<post>/portal``.
    """
    own = f"{topics.site}/{topics.post}"
    if service == "video":
        return config.video_username or f"{own}/video"
    return config.username or (f"{own}/{service}" if service else own)


def client_id(config: UplinkConfig, topics: Topics, service: str = "") -> str:
    """The connection's MQTT client id: ``uplink.client_id`` if set (not for the pictures), else its account.

    The shipped broker makes every client's id its username whatever is asked for.
    """
    chosen = config.client_id if service != "video" else ""
    return chosen or account(config, topics, service)


def post_client(
    config: UplinkConfig, topics: Topics, password: str | None, service: str = "", **options: Any
) -> mqtt.Client:
    """A paho MQTT 5 client with the account of the post's ``service`` and TLS, Nagle off."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id(config, topics, service), protocol=mqtt.MQTTv5, **options
    )
    client.username_pw_set(account(config, topics, service), password)
    if config.tls:
        client.tls_set(
            ca_certs=config.ca_file or None,
            certfile=config.cert_file or None,
            keyfile=config.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.on_socket_open = send_at_once
    return client


def publish_properties(content_type: str) -> Properties:
    """MQTT 5 properties of a post's message: UTF-8 text of ``content_type``."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.PayloadFormatIndicator = 0 if content_type == "image/jpeg" else 1  # 1: UTF-8 text
    properties.ContentType = content_type
    return properties


def audit_payload(record: AuditRecord, store_id: str) -> dict[str, Any]:
    """The ``audit`` payload of a stored audit record."""
    body: dict[str, Any] = json.loads(record.body)
    return dict(body, id=record.uid, n=record.id, store=store_id, at=iso_time(record.at))


@dataclass
class UplinkCounters:
    connects: int = 0
    connect_failures: int = 0
    published: int = 0  # events and audit records acknowledged by the broker (flow control only)
    confirmed: int = 0  # events and audit records the centre's receipts confirmed
    resent: int = 0  # times the unconfirmed outbox was sent again after confirm_timeout_s
    refused: int = 0  # PUBACKs with a failure reason code (e.g. not authorised)
    replayed: int = 0
    bad_receipts: int = 0  # receipts refused: unsigned, forged, malformed or for another store


class Uplink:
    """The MQTT connection of one post; see the module docstring for the order of things."""

    stop_timeout_s = 2.0  # wait this long for the broker to take ``stopped`` at shutdown
    trouble_check_s = 1.0  # how often the age of the oldest unconfirmed event is looked at
    resend_check_s = 0.25  # how often the outbox is looked at for rows the centre has not confirmed in time
    connect_timeout_s = 5.0
    state_min_interval_s = 1.0  # a state differing only in its event counts is sent at most this often

    def __init__(
        self,
        config: UplinkConfig,
        topics: Topics,
        store: EventStore,
        state_source: Callable[[], dict[str, Any]],
        password: str | None = None,
        link_counters: Callable[[], dict[str, int]] = dict,
        key: bytes | None = None,
    ) -> None:
        """``key`` is the post's command key: the centre's receipts are signed with it."""
        self.config = config
        self.key = key
        self.topics = topics
        self.store = store
        self.state_source = state_source
        self.password = password
        self.link_counters = link_counters
        self.username = account(config, topics)
        self.client_id = client_id(config, topics)
        self.counters = UplinkCounters()
        self.receipt_clock: tuple[float, float] | None = None  # (the centre's time in the newest receipt, ours then)
        self.on_command: CommandHandler | None = None
        self.on_request: Callable[[bytes], Awaitable[dict[str, Any]]] | None = None  # unsigned, Home Assistant
        self.on_trouble: Callable[[bool], None] | None = None  # Contact ID 354 raised (True) or restored
        self.extra_on_connect: list[Callable[[], None]] = []  # e.g. Home Assistant discovery
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._closing = False
        self._client: mqtt.Client | None = None  # the connected client, as the loop knows it
        self._inflight: dict[int, tuple[str, int]] = {}  # mid -> (outbox table, "replay" or "", row id)
        self._cursor = {"events": 0, "audit": 0}  # highest row id published on this connection
        self._replay: tuple[int, int] | None = None  # event numbers still to send again, first and last
        self._waiting: dict[int, asyncio.Future[int]] = {}  # mid -> PUBACK reason code
        self._subscribe_mid: int | None = None  # the SUBSCRIBE whose SUBACK lets the post say "online"
        self._confirm_timeout = config.confirm_timeout_s  # doubles while no receipt makes progress
        self._waiting_since = time.monotonic()  # when the oldest sent, unconfirmed row started its wait
        self._next_trouble_check = 0.0
        self._next_resend_check = 0.0
        self.trouble = store.get_state("confirm_trouble") == "1"
        self._state_sent: dict[str, Any] | None = None
        self._state_sent_at = 0.0
        self._next_health = 0.0
        self._started = time.monotonic()

    @property
    def connected(self) -> bool:
        return self._client is not None

    # -- the network thread ------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (in the background); call from the daemon's running loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="mqtt-uplink", daemon=True)
        self._thread.start()

    def _new_client(self) -> mqtt.Client:
        client = post_client(self.config, self.topics, self.password, reconnect_on_failure=False)
        client.connect_timeout = self.connect_timeout_s
        client.max_inflight_messages_set(self.config.window + 8)  # the outbox window plus state and results
        client.max_queued_messages_set(0)
        client.will_set(self.topics.availability, contract.OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _run(self) -> None:
        delay = self.config.reconnect_min_s
        while not self._halt.is_set():
            began = time.monotonic()
            try:
                client = self._new_client()  # reads the TLS files: one may have been replaced badly
                client.connect(self.config.host, self.config.port, self.config.keepalive_s, clean_start=True)
            except (OSError, ValueError, ssl.SSLError) as exc:
                self.counters.connect_failures += 1
                log.warning("cannot reach the broker", extra={"host": self.config.host, "error": str(exc)})
            else:
                self._serve(client)
            if time.monotonic() - began > 10 * self.config.reconnect_min_s + 10:
                delay = self.config.reconnect_min_s  # that connection lasted: start the backoff afresh
            self._halt.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.config.reconnect_max_s)

    def _serve(self, client: mqtt.Client) -> None:
        """Run one connection on paho's own network thread until it ends.

        paho's thread (``loop_start``) rather than ``loop_forever`` here: paho then knows it is
        threaded and hands the daemon loop's publishes to its network thread, instead of writing
        the socket from two threads at once.
        """
        ended = threading.Event()
        client.user_data_set(ended)
        if self._halt.is_set():
            client.disconnect()  # stopped while connecting
        client.loop_start()
        give_up = time.monotonic() + self.connect_timeout_s + 2 * self.config.keepalive_s
        while not ended.wait(0.5):
            if not client.is_connected() and time.monotonic() > give_up:
                break  # never connected, and paho said nothing: try again
            if client.is_connected():
                give_up = time.monotonic() + self.connect_timeout_s + 2 * self.config.keepalive_s
        client.loop_stop()

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(function, *args)
        except RuntimeError:  # the loop has closed: the daemon is stopping
            pass

    def _on_connect(self, client: mqtt.Client, _: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self.counters.connect_failures += 1
            log.error("the broker refused the connection", extra={"reason": str(reason), "user": self.username})
            client.disconnect()
            return
        self._call(self._connected, client)

    def _on_disconnect(self, client: mqtt.Client, ended: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        ended.set()
        self._call(self._disconnected, client, str(reason))

    def _on_publish(self, client: mqtt.Client, _: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        self._call(self._puback, client, mid, reason.value, str(reason))

    def _on_message(self, client: mqtt.Client, _: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        pairs = list(getattr(props, "UserProperty", []) or [])
        correlation = getattr(props, "CorrelationData", None)
        self._call(self._message, client, message.topic, bytes(message.payload), pairs, correlation)

    def _on_subscribe(self, client: mqtt.Client, _: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        self._call(self._subscribed, client, mid, [reason.is_failure for reason in reasons], [str(r) for r in reasons])

    # -- the daemon's loop ---------------------------------------------------------------

    def _connected(self, client: mqtt.Client) -> None:
        if self._halt.is_set():
            return
        self._client = client
        self._inflight = {}
        self._cursor = {"events": 0, "audit": 0}  # a new connection sends every unconfirmed row again
        self._confirm_timeout = self.config.confirm_timeout_s
        self._waiting_since = time.monotonic()
        self.counters.connects += 1
        log.info("connected to the broker", extra={"host": self.config.host, "client_id": self.client_id})
        self._send_state(force=True)
        wanted = [(self.topics.commands, 1), (self.topics.receipts, 1)]
        if self.on_request is not None:
            wanted.append((self.topics.requests, 1))
        _, self._subscribe_mid = client.subscribe(wanted)
        for extra in self.extra_on_connect:
            extra()
        self.pump()

    def _subscribed(self, client: mqtt.Client, mid: int, failures: list[bool], reasons: list[str]) -> None:
        """The SUBACK: only now can a command reach the post, so only now does it say ``online``."""
        if client is not self._client or mid != self._subscribe_mid:
            return
        if any(failures):
            # Without commands or receipts the centre can neither command the post nor confirm its
            # events: it is not online, and its unconfirmed events will raise Contact ID 354.
            log.error("the broker refused the post's subscriptions", extra={"reasons": ", ".join(reasons)})
            return
        self.publish("availability", contract.ONLINE)

    def _disconnected(self, client: mqtt.Client, reason: str) -> None:
        if client is not self._client:
            return
        self._client = None
        self._inflight = {}
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("disconnected before the broker acknowledged"))
        self._waiting = {}
        log.warning("disconnected from the broker", extra={"reason": reason})

    def _publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, outbox: tuple[str, int] | None = None
    ) -> int | None:
        client = self._client
        if client is None or self._closing:
            return None
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=publish_properties("application/json"))
        if qos > 0:
            self._inflight[info.mid] = outbox or ("", 0)
        return info.mid

    def clock_skew_s(self, max_age_s: float = 3600.0) -> float | None:
        """How far ahead of the centre's clock this post's is (seconds), from the newest receipt; None if
        there is none this recent.  The receipt's travel time counts as skew: it is tens of milliseconds."""
        if self.receipt_clock is None or time.time() - self.receipt_clock[1] > max_age_s:
            return None
        centre_at, ours = self.receipt_clock
        return ours - centre_at

    def publish(self, channel: str, value: Any, correlation: bytes | None = None) -> int | None:
        """Publish ``value`` on one of the post's channels now (None when not connected)."""
        spec = contract.CHANNELS[channel]
        payload = contract.encode(channel, value)
        client = self._client
        if client is None or (self._closing and channel != "availability"):
            return None
        properties = publish_properties(spec.content_type)
        if correlation is not None:
            properties.CorrelationData = correlation
        topic = self.topics.of(channel)
        info = client.publish(topic, payload, qos=spec.qos, retain=spec.retained, properties=properties)
        if spec.qos > 0:
            self._inflight[info.mid] = ("", 0)
        return info.mid

    def publish_retained(self, topic: str, value: dict[str, Any]) -> None:
        """Publish ``value`` as JSON, retained, on a topic outside the post's channels (discovery)."""
        if self._client is not None:
            self._publish(topic, json.dumps(value, sort_keys=True).encode(), retain=True)

    def pump(self) -> None:
        """Publish what waits in the outbox, oldest first, up to ``window`` unacknowledged."""
        if self._client is None:
            return
        room = self.config.window - sum(1 for table, _ in self._inflight.values() if table)
        if room <= 0:
            return
        store_id = self.store.store_id
        for event in self.store.pending_uplink(room, after=self._cursor["events"]):
            payload = self._event_bytes(event, store_id)
            self._publish(self.topics.events, payload, outbox=("events", event.id))
            self._cursor["events"] = event.id
            room -= 1
        if room <= 0:
            return
        for record in self.store.pending_audit(room, after=self._cursor["audit"]):
            payload = contract.encode("audit", audit_payload(record, store_id))
            self._publish(self.topics.audit, payload, outbox=("audit", record.id))
            self._cursor["audit"] = record.id
            room -= 1
        if room > 0 and self._replay is not None:
            self._pump_replay(room)

    def _event_bytes(self, event: StoredEvent, store_id: str, replayed: bool = False) -> bytes:
        value = event_payload(event, self.topics, store_id, replayed)
        try:
            return contract.encode("events", value)
        except contract.ContractError as exc:
            # Never hold the outbox up (or lose the event) over a value the schema does not expect:
            # the centre gets it as it is and reports it as breaking the contract.
            log.error("event does not fit the contract; sent as it is", extra={"n": event.id, "error": str(exc)})
            return json.dumps(value, sort_keys=True).encode()

    def _puback(self, client: mqtt.Client, mid: int, code: int, reason: str) -> None:
        if client is not self._client:
            return
        table, row = self._inflight.pop(mid, ("", 0))
        waiter = self._waiting.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(code)
        if code >= 0x80:
            self.counters.refused += 1
            if not table:  # state, results, discovery...: logged, not worth a reconnect
                log.error("the broker refused a message", extra={"reason": reason})
                return
            log.error(
                "the broker refused an event: reconnecting to send it again",
                extra={"table": table, "row": row, "reason": reason},
            )
            client.disconnect()  # nothing is skipped: the backlog is sent again after the backoff
            return
        if table:
            self.counters.published += 1
        self.pump()  # the broker took one: the window has room again (delivery is the centre's receipt)

    def _message(
        self, client: mqtt.Client, topic: str, payload: bytes, pairs: list[tuple[str, str]], correlation: Any
    ) -> None:
        if client is not self._client:
            return
        if topic == self.topics.receipts:
            self._receipt(payload, dict(pairs))
            return
        if topic == self.topics.requests and self.on_request is not None:
            asyncio.get_running_loop().create_task(self._answer_request(payload))
            return
        if topic != self.topics.commands or self.on_command is None:
            return
        headers = dict(pairs) if pairs else None
        if headers is not None and len(headers) != len(pairs):
            headers = {"malformed": "a user property appears twice"}
        asyncio.get_running_loop().create_task(self._answer(payload, headers, correlation))

    def _receipt(self, payload: bytes, headers: dict[str, str]) -> None:
        """The centre has recorded these rows: take them out of the outbox (one commit)."""
        try:
            ranges = self._checked_receipt(payload, headers)
        except contract.ContractError as exc:
            self.counters.bad_receipts += 1
            log.error("receipt refused: nothing confirmed", extra={"error": str(exc)})
            return
        confirmed = 0
        for table in contract.OUTBOX_KINDS:
            confirmed += self.store.confirm(ranges[table], table=table)
        if confirmed:
            self.counters.confirmed += confirmed
            self._confirm_timeout = self.config.confirm_timeout_s
            self._waiting_since = time.monotonic()
        self.pump()

    def _checked_receipt(self, payload: bytes, headers: dict[str, str]) -> dict[str, list[tuple[int, int]]]:
        """The ranges a receipt confirms, per outbox; ContractError saying why it cannot be taken."""
        if self.key is None:
            raise contract.ContractError("the post has no command key to check the centre's signature with")
        verdict, detail = auth.verify(self.key, self.topics.receipts, payload, headers, window_s=float("inf"))
        if verdict != "valid":
            raise contract.ContractError(f"{verdict}: {detail}")
        receipt = contract.decode("receipts", payload)
        self.receipt_clock = (contract.parse_time(receipt["at"]), time.time())
        if receipt["store"] != self.store.store_id:
            raise contract.ContractError(f"for store {receipt['store']}, not this post's {self.store.store_id}")
        return {table: contract.receipt_ranges(receipt, table) for table in contract.OUTBOX_KINDS}

    async def _answer(self, payload: bytes, headers: dict[str, str] | None, correlation: Any) -> None:
        assert self.on_command is not None
        result = await self.on_command(payload, headers, "commands")
        self.publish("results", result, correlation=bytes(correlation) if correlation is not None else None)
        self.pump()  # the command's audit record

    async def _answer_request(self, payload: bytes) -> None:
        assert self.on_request is not None
        self.publish("results", await self.on_request(payload))
        self.pump()

    # -- state, health, replay -----------------------------------------------------------

    def _send_state(self, force: bool = False) -> None:
        state = self.state_source()
        changed = (
            self._state_sent is None
            or _without(state, "updated_at", "events") != _without(self._state_sent, "updated_at", "events")
            or state["events"].get("trouble") != self._state_sent["events"].get("trouble")
        )
        counts_changed = self._state_sent is not None and state["events"] != self._state_sent["events"]
        due = time.monotonic() - self._state_sent_at >= self.state_min_interval_s
        if not (force or changed or (counts_changed and due)):
            return
        if self.publish("state", state) is not None:
            self._state_sent = state
            self._state_sent_at = time.monotonic()

    def tick(self) -> None:
        """Call several times a second: sends a changed state, due health reports and the outbox."""
        now = time.monotonic()
        if now >= self._next_trouble_check:
            self._next_trouble_check = now + self.trouble_check_s
            self._check_trouble()
        if self._client is None:
            return
        self._resend_if_unconfirmed(now)
        self._send_state()
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + self.config.health_s
            self.publish("health", self.health())
        self.pump()

    def _sent_and_unconfirmed(self) -> list[str]:
        """The outboxes whose oldest unconfirmed row was sent on this connection."""
        waiting = []
        for table, pending in (("events", self.store.pending_uplink), ("audit", self.store.pending_audit)):
            oldest = pending(1)
            if oldest and oldest[0].id <= self._cursor[table]:
                waiting.append(table)
        return waiting

    def _resend_if_unconfirmed(self, now: float) -> None:
        """No receipt has made progress for the confirm timeout: send every unconfirmed row again, in order."""
        if now < self._next_resend_check:
            return
        self._next_resend_check = now + self.resend_check_s
        sent = self._sent_and_unconfirmed()
        if not sent:
            self._waiting_since = now  # nothing sent waits for the centre: the clock starts at the next send
            return
        if now - self._waiting_since < self._confirm_timeout:
            return
        self._waiting_since = now
        log.warning(
            "the centre has not confirmed what was sent: sending it again",
            extra={"tables": ",".join(sent), "waited_s": self._confirm_timeout},
        )
        self.counters.resent += 1
        for table in sent:
            self._cursor[table] = 0
        self._confirm_timeout = min(2 * self._confirm_timeout, self.config.confirm_timeout_max_s)
        self.pump()

    def outbox_age(self) -> tuple[int, float | None]:
        """(events the centre has not confirmed, seconds the oldest of them has waited, or None)."""
        count, oldest = self.store.backlog()
        return count, None if oldest is None else round(max(0.0, time.time() - oldest), 3)

    def _check_trouble(self) -> None:
        """Contact ID 354 while an event waits longer than ``confirm_trouble_s``; restored once none waits
        longer than ``confirm_timeout_s`` (what is still on its way does not keep the trouble open)."""
        _, age = self.outbox_age()
        if not self.trouble and age is not None and age > self.config.confirm_trouble_s:
            self._set_trouble(True, age)
        elif self.trouble and (age is None or age <= self.config.confirm_timeout_s):
            self._set_trouble(False, age)

    def _set_trouble(self, active: bool, age: float | None) -> None:
        self.trouble = active
        self.store.set_state("confirm_trouble", "1" if active else "0")
        if active:
            log.error("events wait for the centre's confirmation too long", extra={"oldest_s": age})
        else:
            log.warning("the centre confirms events again")
        if self.on_trouble is not None:
            self.on_trouble(active)

    def health(self) -> dict[str, Any]:
        backlog, oldest = self.store.backlog()
        path = Path(self.store.path)
        try:
            store_bytes = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        except OSError:
            store_bytes = 0
        return {
            "at": iso_time(time.time()),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "backlog": backlog,
            "oldest_pending_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3),
            "connects": self.counters.connects,
            "published": self.counters.published,
            "bad_receipts": self.counters.bad_receipts,
            "link": self.link_counters(),
            "store_bytes": store_bytes,
            "disk_free_bytes": shutil.disk_usage(path.parent).free,
            "cpu_temp_c": _cpu_temperature(),
            "load_1m": os.getloadavg()[0],
        }

    def replay(self, first: int, count: int) -> int:
        """Send the events numbered ``first`` .. ``first + count - 1`` again (the centre asked); how many.

        They go through :meth:`pump` behind anything new and within the window, so a replay
        never holds a fresh alarm back.
        """
        last = min(first + count - 1, self.store.last_id())  # numbers are never reused nor deleted
        if last < first:
            return 0
        if self._replay is None:
            self._replay = (first, last)
        else:
            self._replay = (min(self._replay[0], first), max(self._replay[1], last))
        self.pump()
        return last - first + 1

    def _pump_replay(self, room: int) -> None:
        assert self._replay is not None
        first, last = self._replay
        store_id = self.store.store_id
        for event in self.store.events_from(first, min(room, last - first + 1)):
            self._publish(self.topics.events, self._event_bytes(event, store_id, replayed=True), outbox=("replay", 0))
            self.counters.replayed += 1
            first = event.id + 1
        self._replay = (first, last) if first <= last else None

    async def stop(self) -> None:
        """Say ``stopped`` (retained), disconnect cleanly (no Last Will) and end the network thread."""
        self._closing = True  # nothing more goes out after "stopped"
        client = self._client
        if client is not None:
            mid = self.publish("availability", contract.STOPPED)
            if mid is not None:
                waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                self._waiting[mid] = waiter
                try:
                    await asyncio.wait_for(waiter, self.stop_timeout_s)
                except (TimeoutError, ConnectionError):
                    log.warning("the broker did not take 'stopped' in time")
            client.disconnect()
        self._halt.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, self.connect_timeout_s + 1)
        self._client = None


def _without(state: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in keys}


def _cpu_temperature() -> float | None:
    try:
        return int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000
    except (OSError, ValueError):
        return None
