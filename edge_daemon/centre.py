"""The reference monitoring-centre client: watch every post, deduplicate events, command posts.

It is what the tests, the benchmarks, ``make sim`` and technicians use, and a
worked example for a centre's own software.  It subscribes to every post
(``alarmpost/v1/#``) with a persistent MQTT 5 session and QoS 1, so events
published while it is away wait for it at the broker.

Exactly once after dedup: an event is new when its ``id`` has not been seen.
Every event and audit record, new or a copy, is written to the centre's durable
record (:mod:`edge_daemon.centre_record`, one commit per batch) and only then
confirmed to its post with a signed ``receipts`` message: the kiss-off that takes
it out of the post's outbox.  A post sends again what the centre has not
confirmed, so a receipt lost on the way costs a copy, never an event.

The centre also follows each post's event number ``n``: a gap (an event the
broker lost, say in a crash between its PUBACK and the delivery) or a ``state``
whose ``last_n`` stays ahead of what arrived makes it ask the post to ``replay``
the missing numbers, again every ``replay_every_s`` while the gap stays open;
the post's own resending covers the rest.

Commands are signed with the post's key (:mod:`edge_daemon.auth`) and sent as
MQTT 5 requests: the response topic is the post's ``results`` and the
correlation data a fresh id, which the post echoes in its result.

Example::

    with Centre("127.0.0.1", 1883, keys={("school-12", "gate-north"): key}, tls=False) as centre:
        centre.command("school-12", "gate-north", "acknowledge")["status"]  # 'ok'

The gate WiFi's safety content is signed with the centre's Ed25519 content key
(:mod:`captive_portal.content`) and published retained on each post's ``content``
(:meth:`Centre.publish_content`); the portals' statistics arrive on ``portal``.

From the shell (``--help`` lists the options)::

    python -m edge_daemon.centre --host broker --keys /etc/alarmpost-centre/keys watch
    python -m edge_daemon.centre --host broker --keys ... reset school-12/gate-north --operator "J. Smith"
    python -m edge_daemon.centre content-keygen content.key content.pub
    python -m edge_daemon.centre --host broker content school-12/gate-north bundle.json --key content.key
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import ssl
import sys
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_daemon import auth, contract
from edge_daemon.centre_record import CentreRecord, Report
from edge_daemon.contract import ContractError, Topics
from edge_daemon.uplink import send_at_once
from edge_daemon.viewer import Picture, Viewer

log = logging.getLogger("edge_daemon.centre")

PostId = tuple[str, str]  # (site, post)
PICTURE_CHANNELS = ("snapshots", "stream")
OWN_CHANNELS = ("commands", "content", "receipts")  # what the centre itself sends: not taken as news from a post


@dataclass
class Message:
    """One message the centre received: its post, channel, decoded payload and arrival time."""

    site: str
    post: str
    channel: str
    payload: Any
    received: float  # time.monotonic()
    retained: bool = False


@dataclass
class PostTrack:
    """What the centre knows of one post's event numbers (per event store)."""

    store: str
    next_n: int  # every event below this number has arrived
    above: set[int] = field(default_factory=set)  # arrived after a gap
    told_last: int = 0  # the newest n the post's state has told of
    asked_at: float = 0.0
    gap_since: float | None = None  # when the centre first saw it miss something

    def arrived(self, n: int) -> None:
        if n == self.next_n:
            self.next_n += 1
            while self.next_n in self.above:
                self.above.discard(self.next_n)
                self.next_n += 1
        elif n > self.next_n:
            self.above.add(n)

    def missing(self) -> int:
        """How many numbers from ``next_n`` on to ask for (0: nothing is missing)."""
        last = max(max(self.above, default=0), self.told_last)
        return max(0, last - self.next_n + 1)


class CentreError(RuntimeError):
    """The broker could not be reached, refused the centre, or a command got no result."""


class Centre:
    """A centre's connection to the broker; see the module docstring."""

    replay_every_s = 2.0  # ask again for a gap still open after this long
    tail_grace_s = 1.0  # a state may tell of events still on their way: ask only if they stay missing this long
    session_expiry_s = 86400  # the broker keeps the centre's queue this long while it is away
    receipt_batch = 500  # reports recorded in one commit, at most

    def __init__(
        self,
        host: str,
        port: int,
        keys: dict[PostId, bytes] | Callable[[str, str], bytes | None] | None = None,
        username: str | None = "centre",
        password: str | None = None,
        tls: bool = True,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        client_id: str | None = None,
        clean: bool = False,
        pictures: Path | None = None,
        record: str | Path | None = None,
        take_pictures: bool = True,
    ) -> None:
        """``record`` is the SQLite file of the centre's durable record: only a centre with one sends
        receipts, for what is in it.  Without one (a command-line tool, a dashboard) it confirms
        nothing, so the posts keep every event until a recording centre has it.

        ``take_pictures`` False leaves the posts' pictures to another client: the broker then
        never queues a picture for this one, so a flood of pictures while it is away or slow
        cannot fill its queue ahead of alarms (run the recorder so, and a viewer apart)."""
        self.host, self.port = host, port
        self._keys = keys
        self.received: list[Message] = []  # new events and everything else, in arrival order
        self._arrived = threading.Condition()
        self.events: list[Message] = []  # every new event, in arrival order
        self.duplicates = 0
        self.invalid: list[str] = []  # messages that broke the contract, described
        self.states: dict[PostId, dict[str, Any]] = {}
        self.availability: dict[PostId, str] = {}
        self.replays_asked = 0
        self.receipts_sent = 0
        self.viewer = Viewer(pictures)  # whole pictures arrive as Messages whose payload is a Picture
        self.record = CentreRecord(record) if record is not None else None
        self._seen: set[str] = self.record.ids() if self.record is not None else set()
        self._to_record: queue.Queue[Report | None] = queue.Queue()
        self._recorder: threading.Thread | None = None
        self._tracks: dict[PostId, PostTrack] = {}
        self._results: dict[bytes, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.RLock()  # replay requests are sent while a message is handled
        self._connected = threading.Event()
        self._refused: str | None = None
        self._pubacks: OrderedDict[int, ReasonCode] = OrderedDict()  # mid -> PUBACK reason, the newest few
        self._acked = threading.Condition()
        self.max_packet_size: int | None = None  # the broker's limit, from its CONNACK
        self.take_pictures = take_pictures
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"alarmpost-centre-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.clean = clean
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED)
        self.client.reconnect_delay_set(1, 5)
        self.client.on_socket_open = send_at_once
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # -- connection ----------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> Centre:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if self.clean else self.session_expiry_s
        self.client.connect_async(self.host, self.port, keepalive=10, clean_start=self.clean, properties=properties)
        self._recorder = threading.Thread(target=self._record_loop, name="centre-record", daemon=True)
        self._recorder.start()  # without a record it only chases gaps
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise CentreError(self._refused or f"no connection to {self.host}:{self.port} within {timeout:g} s")
        return self

    def close(self) -> None:
        """Record and confirm what has arrived, then disconnect."""
        if self._recorder is not None:
            self._to_record.put(None)
            self._recorder.join(10)
            self._recorder = None
        self.client.disconnect()
        self.client.loop_stop()
        if self.record is not None:
            self.record.close()

    def __enter__(self) -> Centre:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(self, client: mqtt.Client, _: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self._refused = f"the broker refused the centre: {reason}"
            return
        self.max_packet_size = getattr(props, "MaximumPacketSize", None)
        # what posts send, on five-level topics only (a post's video or portal account may write only
        # six-level ones beside its own); no_local: nothing the centre itself sends comes back to it
        options = SubscribeOptions(qos=1, noLocal=True)
        client.subscribe([(contract.centre_filter(name), options) for name in self._channels()])
        self._connected.set()

    def _channels(self) -> list[str]:
        return [
            name
            for name, channel in contract.CHANNELS.items()
            if channel.sender == "post" and (self.take_pictures or name not in PICTURE_CHANNELS)
        ]

    def _on_disconnect(self, client: mqtt.Client, _: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            log.warning("centre disconnected", extra={"reason": str(reason)})

    # -- receiving -----------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, _: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle(message)
        except Exception:  # paho's thread would die with it, and the centre would hear nothing more
            log.exception("a message could not be handled", extra={"topic": message.topic})
            self.invalid.append(f"{message.topic}: could not be handled (see the log)")

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        try:
            site, post, channel = contract.parse_topic(message.topic)
        except ContractError as exc:
            self.invalid.append(str(exc))
            return
        if channel in OWN_CHANNELS or (channel == "availability" and not message.payload):
            return  # our own commands and content; a cleared retained message
        if channel in PICTURE_CHANNELS:
            self._on_piece(site, post, channel, message)
            return
        try:
            payload = contract.decode(channel, bytes(message.payload))
        except ContractError as exc:
            self.invalid.append(f"{message.topic}: {exc}")
            log.error("message breaks the contract", extra={"topic": message.topic, "error": str(exc)})
            self._record_as_it_is(channel, site, post, bytes(message.payload))
            return
        got = Message(site, post, channel, payload, time.monotonic(), bool(message.retain))
        with self._lock:
            if channel in contract.OUTBOX_KINDS and self.record is not None:
                self._to_record.put((channel, site, post, payload))  # recorded, then confirmed, copy or not
            if channel == "events":
                if not self._new_event(got):
                    return
            elif channel == "audit":
                if not self._first_copy(payload["id"]):
                    return
            elif channel == "results":
                correlation = getattr(message.properties, "CorrelationData", None)
                waiting = self._results.get(bytes(correlation)) if correlation else None
                if waiting is not None:
                    waiting.put(payload)
            elif channel == "state":
                self.states[(site, post)] = payload
                self._check_tail((site, post), payload["events"])
            elif channel == "availability":
                self.availability[(site, post)] = payload
        self._arrive(got)

    def _on_piece(self, site: str, post: str, channel: str, message: mqtt.MQTTMessage) -> None:
        pairs = getattr(message.properties, "UserProperty", None) or []
        picture = self.viewer.add(site, post, channel, bytes(message.payload), dict(pairs))
        if picture is not None:
            if picture.kind == "live":  # kept on disk (with --save), not in memory: a stream never ends
                picture.size, picture.jpeg = len(picture.jpeg), b""
            self._arrive(Message(site, post, channel, picture, time.monotonic()))

    def _arrive(self, got: Message) -> None:
        with self._arrived:
            self.received.append(got)
            self._arrived.notify_all()

    def _record_as_it_is(self, channel: str, site: str, post: str, payload: bytes) -> None:
        """An event that breaks the contract is still an event: recorded as it came and confirmed, so the
        post does not send it for ever (it is in :attr:`invalid` for a person to look at)."""
        if channel not in contract.OUTBOX_KINDS or self.record is None:
            return
        try:
            value = json.loads(payload)
        except ValueError:
            return
        if (
            isinstance(value, dict)
            and isinstance(value.get("id"), str)
            and isinstance(value.get("store"), str)
            and isinstance(value.get("n"), int)
            and value["n"] >= 1
        ):
            self._to_record.put((channel, site, post, value))

    def _first_copy(self, uid: str) -> bool:
        """True for an id not seen before; a copy is counted in :attr:`duplicates`."""
        if uid in self._seen:
            self.duplicates += 1
            with self._arrived:
                self._arrived.notify_all()  # for wait_until on the counts
            return False
        self._seen.add(uid)
        return True

    def _new_event(self, got: Message) -> bool:
        """Follow the post's numbers; False for a copy already seen.  Asks at once for a replay of a gap."""
        event = got.payload
        key = (got.site, got.post)
        track = self._tracks.get(key)
        if track is None or track.store != event["store"]:
            track = self._tracks[key] = PostTrack(event["store"], event["n"])
        gaps_before = bool(track.above)
        track.arrived(event["n"])
        if not self._first_copy(event["id"]):
            return False
        self.events.append(got)
        if track.above and not gaps_before:  # a new gap: ask now (a still open one is chased later)
            track.gap_since = time.monotonic()
            self._ask_replay(key, track)
        return True

    def _check_tail(self, key: PostId, counts: dict[str, Any]) -> None:
        """A state tells the post's newest number: what is below it and never arrives is asked for."""
        track = self._tracks.get(key)
        if track is None or track.store != counts["store"]:
            # What the post has had confirmed is in a centre's record: start after it.
            first_unconfirmed = counts["last_n"] - counts["unconfirmed"] + 1
            track = self._tracks[key] = PostTrack(counts["store"], first_unconfirmed)
        track.told_last = max(track.told_last, counts["last_n"])

    def _chase_gaps(self) -> None:
        """Ask again for what is still missing (a replay request or its answer can be lost too)."""
        now = time.monotonic()
        with self._lock:
            for key, track in self._tracks.items():
                if not track.missing():
                    track.gap_since = None
                    continue
                if track.gap_since is None:
                    track.gap_since = now
                if now - track.gap_since >= self.tail_grace_s:
                    self._ask_replay(key, track)

    def _ask_replay(self, key: PostId, track: PostTrack) -> None:
        now = time.monotonic()
        count = track.missing()
        if not count or now - track.asked_at < self.replay_every_s or self._key_for(*key) is None:
            return
        if not self.client.is_connected():
            return  # asked again by the next chase
        track.asked_at = now
        self.replays_asked += 1
        log.warning("asking a post to replay missing events", extra={"post": "/".join(key), "from": track.next_n})
        self.send(key[0], key[1], "replay", {"from": track.next_n, "count": min(count, 1000)}, wait=False)

    # -- the durable record and receipts -------------------------------------------------------

    def _record_loop(self) -> None:
        """Record what arrives in batches (one commit each), confirm each batch to its posts, chase gaps."""
        stopping = False
        while not stopping:
            try:
                first = self._to_record.get(timeout=self.tail_grace_s / 2)
            except queue.Empty:
                self._chase_gaps()
                continue
            batch: list[Report] = []
            item: Report | None = first
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                if len(batch) >= self.receipt_batch:
                    break
                try:
                    item = self._to_record.get_nowait()
                except queue.Empty:
                    break
            try:
                assert self.record is not None  # nothing is queued without one
                self.record.add(batch)
            except Exception:  # a full disk, say: confirm nothing, so the posts keep it and send it again
                log.exception("the centre's record failed: nothing confirmed")
                continue
            self._send_receipts(batch)
            self._chase_gaps()

    def _send_receipts(self, batch: list[Report]) -> None:
        numbers: dict[tuple[str, str, str], dict[str, set[int]]] = defaultdict(
            lambda: {kind: set() for kind in contract.OUTBOX_KINDS}
        )
        for kind, site, post, payload in batch:
            numbers[(site, post, payload["store"])][kind].add(payload["n"])
        for (site, post, store), kinds in numbers.items():
            key = self._key_for(site, post)
            if key is None:
                log.error("no key to sign a receipt with: the post keeps its events", extra={"post": f"{site}/{post}"})
                continue
            events, audit = contract.number_ranges(kinds["events"]), contract.number_ranges(kinds["audit"])
            step = contract.RECEIPT_MAX_RANGES
            for start in range(0, max(len(events), len(audit)), step):
                receipt = {
                    "store": store,
                    "events": events[start : start + step],
                    "audit": audit[start : start + step],
                    "at": contract.iso_time(time.time()),
                }
                self._publish_receipt(Topics(site, post), key, contract.encode("receipts", receipt))

    def _publish_receipt(self, topics: Topics, key: bytes, payload: bytes) -> None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = "application/json"
        properties.UserProperty = list(auth.sign(key, topics.receipts, payload).items())
        if self.client.is_connected():  # otherwise the post sends it again and is confirmed then
            self.client.publish(topics.receipts, payload, qos=1, properties=properties)
            self.receipts_sent += 1

    def wait_for(self, test: Callable[[Message], bool], timeout: float = 10.0, since: int | None = None) -> Message:
        """The first message for which ``test`` is true, from index ``since`` of :attr:`received`
        (default: from now on); CentreError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            index = len(self.received) if since is None else since
            while True:
                for message in self.received[index:]:
                    if test(message):
                        return message
                index = len(self.received)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CentreError(f"no matching message within {timeout:g} s")
                self._arrived.wait(left)

    def wait_until(self, test: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``test()`` holds, looking again as each message (or dropped copy) arrives."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not test():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CentreError(f"not so within {timeout:g} s")
                self._arrived.wait(left)

    def stream(self, timeout: float | None = None) -> Iterator[Message]:
        """Messages as they arrive, from now on; ends after ``timeout`` seconds of silence (never with None)."""
        index = len(self.received)
        while True:
            with self._arrived:
                if index >= len(self.received):
                    self._arrived.wait(timeout)
                batch = self.received[index:]
                index = len(self.received)
            if not batch and timeout is not None:
                return
            yield from batch

    # -- commanding ----------------------------------------------------------------------

    def _key_for(self, site: str, post: str) -> bytes | None:
        if self._keys is None:
            return None
        if callable(self._keys):
            return self._keys(site, post)
        return self._keys.get((site, post))

    def send(
        self,
        site: str,
        post: str,
        command: str,
        args: dict[str, Any] | None = None,
        operator: str | None = None,
        *,
        wait: bool = True,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        payload: bytes | None = None,
    ) -> dict[str, Any] | None:
        """Send one signed command; its result (or None with ``wait=False``).

        ``headers`` and ``payload`` replace the signed ones as given: how the tests
        forge, strip and replay signatures.
        """
        topics = Topics(site, post)
        if payload is None:
            body: dict[str, Any] = {"command": command}
            if args is not None:
                body["args"] = args
            if operator is not None:
                body["operator"] = operator
            payload = contract.encode("commands", body)
        if headers is None:
            key = self._key_for(site, post)
            if key is None:
                raise CentreError(f"no command key for {site}/{post}")
            headers = auth.sign(key, topics.commands, payload)
        if not self.client.is_connected():
            # paho would keep the command and send it whenever the broker comes back, long after
            # the caller gave up on it: refuse instead, so an operator never commands by surprise.
            raise CentreError(f"not connected to the broker: {command} for {site}/{post} not sent")
        correlation = uuid.uuid4().bytes
        answers: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._results[correlation] = answers
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = topics.results
        properties.CorrelationData = correlation
        properties.ContentType = "application/json"
        properties.UserProperty = list(headers.items())
        self.client.publish(topics.commands, payload, qos=1, properties=properties)
        if not wait:
            return None
        try:
            return answers.get(timeout=timeout)
        except queue.Empty:
            raise CentreError(f"no result from {site}/{post} for {command} within {timeout:g} s") from None
        finally:
            with self._lock:
                self._results.pop(correlation, None)

    def command(
        self, site: str, post: str, command: str, args: dict[str, Any] | None = None, operator: str | None = None
    ) -> dict[str, Any]:
        """Send a signed command and wait for its result."""
        result = self.send(site, post, command, args, operator)
        assert result is not None
        return result

    # -- the gate WiFi's content -----------------------------------------------------------

    def publish_content(self, site: str, post: str, payload: bytes, timeout: float = 10.0) -> None:
        """Publish a signed content bundle (``captive_portal.content.sign_bundle``) for one post,
        retained at QoS 1, and wait until the broker has taken it; CentreError if it did not."""
        topic = Topics(site, post).content
        try:
            contract.decode("content", payload)
        except ContractError as exc:
            raise CentreError(f"not a content envelope: {exc}") from None
        self._check_packet_size(topic, payload)
        if not self.client.is_connected():
            raise CentreError(f"not connected to the broker: content for {site}/{post} not sent")
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = "application/json"
        properties.PayloadFormatIndicator = 1
        info = self.client.publish(topic, payload, qos=1, retain=True, properties=properties)
        reason = self._wait_puback(info.mid, timeout)
        if reason is None:
            raise CentreError(f"the broker did not acknowledge the content for {site}/{post} within {timeout:g} s")
        if reason.is_failure:
            raise CentreError(f"the broker refused the content for {site}/{post}: {reason}")

    def _check_packet_size(self, topic: str, payload: bytes) -> None:
        overhead = len(topic.encode()) + 64  # fixed header, topic length, packet id, properties
        if self.max_packet_size is not None and len(payload) + overhead > self.max_packet_size:
            raise CentreError(
                f"the content is {len(payload)} bytes; the broker takes packets of at most {self.max_packet_size}"
            )

    def _on_publish(self, client: mqtt.Client, _: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._acked:
            self._pubacks[mid] = reason
            while len(self._pubacks) > 256:  # commands' PUBACKs nobody waits for
                self._pubacks.popitem(last=False)
            self._acked.notify_all()

    def _wait_puback(self, mid: int, timeout: float) -> ReasonCode | None:
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._pubacks, timeout):
                return None
            return self._pubacks.pop(mid)


# -- the command line ------------------------------------------------------------------------


def _keys_from_folder(folder: Path) -> Callable[[str, str], bytes | None]:
    """Keys kept as ``FOLDER/<site>/<post>.key``."""

    def lookup(site: str, post: str) -> bytes | None:
        path = folder / site / f"{post}.key"
        try:
            return auth.load_key(path) if path.exists() else None
        except auth.KeyFileError as exc:
            log.error("unusable command key", extra={"error": str(exc)})
            return None

    return lookup


def _describe(message: Message) -> str:
    where = f"{message.site}/{message.post}"
    p = message.payload
    if message.channel == "events":
        return f"EVENT {where} #{p['n']} {p['contact_id']} {p['text']} (board boot {p['boot']} seq {p['seq']})"
    if message.channel == "state":
        return (
            f"STATE {where} alarm={p['alarm']} link={p['link']} faults={p['faults']}"
            f" unconfirmed={p['events']['unconfirmed']}"
        )
    if message.channel == "availability":
        return f"AVAIL {where} {p}"
    if message.channel == "audit":
        return (
            f"AUDIT {where} {p['command']} by {p['operator'] or '-'}: auth {p['auth']}, {p['status']} ({p['detail']})"
        )
    if isinstance(p, Picture):
        saved = f" saved to {p.path}" if p.path else ""
        return f"PICTURE {where} {p.kind} #{p.seq} captured {p.captured}, {p.size // 1024} KB{saved}"
    if message.channel == "results":
        return f"RESULT {where} {p['command']}: {p['status']} ({p['detail']})"
    if message.channel == "portal":
        return (
            f"PORTAL {where} {p['period_s']} s: {p['joins']} joined, {p['acceptances']} accepted,"
            f" {p['active_sessions']} online, content v{p['content_version']}"
        )
    return f"{message.channel.upper()} {where} {json.dumps(p)}"


def _post(text: str) -> PostId:
    site, _, post = text.partition("/")
    try:
        return contract.check_id("site", site), contract.check_id("post", post)
    except ContractError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SITE/POST; {exc}") from None


COMMAND_WORDS = {
    "ack": "acknowledge",
    "acknowledge": "acknowledge",
    "silence": "silence",
    "reset": "reset",
    "test": "test",
    "self-test": "self_test",
    "status": "status",
    "config-set": "config_set",
    "replay": "replay",
    "snapshot": "snapshot",
    "stream": "stream",
    "stream-stop": "stream_stop",
}


def _stream_seconds(text: str) -> int:
    seconds = int(text)
    if not 1 <= seconds <= contract.STREAM_MAX_S:
        raise argparse.ArgumentTypeError(f"{seconds}: a stream lasts 1-{contract.STREAM_MAX_S} seconds")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_daemon.centre",
        description="The reference centre client.",
        allow_abbrev=False,  # "content ... --key" must not read as an abbreviation of --keys or --key-file
    )
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--no-tls", action="store_true", help="plain MQTT (a test bench only)")
    parser.add_argument("--ca-file", help="PEM of the broker's certificate authority (default: the system's)")
    parser.add_argument("--cert-file", help="the centre's client certificate (PEM)")
    parser.add_argument("--key-file", help="its private key (PEM)")
    parser.add_argument(
        "--username",
        help='the broker account: default "centre" (the recorder) for watch --record, else "operator";'
        " each client needs its own account (a second client of one pushes the first off)",
    )
    parser.add_argument("--password-file", type=Path, help="a file holding the centre's broker password")
    parser.add_argument("--keys", type=Path, help="folder of command keys, one per post: SITE/POST.key")
    parser.add_argument("--operator", help="who is commanding (kept in the post's audit)")
    parser.add_argument(
        "--client-id",
        help="MQTT client id; watch keeps its session (and what arrives while it is away) under it"
        " (default: alarmpost-centre-watch-USERNAME)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the broker and for a command's result"
    )
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("keygen", help="print a new command key (64 hex digits) for a post's key file")
    content_keygen = sub.add_parser("content-keygen", help="make the centre's Ed25519 key for the gate WiFi's content")
    content_keygen.add_argument("private", type=Path, metavar="PRIVATE", help="private key file to make (mode 0600)")
    content_keygen.add_argument("public", type=Path, metavar="PUBLIC", help="public key file, for each post")
    content = sub.add_parser("content", help="sign a content bundle and publish it, retained, to a post")
    content.add_argument("target", type=_post, metavar="SITE/POST")
    content.add_argument("bundle", type=Path, metavar="BUNDLE.json", help="the bundle (images may be given as files)")
    content.add_argument("--key", type=Path, required=True, metavar="PRIVATE", help="the centre's content key")
    content.add_argument("--dry-run", action="store_true", help="sign and print the payload's size; publish nothing")
    watch = sub.add_parser("watch", help="print events, states, availability, results and audit as they come")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--count", type=int, help="stop after this many events")
    watch.add_argument(
        "--save", type=Path, metavar="FOLDER", help="save pictures: FOLDER/SITE/POST/*.jpg, stream.mjpeg"
    )
    watch.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="the centre's durable record (SQLite); with it, watch confirms what it recorded to each post"
        " (a receipt takes the events out of the post's outbox); without it, watch confirms nothing",
    )
    for word in COMMAND_WORDS:
        command = sub.add_parser(word, help=f"send {COMMAND_WORDS[word]} to a post and print its result")
        command.add_argument("target", type=_post, metavar="SITE/POST")
        if word == "config-set":
            command.add_argument("key")
            command.add_argument("value", help='a JSON value (e.g. 120, true, "text")')
        if word == "stream":
            command.add_argument("seconds", type=_stream_seconds, nargs="?", default=60)
        if word == "replay":
            command.add_argument("first", type=int, metavar="FROM")
            command.add_argument("count", type=int, nargs="?", default=100)
    return parser


def _command_args(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.action == "config-set":
        try:
            value = json.loads(args.value)
        except ValueError:
            value = args.value  # a bare word is a string
        return {"key": args.key, "value": value}
    if args.action == "replay":
        return {"from": args.first, "count": args.count}
    if args.action == "stream":
        return {"seconds": args.seconds}
    return None


def _content_keygen(args: argparse.Namespace) -> int:
    from captive_portal.content import ContentKeyError, generate_keypair

    try:
        generate_keypair(args.private, args.public)
    except (ContentKeyError, OSError) as exc:
        print(f"centre: {exc}", file=sys.stderr)
        return 1
    print(f"private key: {args.private} (keep it at the centre)\npublic key:  {args.public} (for each post)")
    return 0


def _signed_content(args: argparse.Namespace) -> bytes | None:
    """The signed payload of the bundle file, or None (the problem printed)."""
    from captive_portal.content import BundleError, ContentKeyError, inline_image_files, load_private_key, sign_bundle

    try:
        bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problem = f"cannot be read: {exc.strerror or exc}" if isinstance(exc, OSError) else f"not JSON: {exc}"
        print(f"centre: {args.bundle}: {problem}", file=sys.stderr)
        return None
    if not isinstance(bundle, dict):
        print(f"centre: {args.bundle}: not a JSON object", file=sys.stderr)
        return None
    try:
        return sign_bundle(inline_image_files(bundle, args.bundle.parent), load_private_key(args.key))
    except ContentKeyError as exc:
        print(f"centre: {exc}", file=sys.stderr)
    except BundleError as exc:
        print(f"centre: {args.bundle}: {exc}", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "keygen":
        print(auth.new_key())
        return 0
    if args.action == "content-keygen":
        return _content_keygen(args)
    signed = None
    if args.action == "content":
        signed = _signed_content(args)
        if signed is None:
            return 1
        if args.dry_run:
            print(f"{args.bundle}: signed, {len(signed)} bytes (not published: --dry-run)")
            return 0
    password = args.password_file.read_text().strip() if args.password_file else None
    keys = _keys_from_folder(args.keys) if args.keys else None
    watching = args.action == "watch"
    recording = getattr(args, "record", None) is not None
    username = args.username if args.username is not None else ("centre" if recording else "operator")
    centre = Centre(
        args.host,
        args.port,
        keys,
        username=username,
        password=password,
        tls=not args.no_tls,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        client_id=args.client_id or (f"alarmpost-centre-watch-{username or 'anonymous'}" if watching else None),
        clean=not watching,
        pictures=getattr(args, "save", None),
        record=getattr(args, "record", None),
        take_pictures=not recording or getattr(args, "save", None) is not None,
    )
    try:
        centre.connect(args.timeout)
    except CentreError as exc:
        print(f"centre: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "watch":
            return _watch(centre, args)
        site, post = args.target
        if signed is not None:
            centre.publish_content(site, post, signed, timeout=args.timeout)
            print(f"{args.bundle}: {len(signed)} bytes published, retained, to {Topics(site, post).content}")
            return 0
        result = centre.send(
            site, post, COMMAND_WORDS[args.action], _command_args(args), args.operator, timeout=args.timeout
        )
        print(json.dumps(result, indent=2))
        return 0 if result is not None and result["status"] == "ok" else 1
    except CentreError as exc:
        print(f"centre: {exc}", file=sys.stderr)
        return 1
    finally:
        centre.close()


def _watch(centre: Centre, args: argparse.Namespace) -> int:
    events = 0
    try:
        for message in centre.stream():
            if args.json and isinstance(message.payload, Picture):
                picture = message.payload
                print(
                    json.dumps(
                        {
                            "site": message.site,
                            "post": message.post,
                            "channel": message.channel,
                            "kind": picture.kind,
                            "seq": picture.seq,
                            "captured": picture.captured,
                            "bytes": picture.size,
                            "path": str(picture.path or ""),
                        }
                    ),
                    flush=True,
                )
            elif args.json:
                print(
                    json.dumps(
                        {
                            "site": message.site,
                            "post": message.post,
                            "channel": message.channel,
                            "payload": message.payload,
                        }
                    ),
                    flush=True,
                )
            else:
                print(_describe(message), flush=True)
            events += message.channel == "events"
            if args.count and events >= args.count:
                return 0
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    sys.exit(main())
