"""A whole post on the bench with its uplink: board, edge daemon process, broker and a centre.

Used by the uplink tests, ``bench/press_to_centre.py`` and ``bench/uplink_faults.py``.
The board runs on the bench, the daemon is its own process (so it can be
killed for real) with ``[uplink]`` pointing at the broker the caller started,
and :class:`edge_daemon.centre.Centre` is the monitoring centre.

Example::

    post = UplinkedPost(tmp_path, "127.0.0.1", broker.port)
    post.start()
    centre = post.centre()
    post.bench.press()
    centre.wait_for(lambda m: m.channel == "events")
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alarmpost import events as ev
from edge_daemon import auth
from edge_daemon.centre import Centre
from hw_sim.bench import Bench, Logged
from hw_sim.linked import PiProcess, linked_bench, write_secret


class UplinkedPost:
    site = "school-1"
    keepalive_s = 5  # the broker sends the Last Will within 1.5 × this after the daemon vanishes

    def __init__(
        self,
        folder: Path,
        host: str,
        port: int,
        post: str = "post-1",
        uplink: dict[str, Any] | None = None,
        bench: Bench | None = None,
        site: str | None = None,
        camera: dict[str, Any] | None = None,
        selftest: dict[str, Any] | None = None,
    ) -> None:
        """``uplink``, ``camera`` and ``selftest`` add to or change the daemon's settings of those names."""
        self.folder = folder
        self.site = site or self.site
        self.host, self.port = host, port
        self.post = post
        self.key = bytes.fromhex(auth.new_key())
        key_file = folder / "command.key"
        write_secret(key_file, self.key.hex())
        settings: dict[str, Any] = {
            "enabled": True,
            "host": host,
            "port": port,
            "site": self.site,
            "tls": False,
            "command_key_file": str(key_file),
            "keepalive_s": self.keepalive_s,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
        }
        settings.update(uplink or {})
        # The rig installs the post as an installer would: the secrets it is given readable by
        # their owner only (the daemon refuses a secret that group or others may read).
        for secret in (
            settings.get("password_file"),
            settings.get("video_password_file"),
            settings.get("key_file"),
            (camera or {}).get("ptz_password_file"),
        ):
            if secret and Path(secret).is_file():
                Path(secret).chmod(0o600)
        toml = "\n[uplink]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in settings.items())
        if camera is not None:
            pictures = {"enabled": True, "backend": "sim", "width": 320, "height": 240, "fps": 10.0}
            pictures.update(camera)
            toml += "\n[camera]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in pictures.items())
        self.bench = bench if bench is not None else linked_bench(folder)
        assert self.bench.wire is not None
        self.pi = PiProcess(self.bench.wire.path, folder, board=post, extra=toml, selftest=selftest)
        self.centres: list[Centre] = []

    def start(self) -> None:
        self.pi.start()

    def centre(self, host: str | None = None, port: int | None = None, **options: Any) -> Centre:
        """A connected centre holding this post's key, recording (and so confirming) in its own file
        unless ``record=None`` is given (closed by :meth:`stop`)."""
        options.setdefault("username", None)
        options.setdefault("tls", False)
        options.setdefault("record", self.folder / f"centre{len(self.centres) + 1}.db")
        centre = Centre(host or self.host, port or self.port, keys={(self.site, self.post): self.key}, **options)
        centre.connect()
        self.centres.append(centre)
        return centre

    def wait_online(self, centre: Centre, timeout: float = 20.0) -> None:
        """Wait until the centre knows the post ``online`` (a retained ``online`` that came first counts)."""
        centre.wait_until(lambda: centre.availability.get((self.site, self.post)) == "online", timeout)

    def stop(self) -> None:
        for centre in self.centres:
            centre.close()
        self.pi.stop()
        self.bench.stop()

    # -- checking delivery --------------------------------------------------------------

    def board_seqs(self) -> list[int]:
        """Sequence numbers of every event the board raised."""
        return sorted({x.event.seq for x in self.bench.logged})

    @staticmethod
    def centre_seqs(centre: Centre, source: str = "board") -> list[int]:
        return sorted(m.payload["seq"] for m in centre.events if m.payload["source"] == source)

    def wait_delivered(self, centre: Centre, timeout: float = 60.0) -> list[int]:
        """Wait until the centre holds every event the board raised; the missing ones on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            missing = sorted(set(self.board_seqs()) - set(self.centre_seqs(centre)))
            if not missing:
                return []
            if time.monotonic() > deadline:
                return missing
            try:
                centre.wait_for(lambda m: m.channel == "events", min(1.0, max(0.01, deadline - time.monotonic())))
            except Exception:  # no event in the last second: look again (a replay may be on its way)
                pass

    def unconfirmed_seqs(self) -> list[int]:
        """The board's sequence numbers of events in the post's store that the centre has not confirmed."""
        with sqlite3.connect(f"file:{self.pi.db}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT seq FROM events WHERE source = 'board' AND uplinked_at IS NULL ORDER BY seq")
            return [row[0] for row in rows]

    def confirmed_at(self) -> dict[int, float]:
        """When the centre's receipt reached the post (unix time), by the board's sequence number."""
        with sqlite3.connect(f"file:{self.pi.db}?mode=ro", uri=True, timeout=5) as db:
            rows = db.execute("SELECT seq, uplinked_at FROM events WHERE source = 'board' AND uplinked_at IS NOT NULL")
            return {seq: at for seq, at in rows}

    def wait_confirmed(self, timeout: float = 60.0) -> list[int]:
        """Wait until every event the board raised is stored and confirmed by the centre at the post;
        the board's sequence numbers still unconfirmed (or never stored) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            confirmed = set(self.confirmed_at())
            left = sorted(set(self.board_seqs()) - confirmed)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)  # the daemon's store is another process's file: polled, as in linked.py

    def log_tail(self, chars: int = 3000) -> str:
        return (self.folder / f"daemon{self.pi.starts}.log").read_text()[-chars:]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def press_once(bench: Bench) -> tuple[float, Logged]:
    """Press the button and release it once the firmware saw it; (the press's first edge, its panic event).

    Each press raises a panic event: new on an idle post, a repeat while the alarm is latched.
    """
    mark, inputs = len(bench.logged), len(bench.inputs_seen)
    t_press = bench.press()
    seq = bench.wait_event(ev.PANIC, since=mark).seq
    logged = next(x for x in bench.logged[mark:] if x.event.seq == seq)
    bench.wait_input("button", True, since=inputs)
    inputs = len(bench.inputs_seen)
    bench.release()
    bench.wait_input("button", False, since=inputs)
    return t_press, logged


def press_burst(bench: Bench, presses: int) -> None:
    """Press and release the button ``presses`` times, as fast as the board takes it."""
    for _ in range(presses):
        press_once(bench)
