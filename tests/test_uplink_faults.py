"""The uplink under faults: broker killed mid-burst, daemon killed before PUBACK, network cut. Nothing is lost."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alarmpost import events as ev
from edge_daemon.centre import Centre
from hw_sim.mosquitto import Mosquitto
from hw_sim.netns import NetnsLink
from hw_sim.uplinked import UplinkedPost, press_burst

from .conftest import require, require_netns


def assert_all_delivered_once(post: UplinkedPost, centre: Centre) -> None:
    missing = post.wait_delivered(centre, timeout=60)
    assert missing == [], f"events never reached the centre: {missing}\n{post.log_tail()}"
    seqs = post.centre_seqs(centre)
    assert len(seqs) == len(set(seqs)), "one board event arrived under two ids, or was passed on twice"
    assert sorted(seqs) == post.board_seqs()  # every copy beyond the first was among the ones dropped
    assert post.wait_confirmed(timeout=30) == [], "the centre's receipts did not reach the post"


def uplinked_rows(db: Path) -> list[tuple[int, float | None]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute("SELECT seq, uplinked_at FROM events WHERE source = 'board' ORDER BY id").fetchall()


def wait_for_log(post: UplinkedPost, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in post.log_tail(1_000_000):
        assert time.monotonic() < deadline, f"the daemon never logged {text!r}:\n{post.log_tail()}"
        time.sleep(0.05)  # polling another process's log file


@pytest.fixture
def post(tmp_path: Path, broker: Mosquitto) -> Iterator[UplinkedPost]:
    require("micropython")
    rig = UplinkedPost(tmp_path, broker.host, broker.port)
    rig.start()
    yield rig
    rig.stop()


def test_broker_killed_and_restarted_during_a_burst_of_presses(post: UplinkedPost, broker: Mosquitto) -> None:
    centre = post.centre()
    post.wait_online(centre)
    burst = threading.Thread(target=press_burst, args=(post.bench, 40))
    burst.start()
    centre.wait_for(lambda m: m.channel == "events" and m.payload["code"] == ev.PANIC, since=0)
    broker.kill()  # presses go on while the broker is gone
    post.bench.wait_for(lambda: len(post.bench.events(ev.PANIC)) >= 15, 20, "presses while the broker is down")
    broker.start()
    burst.join()
    assert_all_delivered_once(post, centre)
    assert len(post.bench.events(ev.PANIC)) == 40


def test_daemon_killed_between_store_and_puback(post: UplinkedPost, broker: Mosquitto, tmp_path: Path) -> None:
    centre = post.centre()
    post.wait_online(centre)
    broker.pause()  # the broker takes nothing more: no PUBACK will come
    post.bench.press()
    pressed = post.bench.wait_event(ev.PANIC)
    post.pi.wait_stored([pressed.seq])
    assert (pressed.seq, None) in uplinked_rows(post.pi.db)  # stored, not yet acknowledged by the broker
    post.pi.kill()
    broker.resume()
    mark = len(centre.received)
    post.pi.start()
    assert_all_delivered_once(post, centre)
    arrived = centre.received[mark:]
    first_event = next(i for i, m in enumerate(arrived) if m.channel == "events" and m.payload["seq"] == pressed.seq)
    first_state = next(i for i, m in enumerate(arrived) if m.channel == "state" and not m.retained)
    assert first_state < first_event  # the post's state now comes first, then its backlog
    assert arrived[first_state].payload["alarm"] in ("alarm", "unknown")  # unknown until the board is heard
    centre.wait_for(lambda m: m.channel == "state" and m.payload["alarm"] == "alarm", since=mark)
    post.bench.wait_for(
        lambda: all(at is not None for _, at in uplinked_rows(post.pi.db)), 10, "the store to record the delivery"
    )


def test_network_cut_between_post_and_broker(tmp_path: Path) -> None:
    require("mosquitto")
    require("micropython")
    require_netns()
    with NetnsLink() as link, Mosquitto(tmp_path / "broker", host=link.inner_ip, netns=link.name) as broker:
        post = UplinkedPost(tmp_path, broker.host, broker.port)
        post.start()
        try:
            centre = post.centre()
            post.wait_online(centre)
            press_burst(post.bench, 3)
            link.cut()
            before = set(post.board_seqs())
            press_burst(post.bench, 10)
            wait_for_log(post, "disconnected from the broker", 6 * post.keepalive_s)  # the keepalive noticed
            raised_in_cut = set(post.board_seqs()) - before
            assert not raised_in_cut & set(post.centre_seqs(centre))  # nothing crossed the cut
            link.restore()
            press_burst(post.bench, 3)
            assert_all_delivered_once(post, centre)
        finally:
            post.stop()
