"""The whole post on the simulated bench, live: what a person at the school gate would see and hear.

``make sim`` runs ``python -m hw_sim.console``.  It starts a :class:`~hw_sim.bench.Bench`
running the real firmware and shows the strobe, the siren (with its tone), the
status LED, the alarm line, the alarm state the firmware reports, the supply
voltage, the boot count and the latest events.

Beside the board runs the Raspberry Pi's real edge daemon
(:class:`edge_daemon.service.Daemon`) in a background thread, exactly as on a
post: its serial port is the Pi's end of the bench's UART wire (a pty), its
GPIO is gpiozero mock pins wired to the board's alarm line and reset input
(:class:`~hw_sim.pi_wiring.PiWiring`), its store is an SQLite file and its text
log a file, both in a temporary folder that is removed on exit.  The screen
shows the link as the Pi sees it (up, down or not yet), the board's hello
(firmware version, board boot), the board state from its heartbeats, the
link's counters, the alarm line as the Pi's GPIO reads it and the events in
the Pi's store (read through a read-only connection of the console's own).

The daemon's uplink reaches a monitoring centre, all on loopback and needing
nothing from outside (:mod:`hw_sim.sim_centre`): the console starts its own
broker (mosquitto, on a free loopback port), writes a fresh command key, and connects a reference
:class:`~edge_daemon.centre.Centre` holding the post's key.  The screen's centre
section shows the broker, the post's availability and retained state as the
centre sees them, the events as they arrive (with the press-to-centre latency of
a panic) and the counts of events, duplicates dropped and contract violations.
The operator's commands go through the centre as signed MQTT commands; only
while the broker is down do they go straight over the Pi's link, and the result
says so.  The daemon also runs the bench's camera (:class:`hw_sim.camera.SimCamera`,
320x240 at 5 frames a second): on a press the centre gets the alarm picture
(with its red alarm mark), the pictures from the 3 s before, and the live stream
until the reset; the plain log prints a ``centre picture`` line for each picture
but the stream's, and the screen counts them and says where they are saved
(``--pictures DIR`` keeps them after the sim ends).

Keys:

====  ==================================================================
b     press the button (with contact bounce); ``b`` again releases it
k     turn the reset key switch and let it spring back
t     open the tamper loop; ``t`` again closes it
s     supply voltage 13.8 V -> 12.6 V (AC lost) -> 11.0 V (low battery) -> 13.8 V
g     a 1 ms glitch on the button line (must raise nothing)
w     hang the CPU: the bench's watchdog then resets the board
p     cut the power and power on again
u     cut the UART wire between the board and the Pi; ``u`` again mends it
n     noise on the UART wire: bit error rate 1e-3; ``n`` again turns it off
a     the centre sends the post an acknowledge command (shows the result: ok, refused...)
x     the centre sends a silence command
o     the centre sends an operator reset command
c     the centre asks the post for the board's status (shown in the centre section)
m     stop the broker; ``m`` again starts it on the same port (watch the backlog grow and drain)
d     stop the Pi's daemon and start a new one on the same store and port
q     quit
====  ==================================================================

In a terminal the screen is drawn with curses; on a short terminal the event
lists shrink and blank lines go first.  When stdin or stdout is not a
terminal (CI, a pipe) or with ``--plain``, it prints one line per change and reads
commands line by line from stdin: the same letters and Enter (several per line
split by commas or spaces, ``wait:SECONDS`` pauses, an empty line prints the
status); end of input quits.  The Pi's side is in lines starting with ``pi``
(``pi link: not yet -> up``, ``pi stored #3 ...`` for each event its store
takes), the centre's in lines starting with ``centre`` (``centre event #3 1120 01 001
panic, button (press to centre 25 ms)`` for each event arriving, and changes of the
broker, the post's availability, its alarm state and link).  ``--script "b,wait:0.5,b,k"``
runs keys headless, then prints the final status and exits 0.  Before each key,
typed or scripted, the console waits for the board to be up, for a freshly
started daemon to hear from it and, while the broker runs, for the centre to hear
the post say online (again) and to hold every event in the Pi's store; in plain
mode a command through the centre waits for its result::

    python -m hw_sim.console --board rpi_pico --config fast.json
    python -m hw_sim.console --script "b,wait:0.3,b,wait:0.3,k,wait:0.5,q"
    python -m hw_sim.console --script "b,wait:1,a,x,o,wait:0.5"
    python -m hw_sim.console --script "m,b,wait:0.5,b,m,c"
    echo q | python -m hw_sim.console

Without ``--config`` the firmware's defaults apply: the siren stops after 180 s,
the watchdog bites after 5 s, a supply change counts after 5 s, the link is
lost after 2.5 s of silence (the daemon's defaults match).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import curses
import functools
import itertools
import json
import logging
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from gpiozero import GPIOZeroError

from alarmpost import codec
from alarmpost import events as ev
from alarmpost.eventnames import RESET_CAUSES, ZONE_NAMES, describe
from alarmpost.patterns import LATCHED
from edge_daemon import logs
from edge_daemon.centre import CentreError
from edge_daemon.config import Config, check_data
from edge_daemon.service import Daemon
from edge_daemon.store import COLUMNS, StoredEvent
from hw_sim.bench import OUTPUTS, Bench, BenchError, Logged
from hw_sim.camera import add_sim_backend
from hw_sim.mosquitto import BrokerError
from hw_sim.paths import MissingTool
from hw_sim.pi_wiring import PiWiring
from hw_sim.sim_centre import COMMAND_TIMEOUT_S, SimCentre, centre_events, centre_rows
from hw_sim.sim_portal import SimPortal
from hw_sim.timeline import Change
from tools.boards import SettingsError

STARTING = "starting the board"
REFRESH_S = 0.05  # the display polls the bench 20 times a second
BOOT_WAIT_S = 10.0  # how long typed and scripted keys wait for the board to come up and the Pi to hear it
SUPPLY_STEPS = (13.8, 12.6, 11.0)
EVENT_ROWS = 12
STORE_ROWS = 6  # the newest events in the Pi's store
CENTRE_ROWS = 4  # the newest events at the centre
KEYS = "bktsgwpunaxocmdq"
HELP = "b button  k key  t tamper  s supply  g glitch  w hang  p power cycle  q quit"
HELP_PI = "u wire  n noise  d restart daemon"
HELP_CENTRE = "centre: a acknowledge  x silence  o operator reset  c status  m broker stop/start"
ALL_KEYS = f"{HELP}  {HELP_PI}  {HELP_CENTRE}"
NOISE_BIT_ERROR_RATE = 1e-3
COMMAND_LINK_S = 2.0  # the link sends a command (and resends it) for this long
COMMAND_WAIT_S = 3.0  # and the console waits a little longer for the link's answer or its TimeoutError
DAEMON_WAIT_S = 10.0  # for the daemon's thread to open its store and port, or to stop
# The operator's commands by key: (the link's command code, the centre's command, name)
COMMANDS = {
    "a": (codec.CMD_ACKNOWLEDGE, "acknowledge", "acknowledge"),
    "x": (codec.CMD_SILENCE, "silence", "silence"),
    "o": (codec.CMD_RESET, "reset", "operator reset"),
    "c": (codec.CMD_STATUS, "status", "status"),
}
LONG_FACTS = {"pi counters"}  # the plain log prints only the new value
STATUS_WORDS = {
    codec.OK: "ok",
    codec.REFUSED: "refused",
    codec.BAD_ARGS: "bad arguments",
    codec.UNKNOWN_COMMAND: "unknown command",
    codec.FAILED: "failed",
}
LABELS = {"strobe": "strobe", "siren": "siren", "status_led": "status LED", "alarm_line": "alarm line"}
# How each output looks: (steadily on, flashing, off)
WORDS = {
    "strobe": ("on", "flashing", "off"),
    "siren": ("sounding", "beeping", "silent"),
    "status_led": ("on", "blinking", "off"),
    "alarm_line": ("active", "pulsing", "inactive"),
}
NOTES = {
    ("power", True): "power on",
    ("power", False): "power off",
    ("watchdog", True): "the watchdog expired: the bench resets the board",
}
PRESS_KINDS = {
    ev.PRESS_FIRST: "first press",
    ev.PRESS_REPEAT: "pressed again",
    ev.PRESS_LONG: "long press",
    ev.PRESS_AT_BOOT: "held at boot",
}

Segment = tuple[str, str]  # (style, text); styles: "", "title", "lit", "alert", "dim"
Row = list[Segment]


# -- following the outputs -----------------------------------------------------------


@dataclass
class Lamp:
    """One output as a person sees or hears it: on now, and whether it is flashing."""

    words: tuple[str, str, str]  # steadily on, flashing, off
    on: bool = False
    since: float = 0.0
    freq: int | None = None
    glimpse: bool = False  # on at the last poll, or flashed since the one before
    flashed: bool = False
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=4))
    pulses: deque[float] = field(default_factory=lambda: deque(maxlen=4))

    def update(self, change: Change) -> None:
        if change.freq is not None:
            self.freq = change.freq
        if change.on == self.on:
            return
        if change.on:
            self.starts.append(change.t)
            self.flashed = True
        else:
            self.pulses.append(change.t - self.since)
        self.on, self.since = change.on, change.t

    def catch_up(self) -> None:
        """Called once per poll: keep a flash shorter than a poll visible for one frame."""
        self.glimpse = self.on or self.flashed
        self.flashed = False

    def _period(self) -> float:
        gaps = [b - a for a, b in itertools.pairwise(self.starts)]
        return min(max(gaps, default=0.0), 12.0)  # no pattern is slower than one flash in 10 s

    def look(self, now: float) -> str:
        """In words: steadily on, flashing (any blink, beep or chirp pattern) or off."""
        steady, flashing, off = self.words
        period = self._period()
        window = max(1.0, 1.5 * period + 0.2) if period else 2.5  # a lone flash: the next may be 2 s away
        recent = [t for t in self.starts if now - t < window]
        if self.on:
            held = now - self.since > max(0.6, 1.5 * max(self.pulses, default=0.0))
            return flashing if len(recent) >= 2 and not held else steady
        was_steady = bool(self.pulses) and self.pulses[-1] > 0.6
        return flashing if recent and not was_steady else off


# -- event words ----------------------------------------------------------------------


def detail(event: Any) -> str:
    """What an event's value means, in words, or ''."""
    code, zone, value = event.code, event.zone, event.value
    if code == ev.SYSTEM_RESET:
        return str(RESET_CAUSES.get(value, f"reset cause {value}"))
    if code in (ev.PANIC, ev.DURESS, ev.SILENT_PANIC):
        return str(PRESS_KINDS.get(value, ""))
    if code == ev.PANIC_RESET:
        return f"{value} press{'es' if value != 1 else ''}"
    if zone == ev.ZONE_SUPPLY:
        return f"{value / 100:.2f} V"
    if code == ev.SYSTEM_TROUBLE and zone == ev.ZONE_BUTTON and value == ev.TROUBLE_STUCK_BUTTON:
        return "button stuck"
    if code == ev.SYSTEM_TROUBLE and zone == ev.ZONE_CONFIG:
        return f"{value} bad setting{'s' if value != 1 else ''}"
    return ""


def event_row(logged: Logged) -> str:
    e = logged.event
    extra = detail(e)
    what = str(describe(e)) + (f" ({extra})" if extra else "")
    return f"{e.seq:>5} {e.boot:>5} {e.uptime_ms / 1000:>10.3f} {e.code:>5}  {what}"


EVENT_HEADER = "  seq  boot   uptime s  code  event"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# -- the Raspberry Pi beside the board ---------------------------------------------------


def stored_what(row: StoredEvent) -> str:
    """An event in the Pi's store, in words."""
    event = ev.Event(row.seq, row.boot, row.uptime_ms, row.code, row.qualifier, row.zone, row.value)
    extra = detail(event)
    return str(describe(event)) + (f" ({extra})" if extra else "")


def stored_row(row: StoredEvent) -> str:
    return f"{row.id:>5} {row.source:<6} {row.boot:>5} {row.seq:>5} {row.code:>5}  {stored_what(row)}"


STORE_HEADER = "   id from    boot   seq  code  event"


class Pi:
    """The Raspberry Pi's edge daemon, the real one, in a background thread with its own asyncio loop.

    Its serial port is the Pi's end of ``bench.wire``; its GPIO goes through gpiozero
    mock pins wired to the bench (:class:`~hw_sim.pi_wiring.PiWiring`); its store is an
    SQLite file and its text log a file, both in a temporary folder that :meth:`close`
    removes.  The console reads the daemon's link from its attributes and the store
    through a read-only connection of its own (the daemon's belongs to the daemon's thread).
    """

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.wiring = PiWiring(bench)
        self.folder = Path(tempfile.mkdtemp(prefix="alarmpost-sim-pi-"))
        self.db = self.folder / "events.db"
        self.log_path = self.folder / "edge.log"
        self.daemon: Daemon | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.starts = 0
        self.failure: str | None = None  # why the latest daemon stopped on its own, or did not start
        self.last_command = "nothing yet"
        self.uplink: dict[str, Any] | None = None  # the daemon's [uplink] table, when there is a broker
        self.camera: dict[str, Any] | None = None  # its [camera] table: the bench's camera
        self._asked_to_stop = False
        self.stored: list[StoredEvent] = []  # every event in the store, in the order it was stored
        self._reader: sqlite3.Connection | None = None
        self._log: logging.Handler | None = None

    # the daemon's thread

    def config(self) -> Config:
        if self.bench.wire is None:
            raise BenchError("the bench has no UART wire: start it with wire=True")
        return check_data(
            {
                "serial": {"port": self.bench.wire.path, "baud": self.bench.wire.baud},
                "store": {"path": str(self.db)},
                "gpio": {
                    "alarm_line_pin": self.wiring.alarm_line_pin,
                    "board_reset_pin": self.wiring.reset_pin,
                    "board_reset_active": "high" if self.wiring.reset_active_high else "low",
                },
                "log": {"format": "text"},
            }
            | ({"uplink": self.uplink} if self.uplink else {})
            | ({"camera": self.camera} if self.uplink and self.camera else {}),
            "the sim's edge daemon config",
        )

    def start(self) -> None:
        """Start a daemon on the store and port; wait until it has opened them (or failed)."""
        config = self.config()
        self._start_log(config)
        self.starts += 1
        self.failure = None
        self.daemon = None
        self._asked_to_stop = False
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=self._serve, args=(config, loop, ready, self.starts), daemon=True, name=f"edge-daemon-{self.starts}"
        )
        self.loop, self.thread = loop, thread
        thread.start()
        if not ready.wait(DAEMON_WAIT_S):
            self.failure = f"did not open its store and port in {DAEMON_WAIT_S:.0f} s"

    def _serve(self, config: Config, loop: asyncio.AbstractEventLoop, ready: threading.Event, start: int) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._run(config, ready))
            if start == self.starts and not self._asked_to_stop:
                self.failure = f"stopped on its own (see {self.log_path.name})"
        except Exception as exc:  # the daemon failed: the screen says why, the log has the traceback
            logging.getLogger("hw_sim.console").exception("the edge daemon failed")
            if start == self.starts:
                self.failure = first_line(exc)
        finally:
            ready.set()
            loop.close()

    async def _run(self, config: Config, ready: threading.Event) -> None:
        self.daemon = Daemon(config, pin_factory=self.wiring.factory)
        ready.set()
        await self.daemon.run()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and self.daemon is not None

    def stop(self) -> None:
        """Stop the daemon through its stopping event and join its thread."""
        thread, loop, daemon = self.thread, self.loop, self.daemon
        if thread is None:
            return
        self._asked_to_stop = True
        if loop is not None and daemon is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(daemon.stopping.set)
            except RuntimeError:  # its loop has just ended
                pass
        thread.join(DAEMON_WAIT_S)
        if thread.is_alive():
            raise BenchError(f"the edge daemon did not stop in {DAEMON_WAIT_S:.0f} s")
        self.thread = None

    def restart(self) -> str:
        self.stop()
        self.start()
        if self.failure:
            return f"stopped the Pi's daemon; the new one failed: {self.failure}"
        return f"stopped the Pi's daemon and started a new one (start {self.starts}) on the same store and port"

    def command(self, code: int, name: str) -> str:
        """Send the board a command through the daemon's link; the board's answer in words."""
        daemon, loop = self.daemon, self.loop
        if not self.running() or daemon is None or loop is None:
            self.last_command = f"{name}: not sent, the daemon is not running"
            return self.last_command
        coroutine = daemon.link.command(code, timeout=COMMAND_LINK_S)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # its loop has just ended
            coroutine.close()
            self.last_command = f"{name}: not sent, the daemon is not running"
            return self.last_command
        try:
            status, data = future.result(timeout=COMMAND_WAIT_S)
        except TimeoutError:
            future.cancel()
            answer = "no answer from the board"
        except concurrent.futures.CancelledError:
            answer = "the daemon stopped before the board answered"
        else:
            answer = f"{STATUS_WORDS.get(status, 'status')} ({status})"
            if data:
                answer += f" {bytes(data).decode(errors='replace')}"
        self.last_command = f"{name}: {answer}"
        return self.last_command

    # the log

    def _start_log(self, config: Config) -> None:
        """The daemon's text log (and any warning) to a file in the folder, never to the screen."""
        if self._log is not None:
            return
        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.setFormatter(logs.TextFormatter())
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logs.LEVELS[config.log.level])
        logging.captureWarnings(True)
        self._log = handler

    # what the Pi knows

    def poll(self) -> None:
        """Read the events the store took since the last poll, through the console's own connection."""
        if self._reader is None:
            if not self.db.exists():
                return
            try:
                self._reader = sqlite3.connect(self.db.as_uri() + "?mode=ro", uri=True, timeout=0.5)
            except sqlite3.Error:
                return
        last = self.stored[-1].id if self.stored else 0
        try:
            rows = self._reader.execute(f"SELECT {COLUMNS} FROM events WHERE id > ? ORDER BY id", (last,)).fetchall()
        except sqlite3.Error:  # not created yet, or busy: next poll
            self._reader.close()
            self._reader = None
            return
        self.stored += [StoredEvent(*row) for row in rows]

    def link_text(self) -> str:
        daemon = self.daemon
        if daemon is None or daemon.link.up is None:
            return "not yet"
        return "up" if daemon.link.up else "down"

    def uplink_text(self) -> str:
        """The daemon's uplink and its outbox (events the centre has not yet confirmed)."""
        daemon = self.daemon
        if daemon is None or daemon.uplink is None or self._reader is None:
            return "-"
        try:
            (waiting,) = self._reader.execute("SELECT COUNT(*) FROM events WHERE uplinked_at IS NULL").fetchone()
        except sqlite3.Error:
            return "-"
        state = "connected" if daemon.uplink.connected and self.running() else "NOT CONNECTED"
        return f"{state}, outbox {waiting}"

    def daemon_text(self) -> str:
        if self.running():
            return f"running (start {self.starts})"
        if self.failure:
            return f"STOPPED: {self.failure}"
        return "stopped"

    def wire_text(self) -> str:
        wire = self.bench.wire
        if wire is None:
            return "none"
        text = "connected" if wire.connected else "CUT"
        return text + (f", noise {wire.bit_error_rate:g}" if wire.bit_error_rate else "")

    def hello_text(self) -> str:
        info = self.daemon.link.info if self.daemon is not None else None
        return "-" if info is None else f"firmware {info.firmware}, board boot {info.boot}"

    def board_state_text(self) -> str:
        state = self.daemon.link.board_state if self.daemon is not None else None
        if state is None:
            return "-"
        outputs = [name for name in ("siren", "strobe", "testing") if getattr(state, name)]
        return f"{state.alarm}, faults {state.faults}, seq {state.seq}, outputs: {' '.join(outputs) or 'off'}"

    def alarm_line_text(self) -> str:
        line = self.daemon.alarm_line if self.daemon is not None and self.running() else None
        if line is None:
            return "-"
        try:
            return "active" if line.active else "inactive"
        except GPIOZeroError:  # closed as the daemon stops
            return "-"

    def counters_text(self) -> str:
        if self.daemon is None:
            return "-"
        c = self.daemon.link.counters
        return (
            f"stored {c.stored}  duplicates {c.duplicates}  out of order {c.out_of_order}"
            f"  refused {c.refused}  gaps {c.gaps}"
        )

    def facts(self) -> dict[str, str]:
        """What the Pi knows, by name; the plain log prints each change."""
        return {
            "pi daemon": self.daemon_text(),
            "pi link": self.link_text(),
            "pi hello": self.hello_text(),
            "pi board state": self.board_state_text(),
            "pi alarm line": self.alarm_line_text(),
            "pi counters": self.counters_text(),
            "uart wire": self.wire_text(),
        }

    def linking(self) -> bool:
        """A daemon has just started and has not yet heard the board (nor given up on it)."""
        wire = self.bench.wire
        return self.running() and self.link_text() == "not yet" and wire is not None and wire.connected

    # the end

    def close(self) -> None:
        """Stop the daemon, close the reader and the log, remove the folder.  Safe to call twice."""
        try:
            self.stop()
        finally:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._log is not None:
                logging.getLogger().removeHandler(self._log)
                self._log.close()
                logging.captureWarnings(False)
                self._log = None
            shutil.rmtree(self.folder, ignore_errors=True)


# -- the post and its controls ----------------------------------------------------------


class Sim:
    """The bench, the Pi beside it and the centre, the controls a person has, and what the post shows."""

    def __init__(self, bench: Bench, pi: Pi, centre: SimCentre) -> None:
        self.bench = bench
        self.pi = pi
        self.centre = centre
        self.portal: SimPortal | None = None  # the gate WiFi's portal, for a person's browser
        self.presses: list[float] = []  # when the button was pressed (time.monotonic())
        self.wait_for_results = True  # a command through the centre waits for its result (plain mode)
        self._awaiting: concurrent.futures.Future[str] | None = None  # its result goes to the message
        self.seen = 0  # timeline changes already shown
        self.lamps = {device: Lamp(WORDS[device]) for device in OUTPUTS}
        self.began = time.monotonic()
        self.button_held = False
        self.tamper_open = False
        self.message = STARTING
        self.notes: list[tuple[float, str]] = []  # (time, what): power and watchdog
        self.crashes: list[str] = []  # exceptions in the bench's threads, which would scribble on the screen
        self.actions: dict[str, Callable[[], str]] = {
            "b": self.button,
            "k": self.key,
            "t": self.tamper,
            "s": self.supply,
            "g": self.glitch,
            "w": self.hang,
            "p": self.power_cycle,
            "u": self.cut_wire,
            "n": self.noise,
            "d": self.restart_daemon,
            "m": self.centre.toggle_broker,
        }
        for key in COMMANDS:
            self.actions[key] = functools.partial(self.command, key)

    # keys

    def do(self, key: str) -> str:
        """Carry out one key (not ``q``); return what happened, in words."""
        action = self.actions.get(key)
        if action is None:
            self.message = f"unknown key {key!r}: {ALL_KEYS}"
            return self.message
        try:
            self.message = action()
        except (BenchError, OSError) as exc:
            self.message = f"{key}: {first_line(exc)}"
        return self.message

    def button(self) -> str:
        if self.button_held:
            self.bench.release()
            self.button_held = False
            return "released the button"
        self.bench.press()
        self.presses.append(time.monotonic())
        self.button_held = True
        return "pressed the button and holding it (b releases it)"

    def key(self) -> str:
        self.bench.turn_key()
        return "turned the key switch"

    def tamper(self) -> str:
        self.bench.set_switch("tamper", not self.tamper_open)
        self.tamper_open = not self.tamper_open
        return "opened the tamper loop" if self.tamper_open else "closed the tamper loop"

    def supply(self) -> str:
        if self.bench.board["pins.supply_adc.pin"] is None:
            return f"board {self.bench.board_name} has no supply monitor"
        volts = next((v for v in SUPPLY_STEPS if v < self.bench.supply_volts - 0.05), SUPPLY_STEPS[0])
        self.bench.set_supply(volts)
        return f"supply set to {volts:.1f} V"

    def glitch(self) -> str:
        if self.button_held:
            return "the button is held: release it (b) before a glitch"
        self.bench.glitch(1.0)
        return "a 1 ms glitch on the button line"

    def hang(self) -> str:
        self.bench.hang()
        return "hung the CPU: the watchdog should reset the board"

    def power_cycle(self) -> str:
        self.bench.restart()
        return "cut the power and powered on again"

    def cut_wire(self) -> str:
        wire = self.bench.wire
        if wire is None:
            return "the bench has no UART wire"
        if wire.connected:
            wire.cut()
            return "cut the UART wire: the Pi loses the link; the alarm line still reaches it"
        wire.mend()
        return "mended the UART wire"

    def noise(self) -> str:
        wire = self.bench.wire
        if wire is None:
            return "the bench has no UART wire"
        wire.bit_error_rate = 0.0 if wire.bit_error_rate else NOISE_BIT_ERROR_RATE
        if wire.bit_error_rate:
            return f"noise on the UART wire: bit error rate {wire.bit_error_rate:g}"
        return "the UART wire is quiet again"

    def restart_daemon(self) -> str:
        self.centre.expect_online()
        return self.pi.restart()

    def command(self, key: str) -> str:
        """An operator's command through the centre; straight over the Pi's link only when it cannot go."""
        code, command, name = COMMANDS[key]
        why_not = self.centre.why_not()
        if why_not is not None:
            return f"{self.pi.command(code, name)} (sent straight over the Pi's link: {why_not})"
        future = self.centre.submit(name, command)
        try:
            return future.result(timeout=COMMAND_TIMEOUT_S + 1 if self.wait_for_results else 0)
        except TimeoutError:
            self._awaiting = future
            return f"{name}: sent through the centre, waiting for the post's answer"

    # what the post shows

    def poll(self) -> None:
        """Take in the output changes since the last poll."""
        fresh = self.bench.timeline.since(self.seen)
        self.seen += len(fresh)
        for change in fresh:
            lamp = self.lamps.get(change.device)
            if lamp is not None:
                lamp.update(change)
            elif (change.device, change.on) in NOTES:
                self.notes.append((change.t, NOTES[change.device, change.on]))
        for lamp in self.lamps.values():
            lamp.catch_up()
        self.pi.poll()
        if self._awaiting is not None and self._awaiting.done():
            self.message, self._awaiting = self._awaiting.result(), None
        if self.message == STARTING and self.is_up():
            self.message = f"the board is up; the Pi's daemon logs to {self.pi.log_path}"

    def is_up(self) -> bool:
        """The board is powered and its latest boot has reached its running state."""
        return self.bench.powered and self.bench.ups >= len(self.bench.boots)

    def boot_text(self) -> str:
        for logged in reversed(self.bench.logged):
            if logged.event.code == ev.SYSTEM_RESET:
                e = logged.event
                return f"{e.boot} ({RESET_CAUSES.get(e.value, e.value)})"
        return "-"

    def facts(self, now: float) -> dict[str, str]:
        """What a person at the post can tell, by name; the plain log prints each change."""
        shown = self.bench.shown[-1] if self.bench.shown else None
        facts = {
            "state": shown.state if shown else "starting",
            "testing": "yes" if shown and shown.testing else "no",
            "faults": str(shown.faults) if shown else "0",
        }
        for device, lamp in self.lamps.items():
            facts[LABELS[device]] = lamp.look(now)
        facts["supply"] = f"{self.bench.supply_volts:.1f} V"
        facts["boot"] = self.boot_text()
        return facts


# -- the screen -------------------------------------------------------------------------


def _head(sim: Sim, facts: dict[str, str], now: float) -> tuple[list[Row], list[Row]]:
    """The title and power rows, and the state row."""
    power = "power on" if sim.bench.powered else "POWER OFF"
    title = f"Alarm post on the simulated bench - board {sim.bench.board_name}"
    state = facts["state"]
    style = "alert" if state in LATCHED else "lit" if facts["testing"] == "yes" else ""
    faults = facts["faults"]
    return [
        [("title", f"{title:<62}{now - sim.began:>9.1f} s")],
        [("" if sim.bench.powered else "alert", power), ("", f"   boot {facts['boot']}   supply {facts['supply']}")],
    ], [
        [("", "STATE  "), (style, f"{state.upper():<14}"), ("", f"testing {facts['testing']}   ")]
        + [("alert" if faults != "0" else "", f"faults {faults}")],
    ]


def _lamp(sim: Sim, device: str, facts: dict[str, str]) -> list[Segment]:
    lamp = sim.lamps[device]
    label = LABELS[device]
    tone = f" {lamp.freq} Hz" if device == "siren" and lamp.on and lamp.freq else ""
    mark = "[*]" if lamp.glimpse else "[ ]"
    return [("", f"{label:<11}"), ("lit" if lamp.glimpse else "", mark), ("", f" {facts[label] + tone:<22}")]


def _outputs(sim: Sim, facts: dict[str, str]) -> list[Row]:
    return [
        _lamp(sim, "strobe", facts) + _lamp(sim, "siren", facts),
        _lamp(sim, "status_led", facts) + _lamp(sim, "alarm_line", facts),
    ]


def _inputs(sim: Sim) -> list[Row]:
    button = "held" if sim.button_held else "released"
    key = "turned" if sim.bench.is_on("key_switch") else "at rest"
    tamper = "OPEN" if sim.tamper_open else "closed"
    names = ZONE_NAMES[ev.ZONE_BUTTON], ZONE_NAMES[ev.ZONE_KEY_SWITCH], ZONE_NAMES[ev.ZONE_TAMPER]
    text = f"{names[0]} {button:<12}{names[1]} {key:<12}{names[2]} loop "
    return [[("", text), ("alert" if sim.tamper_open else "", tamper)]]


def _pi(facts: dict[str, str], pi: Pi) -> list[Row]:
    """The Pi's side: its daemon, the link as it sees it, the board's hello and heartbeat, the counters."""
    link, daemon, wire = facts["pi link"], facts["pi daemon"], facts["uart wire"]
    line, state = facts["pi alarm line"], facts["pi board state"]
    link_style = "dim" if link == "not yet" else "alert" if link == "down" else ""
    latched = state.split(",")[0] in LATCHED
    heard = "" if link == "up" else "dim"  # what the Pi heard last, from a board it no longer hears
    pin = f"GPIO{pi.wiring.alarm_line_pin}"
    return [
        [("title", "PI  "), ("", "link "), (link_style, f"{link.upper() if link != 'not yet' else link:<8}")]
        + [("", "  daemon "), ("" if pi.running() else "alert", f"{daemon:<19}")]
        + [("", "  wire "), ("alert" if wire != "connected" else "", wire)],
        [("", "hello "), (heard, f"{facts['pi hello']:<30}"), ("", "  heartbeat ")]
        + [("alert" if latched and not heard else heard, state)],
        [("", f"alarm line ({pin}) "), ("alert" if line == "active" else "", f"{line:<9}")]
        + [("", f"  sent {pi.last_command}")],
        [("", f"counters {facts['pi counters']}")],
    ]


def _events(sim: Sim, rows: int) -> list[Row]:
    recent = sim.bench.logged[-rows:] if rows > 0 else []
    lines: list[Row] = [[("title", f"{EVENT_HEADER:<52}on the board")]]
    lines += [[("", event_row(logged))] for logged in recent]
    return lines if recent else lines + [[("dim", "      (none yet)")]]


def _store(pi: Pi, rows: int) -> list[Row]:
    recent = pi.stored[-rows:] if rows > 0 else []
    lines: list[Row] = [[("title", f"{STORE_HEADER:<52}in the Pi's store: {len(pi.stored)}")]]
    lines += [[("", stored_row(row))] for row in recent]
    return lines if recent else lines + [[("dim", "      (none yet)")]]


def _foot(sim: Sim) -> list[Row]:
    rows: list[Row] = [[("alert", f"trouble: {text}")] for text in (sim.bench.troubles + sim.crashes)[-2:]]
    return rows + [[("", f"> {sim.message}")], [("dim", HELP)], [("dim", f"{HELP_PI}   {HELP_CENTRE}")]]


def _lists(rows: int) -> tuple[int, int, int]:
    """Rows of board events, of the Pi's store and of the centre's events (each without its header)."""
    if rows < 2:
        return 0, 0, 0
    if rows < 5:  # room for one list only: the board's
        return min(EVENT_ROWS, rows - 1), 0, 0
    if rows < 8:  # two: the board's and the centre's
        centre = min(CENTRE_ROWS, (rows - 2) // 2)
        return min(EVENT_ROWS, rows - 2 - centre), 0, centre
    left = rows - 3
    centre = min(CENTRE_ROWS, left // 3)
    store = min(STORE_ROWS, (left - centre) // 2)
    return min(EVENT_ROWS, left - centre - store), store, centre


def screen(sim: Sim, now: float, height: int = 100) -> list[Row]:
    """The rows of the live screen, fitted to ``height``: blank lines go first, then the event lists shrink."""
    facts = sim.facts(now) | sim.pi.facts()
    title, state = _head(sim, facts, now)
    post = _outputs(sim, facts) + _inputs(sim)
    pi = _pi(facts, sim.pi) + [[]] + centre_rows(sim.centre, sim.pi.uplink_text())
    if sim.portal is not None:
        pi += [[("title", "GATE WIFI  "), ("", sim.portal.facts()["gate wifi"])]]
    foot = _foot(sim)
    fixed = len(title) + len(state) + len(post) + len(pi) + len(foot)
    spare = height - fixed
    # Blank lines: all five on a tall screen; on a shorter one those that part the sections, then only the Pi's.
    blanks = 5 if spare >= 5 + 10 else 3 if spare >= 3 + 6 else 1 if spare >= 1 + 5 else 0
    events, stored, centre = _lists(spare - blanks)

    def gap(rank: int) -> list[Row]:  # rank 1 stays longest, rank 5 goes first
        return [[]] if blanks >= rank else []

    lists = (_events(sim, events) if events else []) + (_store(sim.pi, stored) if stored else [])
    lists += centre_events(sim.centre, sim.presses, centre) if centre else []
    body = title + gap(5) + state + gap(5) + post + gap(1) + pi + (gap(3) if lists else []) + lists
    body = body[: max(0, height - len(foot) - len(gap(3)))]
    return body + gap(3) + foot


def plain(rows: list[Row]) -> str:
    return "\n".join("".join(text for _, text in row).rstrip() for row in rows)


# -- curses mode ----------------------------------------------------------------------------


def _styles() -> dict[str, int]:
    styles = {"": curses.A_NORMAL, "title": curses.A_BOLD, "dim": curses.A_DIM}
    styles["lit"] = curses.A_BOLD | curses.A_REVERSE
    styles["alert"] = curses.A_BOLD | curses.A_REVERSE
    if curses.has_colors():
        curses.start_color()
        background = -1
        try:
            curses.use_default_colors()
        except curses.error:
            background = curses.COLOR_BLACK
        curses.init_pair(1, curses.COLOR_RED, background)
        curses.init_pair(2, curses.COLOR_YELLOW, background)
        styles["alert"] = curses.color_pair(1) | curses.A_BOLD | curses.A_REVERSE
        styles["lit"] = curses.color_pair(2) | curses.A_BOLD | curses.A_REVERSE
    return styles


def _draw(window: curses.window, rows: list[Row], styles: dict[str, int]) -> None:
    height, width = window.getmaxyx()
    window.erase()
    for y, row in enumerate(rows[:height]):
        x = 0
        for style, text in row:
            if x < width - 1:
                try:
                    window.addnstr(y, x, text, width - 1 - x, styles[style])
                except curses.error:
                    pass  # the bottom-right corner of a small terminal
            x += len(text)
    window.refresh()


def _curses_loop(window: curses.window, sim: Sim) -> None:
    styles = _styles()
    try:
        curses.curs_set(0)
    except curses.error:
        pass
    window.timeout(round(REFRESH_S * 1000))
    while True:
        sim.poll()
        _draw(window, screen(sim, time.monotonic(), window.getmaxyx()[0]), styles)
        code = window.getch()
        key = chr(code).lower() if 32 < code < 127 else ""
        if key == "q":
            return
        if key:
            sim.message = f"{key}: ..."
            _draw(window, screen(sim, time.monotonic(), window.getmaxyx()[0]), styles)
            sim.do(key)


def run_curses(sim: Sim) -> None:
    sim.wait_for_results = False  # the screen goes on; the result replaces the message when it comes
    curses.wrapper(_curses_loop, sim)


# -- plain mode: a line per change, commands line by line ---------------------------------------


class Log:
    """Plain output: one line per change in what the post shows, per event and per trouble."""

    def __init__(self, sim: Sim, out: TextIO) -> None:
        self.sim = sim
        self.out = out
        self.facts: dict[str, str] = {}
        self.seen_events = 0
        self.seen_stored = 0
        self.seen_troubles = 0
        self.seen_notes = 0

    def line(self, text: str, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        print(f"{at - self.sim.began:8.3f}s  {text}", file=self.out, flush=True)

    def update(self) -> None:
        """Poll the bench and print what changed since the last update, oldest first."""
        self.sim.poll()
        now = time.monotonic()
        lines = self._fact_changes(now)
        logged = self.sim.bench.logged[self.seen_events :]
        self.seen_events += len(logged)
        lines += [(x.t, "event " + event_row(x).strip()) for x in logged]
        stored = self.sim.pi.stored[self.seen_stored :]
        wall = time.time()  # the store keeps unix times
        for count, row in enumerate(stored, start=self.seen_stored + 1):
            lines.append((now - max(0.0, wall - row.received_at), self._stored_line(row, count)))
        self.seen_stored += len(stored)
        lines += self.sim.centre.new_lines(self.sim.presses)
        notes = self.sim.notes[self.seen_notes :]
        self.seen_notes += len(notes)
        lines += notes
        troubles = (self.sim.bench.troubles + self.sim.crashes)[self.seen_troubles :]
        self.seen_troubles += len(troubles)
        lines += [(now, f"trouble: {text}") for text in troubles]
        for at, text in sorted(lines, key=lambda line: line[0]):
            self.line(text, at)

    @staticmethod
    def _stored_line(row: StoredEvent, count: int) -> str:
        return (
            f"pi stored #{row.id} ({count} in the store): {row.source} boot {row.boot} seq {row.seq},"
            f" {row.code} {stored_what(row)}"
        )

    def _fact_changes(self, now: float) -> list[tuple[float, str]]:
        facts = self.sim.facts(now) | self.sim.pi.facts() | self.sim.centre.facts()
        if self.sim.portal is not None:
            facts |= self.sim.portal.facts()
        changes = []
        for name, value in facts.items():
            old = self.facts.get(name)
            if old != value:
                text = f"{name}: {value}" if old is None or name in LONG_FACTS else f"{name}: {old} -> {value}"
                changes.append((self._when(name, now), text))
        self.facts = facts
        return changes

    def _when(self, fact: str, now: float) -> float:
        """When a fact changed: the firmware's report, an output's last edge, or else this poll."""
        shown = self.sim.bench.shown
        if fact in ("state", "testing", "faults") and shown:
            return shown[-1].t
        lamp = next((self.sim.lamps[d] for d, label in LABELS.items() if label == fact), None)
        if lamp is not None and now - lamp.since < 2 * REFRESH_S:
            return lamp.since
        return now


def key_problem(token: str) -> str | None:
    """Why a typed or scripted key is not one, or None."""
    if token.startswith("wait:"):
        try:
            seconds = float(token[5:])
        except ValueError:
            seconds = -1.0
        return None if 0 <= seconds <= 3600 else f"{token!r}: wait takes seconds, 0 to 3600, like wait:0.5"
    return None if len(token) == 1 and token in KEYS else f"unknown key {token!r} (keys: {ALL_KEYS}; wait:SECONDS)"


def split_keys(text: str) -> list[str]:
    return [token.lower() for token in re.split(r"[,\s]+", text.strip()) if token]


def script_keys(text: str) -> list[str]:
    """The ``--script`` option: keys split by commas, each checked."""
    keys = split_keys(text)
    problems = [p for p in map(key_problem, keys) if p]
    if problems:
        raise argparse.ArgumentTypeError("; ".join(problems))
    return keys


def pause(log: Log, seconds: float) -> None:
    """Wait, printing changes as they come."""
    deadline = time.monotonic() + seconds
    while True:
        log.update()
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(REFRESH_S, left))


def settle(log: Log) -> None:
    """Let the board come up (after a start, power cycle or watchdog reset), a freshly started
    daemon hear from it (or give up on it) and the centre hear the post and its events before the next key."""
    deadline = time.monotonic() + BOOT_WAIT_S
    while log.sim.bench.powered and not log.sim.is_up():
        if time.monotonic() > deadline:
            log.line(f"the board has not started after {BOOT_WAIT_S:.0f} s")
            return
        pause(log, REFRESH_S)
    while log.sim.pi.linking():
        if time.monotonic() > deadline:
            log.line(f"the Pi has not heard the board after {BOOT_WAIT_S:.0f} s")
            return
        pause(log, REFRESH_S)
    while lacking := log.sim.centre.waiting_for(log.sim.pi.running(), [row.id for row in log.sim.pi.stored]):
        if time.monotonic() > deadline:
            log.line(f"the centre still waits for {lacking} after {BOOT_WAIT_S:.0f} s")
            return
        pause(log, REFRESH_S)


def perform(log: Log, token: str) -> bool:
    """Carry out one typed or scripted key, ``wait:SECONDS`` or ``q``; False to quit."""
    problem = key_problem(token)
    if problem:
        log.line(problem)
    elif token == "q":
        log.line("> q: quit")
        return False
    elif token.startswith("wait:"):
        pause(log, float(token[5:]))
    else:
        settle(log)
        log.update()
        pressed = time.monotonic()
        log.line(f"> {token}: {log.sim.do(token)}", pressed)  # before what it caused
        log.update()
    return True


def _read_lines(stream: TextIO, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)  # end of input


def run_lines(log: Log, stream: TextIO) -> None:
    """Commands line by line from ``stream`` until ``q`` or end of input."""
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(stream, lines), daemon=True, name="console-input").start()
    print(f"keys, then Enter: {ALL_KEYS}; wait:SECONDS; an empty line prints the status", file=log.out, flush=True)
    settle(log)
    while True:
        log.update()
        try:
            line = lines.get(timeout=REFRESH_S)
        except queue.Empty:
            continue
        if line is None:
            log.line("end of input: quit")
            return
        if not line.strip():
            print(plain(screen(log.sim, time.monotonic())), file=log.out, flush=True)
        if not all(perform(log, token) for token in split_keys(line)):
            return


def run_script(log: Log, keys: list[str]) -> None:
    settle(log)
    for token in keys:
        if not perform(log, token):
            break
    settle(log)  # the final status shows what the last key caused, at the centre too


# -- starting and stopping ------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hw_sim.console",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=f"keys: {ALL_KEYS}",
    )
    parser.add_argument("--board", default="sim", help="board name or board file (default: sim)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="config JSON for the post (default: firmware's)")
    parser.add_argument("--script", type=script_keys, metavar="KEYS", help='keys to run headless, e.g. "b,wait:0.5,k"')
    parser.add_argument("--plain", action="store_true", help="a line per change even in a terminal")
    parser.add_argument("--seed", type=int, help="seed for the button's contact bounce")
    parser.add_argument(
        "--pictures",
        type=Path,
        metavar="DIR",
        help="keep the pictures the centre receives in DIR (default: the sim's temporary folder, removed on exit)",
    )
    return parser.parse_args(argv)


def load_config(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"--config {path}: {first_line(exc)}") from None
    if not isinstance(config, dict):
        raise SystemExit(f"--config {path}: expected a JSON object")
    return config


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds to the finally that stops the bench


def _catch_thread_crashes(sim: Sim) -> None:
    def record(args: threading.ExceptHookArgs) -> None:
        where = args.thread.name if args.thread else "a thread"
        sim.crashes.append(f"{where}: {type(args.exc_value).__name__}: {first_line(args.exc_value or Exception())}")

    threading.excepthook = record


def start_centre(sim: Sim) -> str | None:
    """Start the broker, point the daemon's uplink at it and connect the centre; what failed, or None."""
    try:
        sim.centre.start_broker()
    except (MissingTool, BrokerError, OSError, RuntimeError) as exc:
        return f"the broker did not start: {first_line(exc)}"
    sim.pi.uplink = sim.centre.uplink_settings()
    sim.pi.camera = sim.centre.camera_settings()
    try:
        sim.centre.connect(sim.pi.config().board.name)
    except (CentreError, BenchError, ValueError) as exc:
        return f"the centre did not connect: {first_line(exc)}"
    return None


def start_portal(sim: Sim) -> None:
    """The gate WiFi's portal beside the post; the post runs on without it if it cannot start."""
    sim.portal = SimPortal(sim.pi.folder / "portal", sim.centre)
    try:
        sim.portal.start(sim.pi.config().board.name)
    except (RuntimeError, OSError, ValueError, CentreError) as exc:
        print(f"the gate WiFi portal did not start: {first_line(exc)}", file=sys.stderr)
        return
    print(f"gate WiFi: open {sim.portal.url} in a browser to see the splash page", flush=True)


def run(sim: Sim, args: argparse.Namespace) -> int:
    try:
        sim.bench.start()
    except (BenchError, MissingTool, SettingsError, subprocess.CalledProcessError, OSError) as exc:
        print(f"the bench did not start: {exc}", file=sys.stderr)
        return 1
    problem = start_centre(sim)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    start_portal(sim)  # before the daemon, so the screen and the log see the Pi's link come up
    try:
        sim.pi.start()  # a daemon that fails in its thread is shown on the screen, not raised here
    except (BenchError, ValueError, OSError) as exc:
        print(f"the Pi's daemon did not start: {exc}", file=sys.stderr)
        return 1
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.plain
    if args.script is None and interactive:
        try:
            run_curses(sim)
            return 0
        except curses.error as exc:  # e.g. TERM unknown: fall back to plain lines
            print(f"no curses screen ({exc}): plain mode", file=sys.stderr)
    log = Log(sim, sys.stdout)
    print(f"the Pi's daemon logs to {sim.pi.log_path} (removed on exit)", flush=True)
    if args.script is not None:
        run_script(log, args.script)
    else:
        run_lines(log, sys.stdin)
    log.update()
    print("\n" + plain(screen(sim, time.monotonic())), flush=True)
    return 0


def shutdown(sim: Sim) -> None:
    """Stop the portal, close the centre, stop the daemon (it tells the broker ``stopped``), the broker
    and the bench, then remove the Pi's folder: every step, whatever fails."""

    def stop_portal() -> None:
        if sim.portal is not None:
            sim.portal.stop()

    names = [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {name: signal.signal(getattr(signal, name), signal.SIG_IGN) for name in names}  # no half cleanup
    steps = (stop_portal, sim.centre.close, sim.pi.stop, sim.centre.stop_broker, sim.bench.stop, sim.pi.close)
    try:
        for step in steps:
            try:
                step()
            except Exception as exc:  # e.g. a daemon that would not stop: its thread is a daemon thread
                print(exc, file=sys.stderr)
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    add_sim_backend()  # the daemon runs in this process, with the bench's camera
    config = load_config(args.config)
    try:
        bench = Bench(board=args.board, config=config, seed=args.seed, wire=True)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    pi: Pi | None = None
    try:
        pi = Pi(bench)
        sim = Sim(bench, pi, SimCentre(pi.folder / "centre", args.pictures))
    except BaseException:
        if pi is not None:
            pi.close()
        bench.stop()
        raise
    _catch_thread_crashes(sim)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop_on_signal)
    try:
        return run(sim, args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into head: nobody is reading any more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        shutdown(sim)


if __name__ == "__main__":
    sys.exit(main())
