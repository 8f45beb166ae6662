"""The uplink against a real mosquitto: events at the centre, retained state, Last Will, commands, audit."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from alarmpost import events as ev
from edge_daemon import auth, contract
from edge_daemon.centre import Centre, Message
from hw_sim.linked import write_secret
from hw_sim.mosquitto import Mosquitto
from hw_sim.uplinked import UplinkedPost, press_once

from .conftest import require


@pytest.fixture
def post(tmp_path: Path, broker: Mosquitto) -> Iterator[UplinkedPost]:
    require("micropython")
    rig = UplinkedPost(tmp_path, "127.0.0.1", broker.port)
    rig.start()
    yield rig
    rig.stop()


@pytest.fixture
def centre(post: UplinkedPost) -> Centre:
    centre = post.centre()
    post.wait_online(centre)
    return centre


def is_event(code: int, qualifier: str = "new") -> object:
    return lambda m: m.channel == "events" and m.payload["code"] == code and m.payload["qualifier"] == qualifier


def is_state(alarm: str) -> object:
    return lambda m: m.channel == "state" and m.payload["alarm"] == alarm


def audit_of(centre: Centre, auth_verdict: str) -> Message:
    return centre.wait_for(lambda m: m.channel == "audit" and m.payload["auth"] == auth_verdict, since=0)


def test_a_press_reaches_an_independent_subscriber_as_a_schema_valid_event(post: UplinkedPost, centre: Centre) -> None:
    post.bench.press()
    board_event = post.bench.wait_event(ev.PANIC)
    got = centre.wait_for(is_event(ev.PANIC), since=0)  # type: ignore[arg-type]
    event = got.payload
    contract.decode("events", contract.encode("events", event))  # the centre checked it on arrival too
    assert centre.invalid == []
    assert (event["site"], event["post"], event["source"]) == (post.site, post.post, "board")
    assert (event["seq"], event["boot"], event["zone"]) == (board_event.seq, board_event.boot, ev.ZONE_BUTTON)
    assert event["contact_id"] == "1120 01 001"
    assert event["board_time"] == {"boot": board_event.boot, "uptime_ms": board_event.uptime_ms}
    assert abs(datetime.fromisoformat(event["pi_time"]).timestamp() - time.time()) < 30
    numbers = [m.payload["n"] for m in centre.events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_retained_state_and_availability_behave_as_documented(post: UplinkedPost, centre: Centre) -> None:
    post.bench.press()
    centre.wait_for(is_state("alarm"), since=0)  # type: ignore[arg-type]
    late = post.centre(clean=True)  # a centre that joins now gets the retained state at once
    state = late.wait_for(lambda m: m.channel == "state", since=0).payload
    assert state["alarm"] == "alarm" and state["link"] == "up" and state["outputs"]["siren"] is True
    assert late.wait_for(lambda m: m.channel == "availability", since=0).payload == contract.ONLINE

    def availability(since: int) -> str:
        return str(centre.wait_for(lambda m: m.channel == "availability", 3 * post.keepalive_s, since).payload)

    mark = len(centre.received)
    post.pi.kill()  # the daemon vanishes: the broker publishes its Last Will
    assert availability(mark) == contract.OFFLINE
    post.pi.start()
    post.wait_online(centre)
    mark = len(centre.received)
    assert post.pi.stop() == 0  # a clean stop says "stopped", not "offline"
    assert availability(mark) == contract.STOPPED
    after = post.centre(clean=True)
    assert after.wait_for(lambda m: m.channel == "availability", since=0).payload == contract.STOPPED


def test_acknowledge_silence_and_reset_from_the_centre(post: UplinkedPost, centre: Centre) -> None:
    bench, site, name = post.bench, post.site, post.post
    mark = len(centre.received)
    bench.press()
    bench.wait_state("alarm")
    centre.wait_for(is_state("alarm"), since=mark)  # type: ignore[arg-type]

    mark, shown = len(centre.received), len(bench.shown)
    assert centre.command(site, name, "acknowledge", operator="desk 3")["status"] == "ok"
    assert bench.wait_state("acknowledged", since=shown).siren  # the strobe pattern changes, the siren sounds on
    centre.wait_for(is_state("acknowledged"), since=mark)  # type: ignore[arg-type]

    mark, since = len(centre.received), time.monotonic()
    assert centre.command(site, name, "silence")["status"] == "ok"
    bench.wait_output("siren", False, after=since)
    state = centre.wait_for(lambda m: m.channel == "state" and m.payload["outputs"]["siren"] is False, since=mark)
    assert state.payload["alarm"] == "silenced"

    mark, shown = len(centre.received), len(bench.shown)
    assert centre.command(site, name, "reset")["status"] == "ok"
    bench.wait_state("idle", since=shown)
    centre.wait_for(is_state("idle"), since=mark)  # type: ignore[arg-type]
    centre.wait_for(is_event(ev.PANIC_RESET), since=mark)  # type: ignore[arg-type]
    audit = centre.wait_for(lambda m: m.channel == "audit" and m.payload["operator"] == "desk 3", since=0).payload
    assert (audit["command"], audit["auth"], audit["status"]) == ("acknowledge", "valid", "ok")


def test_forged_unsigned_expired_and_replayed_commands_change_nothing_and_are_audited(
    post: UplinkedPost, centre: Centre
) -> None:
    bench, site, name = post.bench, post.site, post.post
    topic = contract.Topics(site, name).commands
    reset = contract.encode("commands", {"command": "reset", "operator": "desk 1"})
    captured = auth.sign(post.key, topic, reset)
    bench.press()
    bench.wait_state("alarm")
    bench.wait_input("button", True)
    inputs = len(bench.inputs_seen)
    bench.release()
    bench.wait_input("button", False, since=inputs)
    shown = len(bench.shown)
    assert centre.send(site, name, "reset", payload=reset, headers=captured)["status"] == "ok"  # type: ignore[index]
    bench.wait_state("idle", since=shown)
    shown = len(bench.shown)
    bench.press()
    bench.wait_state("alarm", since=shown)

    attempts = {
        "unsigned": {},
        "forged": auth.sign(bytes(32), topic, reset),
        "expired": auth.sign(post.key, topic, reset, now=time.time() - 120),
        "replayed": captured,
    }
    for verdict, headers in attempts.items():
        result = centre.send(site, name, "reset", payload=reset, headers=headers)
        assert result is not None and result["status"] == "unauthenticated", verdict
        audit = audit_of(centre, verdict).payload
        assert (audit["command"], audit["status"]) == ("reset", "unauthenticated")
    forged_payload = contract.encode("commands", {"command": "silence"})  # a valid signature over another command
    result = centre.send(site, name, "silence", payload=forged_payload, headers=auth.sign(post.key, topic, reset))
    assert result is not None and result["status"] == "unauthenticated"

    assert bench.state == "alarm" and bench.is_on("siren")  # nothing changed on the post
    assert post.bench.events(ev.PANIC_RESET) == [post.bench.events(ev.PANIC_RESET)[0]]


def test_a_command_while_the_board_link_is_down_is_not_sent(post: UplinkedPost, centre: Centre) -> None:
    assert post.bench.wire is not None
    mark = len(centre.received)
    post.bench.wire.cut()
    centre.wait_for(lambda m: m.channel == "state" and m.payload["link"] == "down", 10, since=mark)
    result = centre.command(post.site, post.post, "status")
    assert result["status"] == "link_down"
    mark = len(centre.received)
    post.bench.wire.mend()
    centre.wait_for(lambda m: m.channel == "state" and m.payload["link"] == "up", 10, since=mark)
    assert centre.command(post.site, post.post, "status")["data"]["state"] == "idle"


def test_a_malformed_command_is_answered_and_audited(post: UplinkedPost, centre: Centre) -> None:
    topic = contract.Topics(post.site, post.post).commands
    for payload in (b"\xff\xfe", b"not json", b'{"command": "dance"}', b'{"command": "config_set"}'):
        result = centre.send(post.site, post.post, "x", payload=payload, headers=auth.sign(post.key, topic, payload))
        assert result is not None and result["status"] == "malformed", payload
        assert result["detail"].startswith("commands: ")
    assert centre.command(post.site, post.post, "status")["status"] == "ok"  # the post keeps serving


def test_a_replay_sends_the_asked_events_again_and_the_centre_drops_the_copies(
    post: UplinkedPost, centre: Centre
) -> None:
    """Catches: replay sending the wrong numbers, or the centre passing a replayed copy on as new."""
    press_once(post.bench)  # pressed and released: no long-press event comes later
    first = centre.wait_for(is_event(ev.PANIC), since=0).payload  # type: ignore[arg-type]
    centre.wait_until(lambda: len(centre.events) >= first["n"])  # everything up to the press has arrived
    had, dropped = len(centre.events), centre.duplicates
    result = centre.command(post.site, post.post, "replay", {"from": 1, "count": first["n"]})
    assert result["status"] == "ok" and result["data"]["sent"] == first["n"]
    # every replayed copy arrives, and each is one the centre had: dropped by its id, none passed on
    centre.wait_until(lambda: centre.duplicates - dropped >= first["n"])
    assert len(centre.events) == had
    assert centre.duplicates - dropped == first["n"]


def retained(broker: Mosquitto, topic: str) -> Any:
    """The retained message on ``topic``, read by a fresh subscriber."""
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    got: list[Any] = []
    arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        got.append(json.loads(message.payload))
        arrived.set()

    listener.on_message = on_message
    listener.connect(broker.host, broker.port)
    listener.subscribe(topic)
    listener.loop_start()
    try:
        assert arrived.wait(10), f"nothing retained on {topic}"
    finally:
        listener.loop_stop()
        listener.disconnect()
    return got[0]


def test_home_assistant_sees_the_post_and_its_buttons_ask_only_harmless_things(
    tmp_path: Path, broker: Mosquitto
) -> None:
    require("micropython")
    rig = UplinkedPost(tmp_path, broker.host, broker.port, uplink={"homeassistant": True})
    rig.start()
    try:
        centre = rig.centre()
        rig.wait_online(centre)
        topics = contract.Topics(rig.site, rig.post)
        config = retained(broker, f"homeassistant/device/{rig.site}/{rig.post}/config")
        buttons = [c for c in config["cmps"].values() if c["p"] == "button"]
        assert sorted(b["payload_press"] for b in buttons) == ["self_test", "status"]
        assert {b["command_topic"] for b in buttons} == {topics.requests}

        mark, sounded = len(centre.received), [c for c in rig.bench.timeline.changes("siren") if c.on]
        centre.client.publish(topics.requests, b"self_test", qos=1)
        result = centre.wait_for(lambda m: m.channel == "results", since=mark).payload
        assert (result["command"], result["status"]) == ("self_test", "ok")
        assert result["data"]["check"] == "none", "an unsigned button started the siren's check"
        assert [c for c in rig.bench.timeline.changes("siren") if c.on] == sounded, (
            "an unsigned button sounded the siren"
        )
        mark = len(centre.received)
        rig.bench.press()
        rig.bench.wait_state("alarm")
        centre.client.publish(topics.requests, b"reset", qos=1)  # not a thing a button may ask for
        refused = centre.wait_for(
            lambda m: (
                m.channel == "audit"
                and m.payload["via"] == "homeassistant"
                and m.payload["status"] == "unauthenticated"
            ),
            since=mark,
        ).payload
        assert refused["command"] == "reset"
        assert rig.bench.state == "alarm"
    finally:
        rig.stop()


def test_the_centre_command_line_sends_a_signed_command(post: UplinkedPost, centre: Centre, tmp_path: Path) -> None:
    keys = tmp_path / "keys" / post.site
    keys.mkdir(parents=True)
    write_secret(keys / f"{post.post}.key", post.key.hex())
    target = f"{post.site}/{post.post}"
    common = ["--host", post.host, "--port", str(post.port), "--no-tls", "--username", "", "--keys", str(keys.parent)]
    done = subprocess.run(
        [sys.executable, "-m", "edge_daemon.centre", *common, "--operator", "tech 7", "status", target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok" and result["data"]["state"] == "idle"
    audit = centre.wait_for(lambda m: m.channel == "audit" and m.payload["operator"] == "tech 7", since=0).payload
    assert audit["auth"] == "valid"
    keygen = subprocess.run([sys.executable, "-m", "edge_daemon.centre", "keygen"], capture_output=True, text=True)
    assert len(bytes.fromhex(keygen.stdout.strip())) == 32


def test_health_reports_the_backlog_and_the_link(post: UplinkedPost, centre: Centre) -> None:
    health = centre.wait_for(lambda m: m.channel == "health", since=0).payload
    assert health["backlog"] >= 0 and health["connects"] >= 1
    assert set(health["link"]) >= {"stored", "duplicates", "refused", "gaps"}
    assert health["disk_free_bytes"] > 0 and health["store_bytes"] > 0


def test_a_refused_config_set_is_answered_and_audited_with_its_reason(post: UplinkedPost, centre: Centre) -> None:
    reason = "siren_cutoff_s: 5 is below the minimum 180 for a remote change"
    centre.wait_for(lambda m: m.channel == "state" and m.payload["link"] == "up", since=0)  # the board answers
    result = centre.command(
        post.site, post.post, "config_set", {"key": "siren_cutoff_s", "value": 5}, operator="desk 9"
    )
    assert result["status"] == "bad_args" and reason in result["detail"]
    audit = centre.wait_for(lambda m: m.channel == "audit" and m.payload["operator"] == "desk 9", since=0).payload
    assert (audit["command"], audit["auth"], audit["status"]) == ("config_set", "valid", "bad_args")
    assert reason in audit["detail"]
    assert "siren_cutoff_s" not in json.loads((post.bench.flash / "config.json").read_text())
