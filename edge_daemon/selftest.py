"""The post's self-test, run inside the daemon: each part of the post checked, each verdict with what to check.

Two ways in (docs/selftest.md):

* a technician at the post runs ``alarmpost-selftest`` (:mod:`edge_daemon.selftest_cli`), which
  reaches the daemon on ``selftest.socket`` and is asked to press the button, turn the key
  and open the enclosure (unless ``--non-interactive``);
* the daemon tests the post by itself every ``selftest.every_h`` hours (no person: those
  steps are skipped); its test event is Contact ID 602 (periodic test), and a run with a
  failed step also raises 307 (self-test failure), restored by the next run that passes.

Either way the report is saved in ``selftest.report_dir`` and published on ``selftest``.

The socket speaks JSON lines.  The client sends one request, ``{"selftest": {"interactive":
true, "local": [steps it checked itself]}}``; the daemon answers with a line per step as it
starts (``"status": "running"``), asks (``"prompt"``) and ends (``pass``, ``fail``, ``skip``),
and last ``{"report": {...}}``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alarmpost import codec
from alarmpost import events as ev
from edge_daemon.contract import iso_time

if TYPE_CHECKING:
    from edge_daemon.service import Daemon

log = logging.getLogger("edge_daemon.selftest")

PASS, FAIL, SKIP = "pass", "fail", "skip"
MAX_STEPS = 64  # the report's schema takes at most this many steps ...
DETAIL_MAX = 500  # ... with at most this much to say each
Say = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Step:
    name: str
    status: str
    detail: str


class SelfTest:
    """One run of the self-test over the daemon's parts; :meth:`run` returns the report."""

    prompt_s = 30.0  # a technician's time for each thing asked
    siren_s = 2.0  # the board's siren check (a chirp of 80 ms) answers within this
    camera_s = 3.0  # a new frame from the camera within this
    receipt_s = 20.0  # the centre's receipt for the test event within this
    offline_s = 5.0  # ... unless the broker stays out of reach this long
    clock_agree_s = 5.0  # the post's clock and the centre's, at most this far apart
    journal_full_pct = 80  # the board's journal fuller than this of unstored events fails
    disk_free_pct = 10  # the store's disk needs this much free ...
    disk_free_mb = 100  # ... and this many MB
    supply_min_v = 11.5  # the board's supply below this fails (the board's own low-battery default)

    def __init__(self, daemon: Daemon, trigger: str, interactive: bool, say: Say) -> None:
        self.daemon = daemon
        self.prompt_s = daemon.config.selftest.prompt_s
        self.trigger = trigger
        self.interactive = interactive
        self.say = say
        self.steps: list[Step] = []
        self.status: dict[str, Any] | None = None  # the board's answer to the self-test command
        self._watching: list[tuple[Callable[[ev.Event], bool], asyncio.Future[ev.Event]]] = []

    # -- running ---------------------------------------------------------------------------

    async def run(self, local: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        started, began = time.time(), time.monotonic()
        checks: list[tuple[str, Callable[[], Awaitable[tuple[str, str]]]]] = [
            ("board_link", self.board_link),
            ("siren", self.siren),
            ("board_troubles", self.board_troubles),
            ("strobe", self.strobe),
            ("supply", self.supply),
            ("journal", self.journal),
            ("button", self.button),
            ("key_switch", self.key_switch),
            ("tamper", self.tamper),
            ("camera", self.camera),
            ("centre", self.centre),
            ("clock", self.clock),
            ("disk", self.disk),
        ]
        self.daemon.event_listeners.append(self._event)
        try:
            for name, check in checks:
                await self.say({"step": name, "status": "running"})
                try:
                    status, detail = await check()
                except Exception as exc:  # a check that breaks is a failed step, not a dead daemon
                    log.exception("a self-test step failed to run", extra={"step": name})
                    status, detail = FAIL, f"the step could not run: {exc}"
                await self._record(Step(name, status, detail))
        finally:
            self.daemon.event_listeners.remove(self._event)
        for step in (local or [])[: MAX_STEPS - len(self.steps)]:
            await self._record(Step(str(step["name"]), str(step["status"]), str(step["detail"])))
        result = FAIL if any(step.status == FAIL for step in self.steps) else PASS
        return {
            "time": iso_time(started),
            "trigger": self.trigger,
            "result": result,
            "duration_s": round(time.monotonic() - began, 1),
            "steps": [asdict(step) for step in self.steps],
        }

    async def _record(self, step: Step) -> None:
        step.detail = step.detail[:DETAIL_MAX]  # the report's schema: no detail longer
        self.steps.append(step)
        await self.say({"step": step.name, "status": step.status, "detail": step.detail})

    def _watch(self, test: Callable[[ev.Event], bool]) -> asyncio.Future[ev.Event]:
        """The board's next event that passes ``test``, from now on."""
        future: asyncio.Future[ev.Event] = asyncio.get_running_loop().create_future()
        self._watching.append((test, future))
        return future

    async def _ask(
        self, name: str, prompt: str, test: Callable[[ev.Event], bool] | asyncio.Future[ev.Event]
    ) -> ev.Event | None:
        """Ask the technician; the board's event that answers (``test``, or a future already watching),
        or None after ``prompt_s``."""
        future = test if isinstance(test, asyncio.Future) else self._watch(test)
        await self.say({"step": name, "status": "prompt", "detail": f"{prompt} (within {self.prompt_s:g} s)"})
        try:
            return await asyncio.wait_for(future, self.prompt_s)
        except TimeoutError:
            return None
        finally:
            self._watching = [(t, f) for t, f in self._watching if f is not future]

    def _event(self, event: ev.Event, source: str) -> None:
        if source != "board":
            return
        for test, future in self._watching:
            if not future.done() and test(event):
                future.set_result(event)

    # -- the board -------------------------------------------------------------------------

    async def board_link(self) -> tuple[str, str]:
        link, port = self.daemon.link, self.daemon.config.serial.port
        try:
            status, data = await link.command(codec.CMD_SELF_TEST, timeout=3.0)
        except TimeoutError:
            return FAIL, (
                f"no answer from the board on {port}: check the cable between the Pi and the board"
                " (TX to RX, RX to TX, GND), the board's power and its status LED"
            )
        try:
            self.status = json.loads(data.decode())
        except ValueError:
            return FAIL, f"the board answered the self-test with {data[:60]!r}: update its firmware (make flash)"
        board, firmware = (link.info.board, link.info.firmware) if link.info is not None else ("?", "?")
        return PASS, f"board {board}, firmware {firmware}, link up"

    async def board_troubles(self) -> tuple[str, str]:
        if self.status is None:
            return SKIP, "no answer from the board (see board_link)"
        _, data = await self.daemon.link.command(codec.CMD_SELF_TEST, b"read", timeout=3.0)  # after the siren check
        faults = int(json.loads(data.decode()).get("faults", 0))
        if faults:
            return FAIL, (
                f"the board reports {faults} active trouble(s) (tamper open, supply, stuck button, siren,"
                " config): see the post's state and events, and clear each before leaving"
            )
        return PASS, "no active trouble"

    async def siren(self) -> tuple[str, str]:
        if self.status is None:
            return SKIP, "no answer from the board (see board_link)"
        deadline = asyncio.get_running_loop().time() + self.siren_s
        answer = self.status.get("check", "none")
        while answer == "pending" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)  # the board's chirp takes 80 ms: ask again until it has an answer
            _, data = await self.daemon.link.command(codec.CMD_SELF_TEST, b"read", timeout=3.0)
            answer = json.loads(data.decode()).get("check", "none")
        if answer == "ok":
            return PASS, "current flows through the siren (a short, quiet chirp)"
        if answer == "open":
            return FAIL, (
                "no current through the siren during the chirp: its circuit is open. Check the siren's"
                " wires at the board's terminal, its fuse, and the siren itself"
            )
        if answer == "busy":
            return SKIP, "an alarm is latched or a test is on: reset the post and run the self-test again"
        if answer == "error":
            return FAIL, "the board could not check its siren (see its console): check the siren's pin in boards/"
        if answer == "pending":
            return FAIL, f"the board did not finish its siren check within {self.siren_s:g} s"
        return SKIP, "this board has no siren sense input: listen for the siren during the key switch test"

    async def strobe(self) -> tuple[str, str]:
        return SKIP, "no board measures the strobe: watch it flash during the key switch test"

    async def supply(self) -> tuple[str, str]:
        if self.status is None:
            return SKIP, "no answer from the board (see board_link)"
        volts = int(self.status.get("supply_cv", 0)) / 100
        if volts == 0:
            return SKIP, "this board does not measure its supply"
        if volts < self.supply_min_v:
            return FAIL, f"the supply is {volts:.2f} V: check the mains adapter and the battery"
        return PASS, f"{volts:.2f} V"

    async def journal(self) -> tuple[str, str]:
        if self.status is None:
            return SKIP, "no answer from the board (see board_link)"
        pct = int(self.status.get("journal_pct", 0))
        if pct > self.journal_full_pct:
            return FAIL, f"the board's journal is {pct} % full of events the Pi has not stored: check the link"
        return PASS, f"{pct} % full of events the Pi has not stored"

    async def button(self) -> tuple[str, str]:
        if not self.interactive:
            return SKIP, "needs a technician (run alarmpost-selftest without --non-interactive)"
        pressed = await self._ask(
            "button",
            "Press the alarm button (the centre receives an alarm: tell it the post is on test)",
            lambda e: e.code == ev.PANIC and e.zone == ev.ZONE_BUTTON,
        )
        if pressed is None:
            return FAIL, "no press arrived: check the button's wiring to the board and the button itself"
        return PASS, "the press raised the alarm"

    async def key_switch(self) -> tuple[str, str]:
        if not self.interactive:
            return SKIP, "needs a technician"
        turned = await self._ask(
            "key_switch",
            "Turn the key switch (it resets the alarm, or starts the strobe and siren test)",
            lambda e: e.zone == ev.ZONE_KEY_SWITCH and e.code in (ev.PANIC_RESET, ev.MANUAL_TEST),
        )
        if turned is None:
            return FAIL, "the key switch was not seen: check its wiring to the board and the switch itself"
        return PASS, "seen (" + ("reset the alarm" if turned.code == ev.PANIC_RESET else "test pattern") + ")"

    async def tamper(self) -> tuple[str, str]:
        if not self.interactive:
            return SKIP, "needs a technician"
        # both watched from the start: the door's open and close may reach the Pi in one read
        closing = self._watch(lambda e: e.code == ev.TAMPER and e.qualifier == ev.RESTORE)
        opened = await self._ask(
            "tamper",
            "Open the enclosure's door, then close it",
            lambda e: e.code == ev.TAMPER and e.qualifier == ev.NEW,
        )
        if opened is None:
            self._watching = [(t, f) for t, f in self._watching if f is not closing]
            return FAIL, "the tamper switch did not open: check its wiring and that the door presses it"
        closed = await self._ask("tamper", "Close the enclosure's door", closing)
        if closed is None:
            return FAIL, "the tamper switch did not close again: check that the closed door presses it"
        return PASS, "opened and closed"

    # -- the Pi ----------------------------------------------------------------------------

    async def camera(self) -> tuple[str, str]:
        if not self.daemon.config.camera.enabled:
            return SKIP, "no camera on this post (camera.enabled = false)"
        video = self.daemon.video
        if video is None:
            return FAIL, "the camera did not start (see the daemon's log): check camera.backend and camera.url"
        since = time.time()
        deadline = time.monotonic() + self.camera_s
        while time.monotonic() < deadline:
            frame = video.newest_frame()
            if frame is not None and frame.captured >= since:
                return PASS, f"a picture of {len(frame.jpeg) // 1024} KB"
            await asyncio.sleep(0.2)  # frames come from the camera's own thread
        return FAIL, (
            f"no picture from the camera within {self.camera_s:g} s: check its power and cable, and"
            " camera.url (a camera's address: can the Pi reach it?)"
        )

    async def centre(self) -> tuple[str, str]:
        uplink = self.daemon.uplink
        if uplink is None:
            return SKIP, "no uplink on this post (uplink.enabled = false)"
        code = ev.PERIODIC_TEST if self.trigger == "periodic" else ev.MANUAL_TEST
        uid = self.daemon.own_event(code, ev.NEW, ev.ZONE_SYSTEM)
        now = time.monotonic()
        deadline, connected_at = now + self.receipt_s, now
        while time.monotonic() < deadline:
            if self.daemon.store.uplinked_at(uid) is not None:
                return PASS, f"the centre confirmed the test event (Contact ID {code})"
            if uplink.connected:
                connected_at = time.monotonic()
            elif time.monotonic() - connected_at > self.offline_s:
                break
            await asyncio.sleep(0.2)  # the receipt lands in the store from the uplink
        if not uplink.connected:
            return FAIL, (
                f"not connected to the broker {self.daemon.config.uplink.host}:{self.daemon.config.uplink.port}:"
                " check the network (cable, router), the broker's address, and the post's account"
            )
        return FAIL, (
            f"connected, but the centre did not confirm the test event within {self.receipt_s:g} s:"
            " ask the centre whether its recorder is running"
        )

    async def clock(self) -> tuple[str, str]:
        synchronised = kernel_clock_synchronised()
        uplink = self.daemon.uplink
        skew = uplink.clock_skew_s() if uplink is not None else None
        if skew is not None and abs(skew) <= self.clock_agree_s:
            return PASS, f"agrees with the centre's within {abs(skew):.1f} s" + (
                "" if synchronised else " (the kernel does not report NTP synchronisation)"
            )
        if skew is not None:
            return FAIL, f"{skew:+.0f} s from the centre's clock: check NTP (timedatectl) and the network"
        if synchronised:
            return PASS, "synchronised (NTP)"
        return FAIL, "not synchronised and no centre to compare with: check NTP (timedatectl) and the network"

    async def disk(self) -> tuple[str, str]:
        folder = Path(self.daemon.config.store.path).parent
        usage = shutil.disk_usage(folder)
        free_pct, free_mb = usage.free * 100 // usage.total, usage.free // 1_000_000
        if free_pct < self.disk_free_pct or free_mb < self.disk_free_mb:
            return FAIL, f"only {free_mb} MB ({free_pct} %) free on the SD card: clear old logs or replace the card"
        return PASS, f"{free_mb} MB ({free_pct} %) free"


class timex(ctypes.Structure):  # noqa: N801  (the kernel's struct timex: modes, then room to spare)
    # 208 bytes on 64-bit Linux, 128 on 32-bit; adjtimex writes the whole struct, so err on the large side
    _fields_ = [("modes", ctypes.c_uint), ("rest", ctypes.c_byte * 508)]


def kernel_clock_synchronised() -> bool:
    """adjtimex(2) answers TIME_ERROR (5) while the clock is not synchronised (NTP)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.adjtimex(ctypes.byref(timex()))) not in (-1, 5)
    except OSError:
        return False


def save_report(folder: Path, report: dict[str, Any], keep: int = 50) -> Path:
    """Write the report as ``selftest-<time>.json`` (whole or not at all); keep the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(report["time"].replace("Z", "+00:00")).astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    path = folder / f"selftest-{stamp}-{report['trigger']}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(partial, path)
    for old in sorted(folder.glob("selftest-*.json"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


LOCAL_STEP = re.compile(r"[a-z_]{1,32}")
MAX_LOCAL_STEPS = 16  # the client's own checks (the gate WiFi's two today)


def check_local_step(step: Any) -> None:
    """A step the client checked itself, as the report's schema takes it; ValueError saying what is wrong."""
    if not isinstance(step, dict) or set(step) != {"name", "status", "detail"}:
        raise ValueError(f"a local step must be {{name, status, detail}}: {step!r:.80}")
    if not isinstance(step["name"], str) or not LOCAL_STEP.fullmatch(step["name"]):
        raise ValueError(f"a local step's name must be 1-32 of a-z and _: {step['name']!r:.40}")
    if step["status"] not in (PASS, FAIL, SKIP):
        raise ValueError(f"a local step's status must be pass, fail or skip: {step['status']!r:.40}")
    if not isinstance(step["detail"], str) or len(step["detail"]) > 500:
        raise ValueError("a local step's detail must be text of at most 500 characters")


class SelfTestServer:
    """The daemon's side of ``selftest.socket``: one self-test at a time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.server: asyncio.AbstractServer | None = None

    async def start(self, path: str) -> None:
        socket_path = Path(path)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        socket_path.unlink(missing_ok=True)
        self.server = await asyncio.start_unix_server(self._serve, path=str(socket_path))
        socket_path.chmod(0o660)  # the daemon's user and group (and root): a technician uses sudo

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def say(message: dict[str, Any]) -> None:
            if writer.is_closing():
                return  # the technician's client went away: the self-test goes on, saved and sent
            try:
                writer.write(json.dumps(message).encode() + b"\n")
                await writer.drain()
            except (ConnectionError, OSError):
                writer.close()

        try:
            request = json.loads(await asyncio.wait_for(reader.readline(), 10))
            asked = request["selftest"]
            if not isinstance(asked, dict):
                raise ValueError("selftest: must be an object with interactive and local")
            local = asked.get("local", [])
            if not isinstance(local, list) or len(local) > MAX_LOCAL_STEPS:
                raise ValueError(f"local: a list of at most {MAX_LOCAL_STEPS} steps")
            for step in local:
                check_local_step(step)
        except (ValueError, KeyError, TypeError, TimeoutError) as exc:
            await say({"error": f"not a self-test request: {exc}"})
            writer.close()
            return
        if self.daemon.selftest_lock.locked():
            await say({"error": "a self-test is already running on this post"})
            writer.close()
            return
        interactive = bool(asked.get("interactive", True))
        report, saved = await self.daemon.self_test("technician", interactive, say, local)
        await say({"report": report, "saved": saved})
        writer.close()
