"""Press to snapshot: the time from a press to the first whole alarm picture at the centre, and what
the live stream costs alarm events.

The whole path is real: the board's firmware on the bench, the UART wire, the
edge daemon process with the bench's camera (real JPEG frames at ``--size`` and
``--fps``), a real mosquitto on loopback and the reference centre, which puts
each picture together from its pieces and checks its SHA-256.

Each cycle presses the button and waits for the alarm picture (the first frame
captured after the press, with the alarm mark); while the pre-alarm pictures and
then the live stream flow at the bandwidth cap (``--kbps``: 1 Mbit/s by default,
less than the 640x480 stream at 10 frames a second would take), it presses the
button ``--repeats`` more times and times each repeat press's event from press to
centre.  The key switch then resets the post, which ends the stream.

``p50_ms``/``p99_ms``: press → first complete alarm picture at the subscriber.
``event_p99_ms_during_stream``: press → event at the subscriber while streaming.

    python bench/press_to_snapshot.py [--presses 20]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from alarmpost import events as ev
from edge_daemon.centre import Centre, CentreError, Message
from edge_daemon.viewer import Picture
from hw_sim.mosquitto import Mosquitto
from hw_sim.uplinked import UplinkedPost, press_once

GAP_S = 0.4  # between the timed presses, so they spread over a couple of seconds of pictures
RATES: list[float] = []  # kbit/s of pictures arriving while the repeat presses were timed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def is_event(seq: int) -> object:
    return lambda m: m.channel == "events" and m.payload["seq"] == seq and m.payload["source"] == "board"


def press(post: UplinkedPost) -> tuple[float, int]:
    """Press (and release) the button; (time of the first edge, the event's board seq)."""
    t_press, logged = press_once(post.bench)
    return t_press, logged.event.seq


def cycle(post: UplinkedPost, centre: Centre, repeats: int) -> tuple[float | None, list[float], int]:
    """One press and its alarm picture, then repeat presses while the pictures flow at the cap.

    Returns (alarm picture ms or None if it never came, event ms of the repeats, events lost).
    """
    since = len(centre.received)
    t_press, seq = press(post)
    snapshot_ms: float | None = None
    try:
        event = centre.wait_for(is_event(seq), 10, since=since)  # type: ignore[arg-type]
        picture = centre.wait_for(
            lambda m: (
                isinstance(m.payload, Picture) and m.payload.kind == "alarm" and m.payload.alarm == event.payload["id"]
            ),
            10,
            since=since,
        )
        snapshot_ms = (picture.received - t_press) * 1000
    except CentreError:
        pass
    events, lost = [], 0
    window_start, first = time.monotonic(), len(centre.received)
    for _ in range(repeats):  # the pre-alarm pictures, then the live stream, are on their way meanwhile
        time.sleep(GAP_S)  # spread the presses over the stream (pacing the load, not waiting for a result)
        mark = len(centre.received)
        t, seq = press(post)
        try:
            got: Message = centre.wait_for(is_event(seq), 10, since=mark)  # type: ignore[arg-type]
            events.append((got.received - t) * 1000)
        except CentreError:
            lost += 1
    window = time.monotonic() - window_start
    pictures = [m.payload for m in centre.received[first:] if isinstance(m.payload, Picture)]
    RATES.append(sum(p.size for p in pictures) * 8 / 1000 / window)
    mark = len(post.bench.logged)
    post.bench.turn_key(hold_s=0.08)
    post.bench.wait_event(ev.PANIC_RESET, since=mark)
    return snapshot_ms, events, lost


def run(presses: int, repeats: int, size: tuple[int, int], fps: float, kbps: int) -> dict[str, object]:
    snapshots: list[float] = []
    events: list[float] = []
    lost = missing_pictures = 0
    camera = {"width": size[0], "height": size[1], "fps": fps, "stream_fps": fps, "stream_kbps": kbps}
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        post = UplinkedPost(Path(tmp), "127.0.0.1", broker.port, camera=camera)
        post.start()
        try:
            centre = post.centre()
            post.wait_online(centre)
            for _ in range(presses):
                snapshot_ms, latencies, lost_here = cycle(post, centre, repeats)
                if snapshot_ms is None:
                    missing_pictures += 1
                else:
                    snapshots.append(snapshot_ms)
                events.extend(latencies)
                lost += lost_here
            viewer = centre.viewer.counters
        finally:
            post.stop()
    return {
        "benchmark": "press_to_snapshot",
        "presses": presses,
        "p50_ms": round(statistics.median(snapshots), 1),
        "p99_ms": round(percentile(snapshots, 0.99), 1),
        "max_ms": round(max(snapshots), 1),
        "missing_pictures": missing_pictures,
        "event_presses_during_stream": len(events) + lost,
        "event_p50_ms_during_stream": round(statistics.median(events), 2),
        "event_p99_ms_during_stream": round(percentile(events, 0.99), 2),
        "events_lost": lost,
        "picture_kbps_during_events": round(statistics.median(RATES)),
        "pictures": viewer.pictures,
        "pictures_dropped": viewer.corrupt + viewer.incomplete,
        "frame_size": f"{size[0]}x{size[1]}",
        "stream_kbps_cap": kbps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="event presses timed during each stream")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--kbps", type=int, default=1000, help="the pictures' bandwidth cap")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    print(json.dumps(run(args.presses, args.repeats, (width, height), args.fps, args.kbps)))


if __name__ == "__main__":
    main()
