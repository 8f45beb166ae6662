"""Broker abuse: one post's stolen credentials against the shipped broker while other posts raise alarms.

The broker runs the shipped ``mosquitto.conf`` and ACL (TLS, persistence) with the
accounts of ``--victims`` posts and one attacker post.  The victims are whole posts
(sim board and edge daemon, each with its own accounts) whose buttons are pressed
``--presses`` times each while the attack goes on.  The centre's recorder (account
``centre``: records, confirms, takes no pictures) stays connected; a picture viewer
(account ``operator``, with a stored session) is away, so the broker queues every
picture for it.

The attacker holds everything the attacker post's SD card holds, its three
accounts' passwords, and:

1. ``takeover``: connects under each of its accounts asking for every victim's, the
   recorder's and the viewer's client id (today's and the old defaults), resuming a
   session, ``--takeover-rounds`` times;
2. ``flood``: publishes ``--pictures`` pictures of ``--picture-kb`` KB each on its own
   ``snapshots`` topic (its video account), as fast as the broker takes them;
3. ``junk``: publishes ``--junk`` events of ``--picture-kb`` KB on its own ``events``
   topic while the recorder is away for ``--away-s`` seconds, to fill the recorder's
   queue ahead of the victims' alarms.

Reported: ``victim_alarms`` (presses), ``victim_delivered`` (distinct presses in the
centre's record and confirmed at their post), ``victim_lost``, ``displaced`` (times
the broker closed a victim's, the recorder's or the viewer's connection for another
client), ``broker_rss_mb`` (the broker's peak resident memory, VmHWM),
``broker_rss_limit_mb``, ``flood_mb`` (what the broker took from the attacker).
Exits 1 when an alarm is lost, anyone is displaced, or the broker's peak memory is
over ``--rss-limit-mb``.

    python bench/broker_abuse.py [--victims 2] [--presses 10] [--pictures 300] [--picture-kb 1000]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alarmpost.events import PANIC
from edge_daemon.broker_accounts import post_accounts
from edge_daemon.centre import Centre
from hw_sim.certs import make_pki
from hw_sim.mosquitto import Mosquitto
from hw_sim.shipped_broker import password_of, shipped_broker
from hw_sim.uplinked import UplinkedPost, press_once

SITE = "school-1"
ATTACKER = f"{SITE}/gate-stolen"
DISPLACED = "already connected, closing old connection"  # mosquitto's log line when a client id is taken


class Attacker:
    """An MQTT 5 client under one of the stolen accounts; ``send`` waits for the broker's PUBACK."""

    def __init__(self, broker: Mosquitto, ca: Path, account: str, client_id: str, session: bool = False) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set(str(ca))
        self.client.username_pw_set(account, password_of(account))
        self.client.max_inflight_messages_set(32)
        self.session = session
        self.broker = broker
        self.refused = 0

    def __enter__(self) -> Attacker:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600 if self.session else 0
        self.client.connect("localhost", self.broker.port, 10, clean_start=not self.session, properties=properties)
        self.client.loop_start()
        return self

    def send(self, topic: str, payloads: int, size: int) -> int:
        """Publish ``payloads`` messages of ``size`` bytes at QoS 1; the bytes the broker acknowledged."""
        taken = 0
        body = b"\xff" * size
        for _ in range(payloads):
            info = self.client.publish(topic, body, qos=1)
            info.wait_for_publish(30)
            if info.is_published():
                taken += size
            else:
                self.refused += 1
        return taken

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_victim(folder: Path, broker: Mosquitto, ca: Path, name: str) -> UplinkedPost:
    daemon, video, _ = post_accounts(f"{SITE}/{name}")
    folder.mkdir()
    files = {}
    for account, file_name in ((daemon, "mqtt.password"), (video, "video.password")):
        files[file_name] = folder / file_name
        files[file_name].write_text(password_of(account) + "\n")
    post = UplinkedPost(
        folder,
        "localhost",
        broker.port,
        post=name,
        site=SITE,
        uplink={
            "tls": True,
            "ca_file": str(ca),
            "password_file": str(files["mqtt.password"]),
            "video_password_file": str(files["video.password"]),
        },
    )
    post.start()
    return post


def press_now_and_then(victims: list[UplinkedPost], presses: int, every_s: float) -> None:
    for _ in range(presses):
        for post in victims:
            press_once(post.bench)
        time.sleep(every_s)  # the presses spread over the attack (a load's pace, not a wait for a result)


def takeover(broker: Mosquitto, ca: Path, victims: list[UplinkedPost], rounds: int) -> None:
    ids = ["centre", "operator", "alarmpost-centre-watch-centre", "alarmpost-centre-watch-operator"]
    for post in victims:
        ids += [
            *post_accounts(f"{SITE}/{post.post}"),
            f"alarmpost-{SITE}-{post.post}",
            f"alarmpost-{SITE}-{post.post}-video",
        ]
    for _ in range(rounds):
        for account in post_accounts(ATTACKER):
            for wanted in ids:
                with Attacker(broker, ca, account, wanted, session=True):
                    pass


def recorder(broker: Mosquitto, ca: Path, keys: dict[tuple[str, str], bytes], record: Path) -> Centre:
    return Centre(
        "localhost",
        broker.port,
        keys,
        username="centre",
        password=password_of("centre"),
        ca_file=str(ca),
        client_id="centre",
        record=record,
        take_pictures=False,
    ).connect()


def viewer_goes_away(broker: Mosquitto, ca: Path) -> None:
    """The operator's picture viewer subscribes with a stored session, then leaves: the broker queues for it."""
    viewer = Centre(
        "localhost", broker.port, username="operator", password=password_of("operator"), ca_file=str(ca)
    ).connect()
    viewer.close()


def delivered(centres: list[Centre], post: UplinkedPost) -> set[int]:
    """The post's presses that reached the recorder, before or after it was away."""
    return {
        m.payload["seq"]
        for centre in centres
        for m in centre.events
        if m.payload["post"] == post.post and m.payload["source"] == "board" and m.payload["code"] == PANIC
    }


def pressed(post: UplinkedPost) -> set[int]:
    return {x.event.seq for x in post.bench.logged if x.event.code == PANIC}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pki = make_pki(folder / "pki")
        names = [f"gate-{index + 1}" for index in range(args.victims)]
        posts = [f"{SITE}/{name}" for name in names] + [ATTACKER]
        broker = shipped_broker(folder / "broker", pki, posts)
        with broker:
            baseline_mb = broker.memory_mb()
            victims = [start_victim(folder / name, broker, pki.ca, name) for name in names]
            try:
                keys = {(SITE, post.post): post.key for post in victims}
                centre = recorder(broker, pki.ca, keys, folder / "centre.db")
                for post in victims:
                    post.wait_online(centre, timeout=30)
                viewer_goes_away(broker, pki.ca)
                presses = threading.Thread(
                    target=press_now_and_then, args=(victims, args.presses, args.press_every_s), daemon=True
                )
                presses.start()
                takeover(broker, pki.ca, victims, args.takeover_rounds)
                size = args.picture_kb * 1000
                with Attacker(broker, pki.ca, f"{ATTACKER}/video", "pictures") as flood:
                    flood_bytes = flood.send(f"alarmpost/v1/{ATTACKER}/snapshots", args.pictures, size)
                centres = [centre]
                centre.close()  # the recorder away: junk events queue for it ahead of the victims' alarms
                with Attacker(broker, pki.ca, ATTACKER, "junk") as junk:
                    junk_bytes = junk.send(f"alarmpost/v1/{ATTACKER}/events", args.junk, size)
                time.sleep(args.away_s)  # the recorder's absence: the outage under test
                centre = recorder(broker, pki.ca, keys, folder / "centre.db")
                centres.append(centre)
                presses.join()
                lost: dict[str, list[int]] = {}
                deadline = time.monotonic() + args.deliver_timeout_s
                for post in victims:
                    unconfirmed = post.wait_confirmed(timeout=max(1.0, deadline - time.monotonic()))
                    missing = sorted(pressed(post) - delivered(centres, post))
                    if missing or set(unconfirmed) & pressed(post):
                        lost[post.post] = sorted(set(missing) | (set(unconfirmed) & pressed(post)))
                alarms = sum(len(pressed(post)) for post in victims)
                centre.close()
            finally:
                for post in victims:
                    post.stop()
            rss_mb = broker.memory_mb()
            displaced = broker.log_text().count(DISPLACED)
    victim_lost = sum(len(seqs) for seqs in lost.values())
    return {
        "benchmark": "broker_abuse",
        "victims": args.victims,
        "victim_alarms": alarms,
        "victim_delivered": alarms - victim_lost,
        "victim_lost": victim_lost,
        "lost_seqs": lost,
        "displaced": displaced,
        "broker_rss_mb": round(rss_mb, 1),
        "broker_rss_start_mb": round(baseline_mb, 1),
        "broker_rss_limit_mb": args.rss_limit_mb,
        "flood_mb": round(flood_bytes / 1e6, 1),
        "junk_mb": round(junk_bytes / 1e6, 1),
        "pictures_sent": args.pictures,
        "picture_kb": args.picture_kb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", type=int, default=2)
    parser.add_argument("--presses", type=int, default=10, help="presses per victim post")
    parser.add_argument("--press-every-s", type=float, default=1.0)
    parser.add_argument("--takeover-rounds", type=int, default=2)
    parser.add_argument("--pictures", type=int, default=300)
    parser.add_argument("--picture-kb", type=int, default=1000)
    parser.add_argument("--junk", type=int, default=100)
    parser.add_argument("--away-s", type=float, default=5.0)
    parser.add_argument("--deliver-timeout-s", type=float, default=120.0)
    parser.add_argument("--rss-limit-mb", type=float, default=80.0)
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result))
    bad = result["victim_lost"] or result["displaced"] or result["broker_rss_mb"] > args.rss_limit_mb
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
