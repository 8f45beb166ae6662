"""The camera through the whole post: press on the bench → pictures at the centre over a real mosquitto."""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from alarmpost import events as ev
from edge_daemon.centre import Centre, Message
from edge_daemon.viewer import Picture
from hw_sim.camera import has_alarm_mark
from hw_sim.mosquitto import Mosquitto
from hw_sim.onvif import FakeOnvifCamera
from hw_sim.uplinked import UplinkedPost

from .conftest import require

PTZ_USER, PTZ_PASSWORD = "ptz-operator", "dome-secret"


def picture(kind: str, alarm: str | None = None) -> object:
    def test(m: Message) -> bool:
        p = m.payload
        return isinstance(p, Picture) and p.kind == kind and (alarm is None or p.alarm == alarm)

    return test


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def dome() -> Iterator[FakeOnvifCamera]:
    with FakeOnvifCamera(username=PTZ_USER, password=PTZ_PASSWORD, presets=("gate",)) as camera:
        yield camera


@pytest.fixture
def post(tmp_path: Path, broker: Mosquitto, dome: FakeOnvifCamera) -> Iterator[UplinkedPost]:
    require("micropython")
    (tmp_path / "ptz.password").write_text(PTZ_PASSWORD)
    camera = {  # 640x480 at 10 frames a second takes about 1.4 Mbit/s: more than the cap
        "width": 640,
        "height": 480,
        "pre_alarm_s": 2.0,
        "stream_fps": 10.0,
        "stream_kbps": 800,
        "chunk_kb": 8,
        "ptz_url": f"http://127.0.0.1:{dome.port}/onvif/ptz_service",
        "ptz_profile": "Profile_1",
        "ptz_preset": "gate",
        "ptz_username": PTZ_USER,
        "ptz_password_file": str(tmp_path / "ptz.password"),
    }
    rig = UplinkedPost(tmp_path, broker.host, broker.port, camera=camera)
    rig.start()
    yield rig
    rig.stop()


@pytest.fixture
def centre(post: UplinkedPost, tmp_path: Path) -> Centre:
    centre = post.centre(pictures=tmp_path / "pictures")
    post.wait_online(centre)
    return centre


def test_a_press_brings_the_alarm_picture_the_seconds_before_and_the_stream(
    post: UplinkedPost, centre: Centre, dome: FakeOnvifCamera
) -> None:
    centre.wait_for(lambda m: m.channel == "health", 10, since=0)  # the camera has been running a while
    post.bench.press()
    pressed = post.bench.wait_event(ev.PANIC)
    event = centre.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == pressed.seq, since=0).payload
    alarm = centre.wait_for(picture("alarm", event["id"]), since=0).payload  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(alarm.jpeg)).format == "JPEG"
    assert has_alarm_mark(alarm.jpeg)
    assert alarm.path is not None and alarm.path.read_bytes() == alarm.jpeg  # the viewer saved it
    centre.wait_for(picture("live"), since=0)  # type: ignore[arg-type]
    pre = [m.payload for m in centre.received if picture("pre", event["id"])(m)]  # type: ignore[operator]
    assert pre, "no pre-alarm pictures"
    assert all(unix(p.captured) < unix(event["pi_time"]) for p in pre)  # from before the press
    assert not any(has_alarm_mark(p.jpeg) for p in pre)
    request = dome.wait_for_request(5)  # the dome camera turned to the gate
    assert (request.profile, request.preset, request.username) == ("Profile_1", "gate", PTZ_USER)


def test_the_stream_stops_on_command_and_a_snapshot_comes_on_request(post: UplinkedPost, centre: Centre) -> None:
    result = centre.command(post.site, post.post, "stream", {"seconds": 30})
    assert result["status"] == "ok"
    centre.wait_for(picture("live"), since=0)  # type: ignore[arg-type]
    assert centre.command(post.site, post.post, "stream_stop")["status"] == "ok"
    stopped = len(centre.received)
    for _ in range(8):  # each snapshot waits for a fresh frame: together they outlast several stream frames
        mark = len(centre.received)
        assert centre.command(post.site, post.post, "snapshot")["status"] == "ok"
        snap = centre.wait_for(picture("snapshot"), since=mark).payload  # type: ignore[arg-type]
        assert not has_alarm_mark(snap.jpeg)  # no alarm: no mark
    later = [m for m in centre.received[stopped:] if picture("live")(m)]  # type: ignore[operator]
    assert len(later) <= 1  # at most a frame that was already on its way


def test_alarm_events_keep_their_latency_while_the_stream_runs_at_the_cap(post: UplinkedPost, centre: Centre) -> None:
    bench = post.bench
    bench.press()
    bench.wait_input("button", True)
    centre.wait_for(picture("live"), since=0)  # type: ignore[arg-type]
    latencies = []
    for _ in range(15):
        mark, inputs = len(centre.received), len(bench.inputs_seen)
        bench.release()
        bench.wait_input("button", False, since=inputs)
        inputs, logged = len(bench.inputs_seen), len(bench.logged)
        t = bench.press()
        seq = bench.wait_event(ev.PANIC, since=logged).seq
        got = centre.wait_for(lambda m, s=seq: m.channel == "events" and m.payload["seq"] == s, since=mark)
        latencies.append((got.received - t) * 1000)
        bench.wait_input("button", True, since=inputs)
    assert post.centre_seqs(centre) == sorted(set(post.board_seqs()) & set(post.centre_seqs(centre)))
    assert statistics.median(latencies) < 50 and max(latencies) < 250, latencies
    assert centre.viewer.counters.pictures > 5


def test_a_camera_that_cannot_start_costs_the_pictures_not_the_alarms(tmp_path: Path, broker: Mosquitto) -> None:
    require("micropython")
    rig = UplinkedPost(tmp_path, broker.host, broker.port, camera={"backend": "pi"})  # no picamera2 here
    rig.start()
    try:
        centre = rig.centre()
        rig.wait_online(centre)
        rig.bench.press()
        seq = rig.bench.wait_event(ev.PANIC).seq
        centre.wait_for(lambda m: m.channel == "events" and m.payload["seq"] == seq, since=0)
        assert "no pictures: the camera did not start" in rig.log_tail(100_000)
        assert centre.command(rig.site, rig.post, "snapshot")["status"] == "unavailable"
    finally:
        rig.stop()
