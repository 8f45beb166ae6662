"""The centre's receipt closes an event: not the broker's PUBACK.  Against a real mosquitto and the real daemon.

Each test names the broken feature it would catch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alarmpost import events as ev
from edge_daemon import auth, contract
from edge_daemon.centre import Centre
from edge_daemon.contract import Topics
from hw_sim.mosquitto import Mosquitto
from hw_sim.uplinked import UplinkedPost, press_once

from .conftest import require

QUICK = {"confirm_timeout_s": 1.0, "confirm_timeout_max_s": 2.0, "confirm_trouble_s": 5.0}


@pytest.fixture
def post(tmp_path: Path, broker: Mosquitto) -> Iterator[UplinkedPost]:
    require("micropython")
    rig = UplinkedPost(tmp_path, "127.0.0.1", broker.port, uplink=QUICK)
    rig.start()
    yield rig
    rig.stop()


def is_event(code: int, qualifier: str = "new", source: str | None = None) -> Any:
    return lambda m: (
        m.channel == "events"
        and m.payload["code"] == code
        and m.payload["qualifier"] == qualifier
        and (source is None or m.payload["source"] == source)
    )


def test_an_event_the_centre_saw_but_did_not_record_stays_in_the_outbox(post: UplinkedPost) -> None:
    """Catches: the outbox emptied on the broker's PUBACK (a relay's acknowledgement taken for delivery)."""
    watcher = post.centre(record=None)  # receives everything, records and confirms nothing
    post.wait_online(watcher)
    _, pressed = press_once(post.bench)
    watcher.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == pressed.event.seq, since=0)
    state = watcher.wait_for(lambda m: m.channel == "state" and m.payload["events"]["unconfirmed"] >= 1, since=0)
    assert state.payload["events"]["oldest_unconfirmed_s"] is not None
    assert pressed.event.seq in post.unconfirmed_seqs()
    # the post sends it again (it is the same event: the same id) until someone confirms it
    first_id = next(m.payload["id"] for m in watcher.events if m.payload["seq"] == pressed.event.seq)
    watcher.wait_until(lambda: watcher.duplicates >= 1, timeout=10)
    assert pressed.event.seq in post.unconfirmed_seqs()

    recorder = post.centre()  # a recording centre: its receipt takes the event out
    assert post.wait_confirmed(timeout=20) == []
    assert recorder.record is not None
    recorded = recorder.record.numbers(post.site, post.post, state.payload["events"]["store"])
    assert next(m.payload["n"] for m in watcher.events if m.payload["id"] == first_id) in recorded


def test_receipts_confirm_ranges_and_reach_the_post_in_order(post: UplinkedPost) -> None:
    """Catches: receipts confirming the wrong numbers, or the post marking what no receipt named."""
    centre = post.centre()
    post.wait_online(centre)
    for _ in range(5):
        press_once(post.bench)
    assert post.wait_confirmed(timeout=20) == []
    assert centre.receipts_sent >= 1
    store = centre.events[0].payload["store"]
    assert centre.record is not None
    recorded = centre.record.numbers(post.site, post.post, store)
    arrived = sorted(m.payload["n"] for m in centre.events)
    assert recorded == arrived  # the centre recorded exactly what arrived, once


def forge_receipt(broker: Mosquitto, topics: Topics, payload: bytes, headers: dict[str, str]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = list(headers.items())
    client.publish(topics.receipts, payload, qos=1, properties=properties).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_forged_unsigned_and_foreign_receipts_confirm_nothing(post: UplinkedPost, broker: Mosquitto) -> None:
    """Catches: receipts taken without checking the centre's signature or the store they are for."""
    watcher = post.centre(record=None)
    post.wait_online(watcher)
    _, pressed = press_once(post.bench)
    got = watcher.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == pressed.event.seq, since=0)
    topics = Topics(post.site, post.post)
    everything = {"store": got.payload["store"], "events": [[1, 10**6]], "audit": [], "at": contract.iso_time(0)}
    payload = contract.encode("receipts", everything)
    other_store = contract.encode("receipts", dict(everything, store="00000000-0000-4000-8000-000000000000"))
    wrong_key = bytes(32)
    tries = [
        (payload, {}),  # unsigned
        (payload, auth.sign(wrong_key, topics.receipts, payload)),  # forged
        (payload, auth.sign(post.key, topics.commands, payload)),  # a signature for another topic
        (other_store, auth.sign(post.key, topics.receipts, other_store)),  # signed, but for another store
        (b'{"store": "x"}', auth.sign(post.key, topics.receipts, b'{"store": "x"}')),  # signed, malformed
    ]
    for body, headers in tries:
        forge_receipt(broker, topics, body, headers)
    # the post is still serving and still holds the event: a status round trip orders us after the receipts
    assert watcher.command(post.site, post.post, "status")["status"] == "ok"
    assert pressed.event.seq in post.unconfirmed_seqs()
    assert "receipt refused" in post.log_tail(1_000_000)
    # the genuine article works
    forge_receipt(broker, topics, payload, auth.sign(post.key, topics.receipts, payload))
    assert post.wait_confirmed(timeout=10) == []


def test_an_unconfirmed_event_raises_354_until_the_centre_confirms_again(post: UplinkedPost) -> None:
    """Catches: a post that keeps quiet while its events go unconfirmed, or never restores the trouble."""
    watcher = post.centre(record=None)
    post.wait_online(watcher)
    press_once(post.bench)
    raised = watcher.wait_for(is_event(ev.EVENT_NOT_SENT, "new", "daemon"), timeout=20, since=0)
    assert raised.payload["contact_id"] == "1354 01 009"
    trouble = watcher.wait_for(lambda m: m.channel == "state" and m.payload["events"]["trouble"], since=0)
    assert trouble.payload["events"]["oldest_unconfirmed_s"] > QUICK["confirm_trouble_s"]
    mark = len(watcher.received)
    post.centre()  # the path to a recording centre is back
    watcher.wait_for(is_event(ev.EVENT_NOT_SENT, "restore", "daemon"), timeout=20, since=mark)
    cleared = watcher.wait_for(lambda m: m.channel == "state" and not m.payload["events"]["trouble"], since=mark)
    assert cleared.payload["events"]["trouble"] is False
    assert post.wait_confirmed(timeout=20) == []


class LossyCentre(Centre):
    """A centre behind a broker that loses the first copy of the events numbered ``lose``."""

    def __init__(self, *args: Any, lose: set[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lose = set(lose)

    def _handle(self, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/events"):
            payload = contract.decode("events", bytes(message.payload))
            if payload["n"] in self.lose:
                self.lose.discard(payload["n"])
                return
        super()._handle(message)


def lossy_centre(post: UplinkedPost, lose: set[int]) -> LossyCentre:
    keys = {(post.site, post.post): post.key}
    centre = LossyCentre("127.0.0.1", post.port, keys, username=None, tls=False, record=post.folder / "l.db", lose=lose)
    centre.connect()
    post.centres.append(centre)
    return centre


@pytest.fixture
def slow_resend_post(tmp_path: Path, broker: Mosquitto) -> Iterator[UplinkedPost]:
    """A post that waits a minute before sending unconfirmed events again: what arrives sooner was replayed."""
    require("micropython")
    rig = UplinkedPost(tmp_path, "127.0.0.1", broker.port, uplink={"confirm_timeout_s": 60.0})
    rig.start()
    yield rig
    rig.stop()


def test_the_centre_asks_for_a_replay_of_a_gap_it_sees(slow_resend_post: UplinkedPost) -> None:
    """Catches: a centre that never notices a missing number (Centre._new_event, _ask_replay)."""
    post = slow_resend_post
    first = post.centre(record=None)
    post.wait_online(first)
    press_once(post.bench)
    n = first.wait_for(lambda m: m.channel == "events" and m.payload["source"] == "board", since=0).payload["n"]
    centre = lossy_centre(post, lose={n + 1})
    centre.wait_for(lambda m: m.channel == "state", since=0)
    for _ in range(2):
        press_once(post.bench)
    back = centre.wait_for(lambda m: m.channel == "events" and m.payload["n"] == n + 1, timeout=10, since=0)
    assert back.payload["replayed"] is True  # brought by the centre's replay, not the post's resending
    assert centre.replays_asked >= 1


def test_the_centre_asks_for_a_lost_tail_that_no_later_event_reveals(slow_resend_post: UplinkedPost) -> None:
    """Catches: the last events of a burst lost after PUBACK with nothing after them to show the gap
    (Centre._check_tail, and the chase that asks again)."""
    post = slow_resend_post
    watcher = post.centre(record=None)
    post.wait_online(watcher)
    _, pressed = press_once(post.bench)
    n = watcher.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == pressed.event.seq, since=0)
    centre = lossy_centre(post, lose={n.payload["n"] + 1})
    centre.wait_for(lambda m: m.channel == "state", since=0)
    _, last = press_once(post.bench)  # its event is the one lost: nothing comes after it
    back = centre.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == last.event.seq, timeout=15, since=0)
    assert back.payload["replayed"] is True
    assert post.wait_confirmed(timeout=10) == []


def test_the_post_says_online_only_after_its_subscriptions_are_granted(post: UplinkedPost, broker: Mosquitto) -> None:
    """Catches: ``online`` published before SUBSCRIBE, when a command sent at once is dropped by the broker."""
    centre = post.centre()
    post.wait_online(centre)
    post.pi.kill()
    post.pi.start()
    mark = len(centre.received)
    centre.wait_for(lambda m: m.channel == "availability" and m.payload == contract.ONLINE, timeout=20, since=mark)
    # sent the moment it said online: a command the post answers itself (the board link may not be up yet)
    result = centre.command(post.site, post.post, "replay", {"from": 1, "count": 1})
    assert result["status"] == "ok"
    client = re.escape(f"{post.site}/{post.post}")  # the account is the client id
    availability = re.escape(Topics(post.site, post.post).availability)
    lines = broker.log_text().splitlines()
    connects = [i for i, line in enumerate(lines) if re.search(rf"New client connected .* as {client} ", line)]
    assert len(connects) >= 2
    for start in connects:
        session = lines[start:]
        subscribe = next(i for i, line in enumerate(session) if re.search(rf"Received SUBSCRIBE from {client}$", line))
        online = next(
            i
            for i, line in enumerate(session)
            if re.search(rf"Received PUBLISH from {client} .*'{availability}'", line)
            and "(6 bytes)" in line  # "online"
        )
        assert subscribe < online


def test_a_tail_lost_after_puback_comes_back_though_the_centre_never_asks(post: UplinkedPost) -> None:
    """Catches: the post trusting the broker's PUBACK, so that the last events of a burst, lost by the broker
    before delivery with no later event to reveal the gap, are gone unless the centre happens to ask.
    This was how uplink_faults lost its last two events in one run of five."""
    watcher = post.centre(record=None)
    post.wait_online(watcher)
    _, before = press_once(post.bench)
    n = watcher.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == before.event.seq, since=0)
    centre = lossy_centre(post, lose={n.payload["n"] + 1})
    centre.replay_every_s = 1e9  # this centre never asks for a replay: only the post can bring the event back
    centre.wait_for(lambda m: m.channel == "state", since=0)
    _, last = press_once(post.bench)
    back = centre.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == last.event.seq, timeout=15, since=0)
    assert back.payload["replayed"] is False  # sent again by the post, unconfirmed, not asked for
    assert centre.replays_asked == 0
    assert post.wait_confirmed(timeout=10) == []
