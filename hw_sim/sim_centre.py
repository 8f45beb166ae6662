"""The monitoring centre beside the sim post: its own broker on loopback and a reference centre.

``make sim`` (:mod:`hw_sim.console`) needs nothing from outside: :class:`SimBroker`
runs mosquitto (which ``make install`` installs) in the sim's folder, on a free
loopback port, and can stop it and start it again on the same port.  :class:`SimCentre` writes a fresh command key,
gives the sim's edge daemon its ``[uplink]`` settings, connects a reference
:class:`~edge_daemon.centre.Centre` holding the post's key, sends signed commands
from a worker thread (the screen never waits on the network) and describes what
the centre sees: the post's availability and retained state, the events as they
arrive, and the counts of duplicates and contract violations.

Example::

    centre = SimCentre(folder)
    centre.start_broker()
    uplink = centre.uplink_settings()     # the daemon's [uplink] table
    centre.connect("post-1")
    print(centre.submit("acknowledge", "acknowledge").result())
    centre.close()
    centre.stop_broker()
"""

from __future__ import annotations

import bisect
import json
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from alarmpost import events as ev
from alarmpost.patterns import LATCHED
from edge_daemon import auth
from edge_daemon.centre import Centre, CentreError, Message
from edge_daemon.commands import BOARD_STATUSES
from edge_daemon.viewer import Picture
from hw_sim.linked import write_secret
from hw_sim.mosquitto import BrokerError, Mosquitto
from hw_sim.paths import tool

HOST = "127.0.0.1"
SITE = "sim-school"
OPERATOR = "sim console"  # who the post's audit says sent the commands
COMMAND_TIMEOUT_S = 5.0  # the post waits up to 3 s for the board, then answers
BOARD_CODES = {word: code for code, word in BOARD_STATUSES.items()}  # "ok" -> 0: as the Pi's link shows them

Segment = tuple[str, str]  # (style, text), as in hw_sim.console
Row = list[Segment]


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class SimBroker:
    """mosquitto on loopback, in the sim's folder; stopped and started again on the same port."""

    kind = "mosquitto"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self._mosquitto: Mosquitto | None = None

    def start(self) -> None:
        tool("mosquitto")  # MissingTool, naming the package, when it is not installed
        broker = Mosquitto(self.folder / "mosquitto")
        broker.start()
        self._mosquitto, self.port = broker, broker.port

    @property
    def running(self) -> bool:
        return self._mosquitto is not None and self._mosquitto.running

    def stop(self) -> None:
        if self._mosquitto is not None:
            self._mosquitto.stop()

    def toggle(self) -> str:
        """Stop the broker if it runs, else start it again on the same port; what happened, in words."""
        try:
            if self.running:
                self.stop()
                return f"stopped the {self.kind} broker: the post's events wait in its outbox"
            if self._mosquitto is None:
                self.start()
            else:
                self._mosquitto.start()
        except (BrokerError, OSError, RuntimeError) as exc:
            return f"the {self.kind} broker on port {self.port} cannot start again: {first_line(exc)}"
        return f"started the {self.kind} broker again on port {self.port}: the post's outbox drains"

    def text(self) -> str:
        state = "running" if self.running else "STOPPED"
        return f"{self.kind} {HOST}:{self.port} {state}"


class SimCentre:
    """The broker, the command key and a reference centre for the sim's post; see the module docstring."""

    def __init__(self, folder: Path, pictures: Path | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.pictures = pictures or folder / "pictures"  # where the centre's viewer saves what arrives
        self._shown_pictures = 0
        self.broker = SimBroker(folder)
        self.key_file = folder / "command.key"
        write_secret(self.key_file, auth.new_key() + "\n")
        self.key_file.chmod(0o600)
        self.post = ""
        self.centre: Centre | None = None
        self.last_command = "nothing yet"
        self.status_data: Any = None  # the board's answer to the latest status command
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="centre-command")
        self._mark = 0  # the post must say online in centre.received from here on
        self._shown_events = 0
        self._shown_invalid = 0

    # starting and stopping

    def start_broker(self) -> None:
        self.broker.start()

    def uplink_settings(self) -> dict[str, Any]:
        """The daemon's ``[uplink]`` table: this broker, plain MQTT, short keepalive and reconnect."""
        return {
            "enabled": True,
            "host": HOST,
            "port": self.broker.port,
            "site": SITE,
            "tls": False,
            "command_key_file": str(self.key_file),
            "keepalive_s": 5,
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 2.0,
        }

    def camera_settings(self) -> dict[str, Any]:
        """The daemon's ``[camera]`` table: the bench's camera, small pictures, a modest stream."""
        return {
            "enabled": True,
            "backend": "sim",
            "width": 320,
            "height": 240,
            "fps": 5.0,
            "pre_alarm_s": 3.0,
            "stream_fps": 2.0,
            "stream_kbps": 500,
        }

    def connect(self, post: str) -> None:
        """Connect the centre, holding ``post``'s command key; CentreError if the broker does not answer."""
        key = auth.load_key(self.key_file)
        centre = Centre(
            HOST,
            self.broker.port,
            keys={(SITE, post): key},
            username=None,
            tls=False,
            clean=True,
            pictures=self.pictures,
            record=self.broker.folder / "centre-record.db",  # the centre records, then confirms to the post
        )
        centre.client.reconnect_delay_set(1, 2)  # back soon after the m key starts the broker again
        self.centre, self.post = centre.connect(), post

    def close(self) -> None:
        """Wait for a command in flight (it times out), then disconnect the centre."""
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self.centre is not None:
            self.centre.close()

    def stop_broker(self) -> None:
        self.broker.stop()

    def toggle_broker(self) -> str:
        self.expect_online()
        return self.broker.toggle()

    # commands

    @property
    def connected(self) -> bool:
        return self.centre is not None and self.centre.client.is_connected()

    def why_not(self) -> str | None:
        """Why a command cannot go through the centre now, or None."""
        if not self.broker.running:
            return "the broker is down"
        if not self.connected:
            return "the centre is not connected to the broker yet"
        return None

    def submit(self, label: str, command: str) -> Future[str]:
        """Send a signed command from the worker thread; the future's result is the answer in words."""
        return self._worker.submit(self._command, label, command)

    def _command(self, label: str, command: str) -> str:
        assert self.centre is not None
        began = time.monotonic()
        try:
            result = self.centre.send(SITE, self.post, command, operator=OPERATOR, timeout=COMMAND_TIMEOUT_S)
        except CentreError as exc:
            self.last_command = f"{label}: {exc} (through the centre)"
            return self.last_command
        assert result is not None
        if command == "status" and result["status"] == "ok":
            self.status_data = result.get("data")
        self.last_command = result_text(label, result, time.monotonic() - began)
        return self.last_command

    # what the centre sees

    def expect_online(self) -> None:
        """The daemon or the broker restarts: the post is ready for commands once it says online again."""
        if self.centre is not None:
            self._mark = len(self.centre.received)

    def waiting_for(self, daemon_running: bool, stored: list[int]) -> str | None:
        """What the centre still lacks while the broker runs, or None: its connection, the post saying
        online (again), or some of the events numbered ``stored`` (those in the post's store)."""
        if not self.broker.running or self.centre is None:
            return None
        if not self.connected:
            return "its connection to the broker"
        if not daemon_running:
            return None
        said = [m.payload for m in self.centre.received[self._mark :] if _about(m, "availability", self.post)]
        if not said or said[-1] != "online":
            return "the post to say online"
        arrived = {m.payload["n"] for m in self.centre.events if m.post == self.post}
        missing = [n for n in stored if n not in arrived]
        return f"events {', '.join(f'#{n}' for n in missing[:5])} from the post" if missing else None

    def availability(self) -> str:
        if self.centre is None:
            return "-"
        return self.centre.availability.get((SITE, self.post), "-")

    def state(self) -> dict[str, Any] | None:
        return None if self.centre is None else self.centre.states.get((SITE, self.post))

    def state_text(self) -> str:
        state = self.state()
        return "-" if state is None else f"alarm {state['alarm']}, link {state['link']}"

    def facts(self) -> dict[str, str]:
        """What the centre knows, by name; the plain log prints each change (not the backlog's)."""
        return {
            "centre broker": self.broker.text(),
            "centre availability": self.availability(),
            "centre state": self.state_text(),
        }

    def new_lines(self, presses: list[float]) -> list[tuple[float, str]]:
        """(time, text) of each event that arrived and each contract violation since the last call."""
        if self.centre is None:
            return []
        events = self.centre.events[self._shown_events :]
        self._shown_events += len(events)
        lines = [(m.received, "centre event " + event_text(m, presses)) for m in events]
        lines += self._picture_lines()
        invalid = self.centre.invalid[self._shown_invalid :]
        self._shown_invalid += len(invalid)
        now = time.monotonic()
        return lines + [(now, f"centre contract violation: {text}") for text in invalid]

    def picture_list(self) -> list[Picture]:
        if self.centre is None:
            return []
        return [m.payload for m in self.centre.received if isinstance(m.payload, Picture)]

    def _picture_lines(self) -> list[tuple[float, str]]:
        """A line per alarm, pre-alarm or asked picture (the stream's frames are only counted)."""
        assert self.centre is not None
        arrived = [m for m in self.centre.received if isinstance(m.payload, Picture)]
        new, self._shown_pictures = arrived[self._shown_pictures :], len(arrived)
        return [(m.received, "centre picture " + picture_text(m.payload)) for m in new if m.payload.kind != "live"]

    def pictures_text(self) -> str:
        kinds = Counter(p.kind for p in self.picture_list())
        if not kinds:
            return f"none yet (saved in {self.pictures})"
        counts = ", ".join(f"{kinds[k]} {k}" for k in ("alarm", "pre", "snapshot", "live") if kinds[k])
        return f"{counts}; saved in {self.pictures}"


def picture_text(picture: Picture) -> str:
    mark = " with the alarm mark" if picture.kind == "alarm" else ""
    where = f", saved as {picture.path.name}" if picture.path is not None else ""
    return f"{picture.kind} #{picture.seq}{mark}, {picture.size // 1024} KB{where}"


def _about(message: Message, channel: str, post: str) -> bool:
    return message.channel == channel and message.site == SITE and message.post == post


def result_text(label: str, result: dict[str, Any], took: float) -> str:
    """A command's result in words, e.g. ``acknowledge: ok (0) through the centre in 21 ms: ...``."""
    status = result["status"]
    code = BOARD_CODES.get(status)
    head = f"{label}: {status}" + (f" ({code})" if code is not None else "")
    text = f"{head} through the centre in {took * 1000:.0f} ms: {result['detail']}"
    if result.get("data") is not None:
        text += " " + json.dumps(result["data"], separators=(",", ":"))
    return text


def press_latency(message: Message, presses: list[float]) -> float | None:
    """Seconds from the latest button press to a panic's arrival at the centre, or None."""
    payload = message.payload
    if payload["code"] != ev.PANIC or payload["qualifier"] != "new":
        return None
    index = bisect.bisect_right(presses, message.received)
    return message.received - presses[index - 1] if index else None


def event_text(message: Message, presses: list[float]) -> str:
    """``#3 1120 01 001 panic, button (press to centre 31 ms)``."""
    payload = message.payload
    text = f"#{payload['n']} {payload['contact_id']} {payload['text']}"
    latency = press_latency(message, presses)
    return text + ("" if latency is None else f" (press to centre {_duration(latency)})")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


# -- the screen's centre section -----------------------------------------------------------

CENTRE_HEADER = "    n  contact id   event"


def _output(value: Any) -> str:
    return "?" if value is None else "on" if value else "off"


def _state_row(centre: SimCentre, uplink: str) -> Row:
    state = centre.state()
    if state is None:
        return [("dim", "state (none retained yet)"), ("", f"   Pi's uplink: {uplink}")]
    outputs, alarm = state["outputs"], state["alarm"]
    return [
        ("", "state "),
        ("alert" if alarm in LATCHED else "", f"{alarm.upper():<13}"),
        ("alert" if state["link"] != "up" else "", f"link {state['link']:<8}"),
        ("", f"siren {_output(outputs['siren']):<4} strobe {_output(outputs['strobe']):<4}"),
        ("", f"unconfirmed {state['events']['unconfirmed']:<4}  Pi's uplink: {uplink}"),
    ]


def _status_text(data: Any) -> str:
    if isinstance(data, dict):
        return "  ".join(f"{key} {json.dumps(value)}" for key, value in data.items())
    return "-" if data is None else json.dumps(data)


def centre_rows(centre: SimCentre, uplink: str) -> list[Row]:
    """The centre's fixed rows: broker and availability, retained state, counts, last command, status."""
    c = centre.centre
    available = centre.availability()
    counts = "-" if c is None else f"{len(c.events)}  duplicates dropped {c.duplicates}"
    violations = 0 if c is None else len(c.invalid)
    link = "connected" if centre.connected else "NOT CONNECTED"
    return [
        [("title", "CENTRE  "), ("", "broker "), ("" if centre.broker.running else "alert", centre.broker.text())]
        + [("", f"   post {SITE}/{centre.post} "), ("" if available == "online" else "alert", available.upper())]
        + [("", "   centre "), ("" if centre.connected else "alert", link)],
        _state_row(centre, uplink),
        [("", f"events received {counts}  contract violations "), ("alert" if violations else "", str(violations))],
        [("", f"pictures {centre.pictures_text()}")],
        [("", f"command {centre.last_command}")],
        [("", f"status  {_status_text(centre.status_data)}")],
    ]


def centre_events(centre: SimCentre, presses: list[float], rows: int) -> list[Row]:
    """The newest events at the centre, under a header, in ``rows`` rows."""
    events = centre.centre.events if centre.centre is not None else []
    recent = events[-rows:] if rows > 0 else []
    lines: list[Row] = [[("title", f"{CENTRE_HEADER:<52}at the centre: {len(events)}")]]
    lines += [[("", "  " + _event_row(m, presses))] for m in recent]
    return lines if recent else lines + [[("dim", "      (none yet)")]]


def _event_row(message: Message, presses: list[float]) -> str:
    payload = message.payload
    latency = press_latency(message, presses)
    after = "" if latency is None else f"press to centre {_duration(latency)}"
    return f"{payload['n']:>3}  {payload['contact_id']:<11}  {payload['text']:<34}{after}"
