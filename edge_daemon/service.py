"""The edge daemon: the serial link to the board, the local store, the GPIO wires, systemd.

One asyncio loop does everything: the serial port is read when it has bytes
(``add_reader`` on pyserial's file descriptor), the link's heartbeats and
timeouts run from a tick several times a second, and gpiozero's callbacks are
handed into the loop.  systemd is told READY once the store and the port are
open and fed WATCHDOG from the same tick, so a stuck loop is restarted.
SIGTERM stops it cleanly: the port and the store are closed, nothing half-written.

>>> asyncio.run(serve(load_config(Path("/etc/alarmpost/edge.toml"))))
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import serial

from alarmpost import codec
from alarmpost import events as ev
from edge_daemon import contract, sdnotify
from edge_daemon.auth import load_key
from edge_daemon.commands import CommandDesk
from edge_daemon.config import Config
from edge_daemon.contract import Topics
from edge_daemon.link import BoardLink
from edge_daemon.selftest import SelfTest, SelfTestServer, save_report
from edge_daemon.store import EventStore
from edge_daemon.uplink import Uplink
from edge_daemon.video import Video, VideoLink

try:
    DAEMON_VERSION = version("alarmpost")
except PackageNotFoundError:  # run from a source tree that was not installed
    DAEMON_VERSION = "0+unknown"

log = logging.getLogger("edge_daemon")

TICK_S = 0.05
NO_CAMERA = ("unavailable", "the camera did not start (see the daemon's log)", None)


class Daemon:
    """The running daemon's parts, so tests and the sim console can look inside."""

    def __init__(self, config: Config, pin_factory: Any = None) -> None:
        self.config = config
        self.store = EventStore(config.store.path, max_events=config.store.max_events)
        self.port = serial.Serial(config.serial.port, config.serial.baud, timeout=0, write_timeout=1)
        self.link = BoardLink(
            self.store,
            config.board.name,
            self.port.write,
            config.link.heartbeat_s,
            config.link.timeout_s,
            config.link.ack_timeout_s,
        )
        self.alarm_line: Any = None
        self.board_reset: Any = None
        self._pin_factory = pin_factory
        self.stopping = asyncio.Event()
        self.uplink: Uplink | None = None
        self.desk: CommandDesk | None = None
        self.video: Video | None = None
        self.video_link: VideoLink | None = None
        self._ptz_password: str | None = None
        # each committed event goes to these, as (event, source): the pictures, the self-test
        self.event_listeners: list[Callable[[ev.Event, str], None]] = []
        self.link.on_stored = self._tell_listeners
        self.selftest_server: SelfTestServer | None = None
        self.selftest_lock = asyncio.Lock()  # one self-test at a time: a technician's or the periodic one
        self.selftest_failing = self.store.get_state("selftest_failing") == "1"
        if config.uplink.enabled:
            self._make_uplink(config)

    def _make_uplink(self, config: Config) -> None:
        settings = config.uplink
        topics = Topics(settings.site, config.board.name)
        password = Path(settings.password_file).read_text().strip() if settings.password_file else None
        key = load_key(settings.command_key_file)
        self.uplink = Uplink(
            settings, topics, self.store, self.post_state, password, lambda: asdict(self.link.counters), key=key
        )
        self.uplink.on_trouble = self._confirm_trouble
        self.desk = CommandDesk(key, self.store, self.link, topics)
        self.desk.local["replay"] = self._replay
        self.uplink.on_command = self.desk.handle
        if config.camera.enabled:
            video_file = settings.video_password_file
            self._make_video(config, topics, Path(video_file).read_text().strip() if video_file else password)
        if settings.homeassistant:
            from edge_daemon.homeassistant import Discovery

            discovery = Discovery(self.uplink, settings.discovery_prefix, DAEMON_VERSION)
            self.uplink.extra_on_connect.append(discovery.announce)
            self.uplink.on_request = self.desk.handle_unsigned

    def _make_video(self, config: Config, topics: Topics, password: str | None) -> None:
        from edge_daemon.camera import open_camera
        from edge_daemon.video import Video, VideoLink

        assert self.desk is not None
        self.video_link = VideoLink(config.uplink, topics, password)
        self.video = Video(open_camera(config.camera), self.video_link.publish)
        self.video.configure(config.camera)
        self._ptz_password = self._read_ptz_password(config.camera.ptz_password_file)
        self.desk.local["snapshot"] = self._snapshot
        self.desk.local["stream"] = self._stream
        self.desk.local["stream_stop"] = self._stream_stop
        self.event_listeners.append(self._event_stored)

    @staticmethod
    def _read_ptz_password(path: str) -> str | None:
        if not path:
            return None
        try:
            return Path(path).read_text().strip()
        except OSError as exc:  # the dome camera will refuse us; the alarm goes on regardless
            log.error("cannot read camera.ptz_password_file", extra={"error": str(exc)})
            return None

    def _start_video(self, video: Video, link: VideoLink) -> None:
        """Start the camera; one that cannot start costs the pictures, never the alarms."""
        from edge_daemon.camera import CameraError

        try:
            video.start()
        except CameraError as exc:
            log.error("no pictures: the camera did not start", extra={"error": str(exc)})
            video.stop()
            self.video = None
            return
        link.start()

    def _confirm_trouble(self, active: bool) -> None:
        """Events wait too long for the centre's receipt: Contact ID 354, kept in the outbox like any event."""
        self.link.own_event(ev.EVENT_NOT_SENT, ev.NEW if active else ev.RESTORE, ev.ZONE_UPLINK)

    def _event_stored(self, event: ev.Event, source: str) -> None:
        """A press (or the alarm line) starts the pictures and turns the dome camera; a reset ends the stream."""
        video = self.video
        if video is None:
            return
        if event.code == ev.PANIC and event.qualifier == ev.NEW and not video.alarm_running:
            uid = self.store.uid_of(self.config.board.name, source, event.boot, event.seq) or ""
            video.alarm(uid, time.time())
            self._turn_dome_camera()
        elif event.code in (ev.PANIC_RESET, ev.CANCEL):
            video.alarm_cleared()

    def _tell_listeners(self, event: ev.Event, source: str) -> None:
        for listener in list(self.event_listeners):
            try:
                listener(event, source)
            except Exception:  # one part's fault must not keep the event from the others
                log.exception("an event listener failed", extra={"code": event.code})

    def own_event(self, code: int, qualifier: int, zone: int, value: int = 0) -> str:
        """An event of the daemon's own, into the store and the outbox; its uid."""
        uid = self.link.own_event(code, qualifier, zone, value)
        if self.uplink is not None:
            self.uplink.pump()
        return uid

    async def self_test(
        self, trigger: str, interactive: bool, say: Any = None, local: list[dict[str, Any]] | None = None
    ) -> tuple[dict[str, Any], str]:
        """Run the self-test: (its report, the file it was saved in).  The report is also published on
        ``selftest``; one that failed raises 307 (restored by the next that passes)."""

        async def quiet(message: dict[str, Any]) -> None:
            pass

        async with self.selftest_lock:
            report = await SelfTest(self, trigger, interactive, say or quiet).run(local)
        saved = ""
        try:
            saved = str(await asyncio.to_thread(save_report, Path(self.config.selftest.report_dir), report))
        except OSError as exc:
            log.error("the self-test's report could not be saved", extra={"error": str(exc)})
        if self.uplink is not None:
            try:
                self.uplink.publish("selftest", report)
            except contract.ContractError as exc:  # the report is saved and 307 still follows
                log.error("the self-test's report could not be sent", extra={"error": str(exc)})
        failing = report["result"] == "fail"
        if failing != self.selftest_failing:
            self.selftest_failing = failing
            self.store.set_state("selftest_failing", "1" if failing else "0")
            self.own_event(ev.SELF_TEST_FAILURE, ev.NEW if failing else ev.RESTORE, ev.ZONE_SYSTEM)
        log.info("self-test done", extra={"trigger": trigger, "result": report["result"], "saved": saved})
        return report, saved

    async def _periodic_self_test(self) -> None:
        every_s = self.config.selftest.every_h * 3600
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.self_test("periodic", interactive=False)
            except Exception:
                log.exception("the periodic self-test could not run")

    def _turn_dome_camera(self) -> None:
        camera = self.config.camera
        if not camera.ptz_url:
            return
        from edge_daemon.onvif import PtzError, goto_preset

        password = self._ptz_password

        def turn() -> None:
            try:
                goto_preset(
                    camera.ptz_url, camera.ptz_profile, camera.ptz_preset, camera.ptz_username or None, password
                )
                log.info("dome camera turned to its alarm preset", extra={"preset": camera.ptz_preset})
            except PtzError as exc:
                log.error("the dome camera did not turn", extra={"error": str(exc)})

        threading.Thread(target=turn, name="ptz", daemon=True).start()

    async def _snapshot(self, args: dict[str, Any]) -> tuple[str, str, Any]:
        if self.video is None:
            return NO_CAMERA
        self.video.snapshot()
        return "ok", "the next frame goes to snapshots", None

    async def _stream(self, args: dict[str, Any]) -> tuple[str, str, Any]:
        if self.video is None:
            return NO_CAMERA
        seconds = min(args.get("seconds", 60), self.video.stream_max_s)
        self.video.stream(seconds)
        return "ok", f"streaming for {seconds:g} s", {"seconds": seconds}

    async def _stream_stop(self, args: dict[str, Any]) -> tuple[str, str, Any]:
        if self.video is None:
            return NO_CAMERA
        self.video.stream_stop()
        return "ok", "stream stopped", None

    async def _replay(self, args: dict[str, Any]) -> tuple[str, str, Any]:
        assert self.uplink is not None
        if not self.uplink.connected:
            return "failed", "not connected to the broker", None
        sent = self.uplink.replay(args["from"], min(args.get("count", 1000), 1000))
        return "ok", f"{sent} events queued to be sent again", {"sent": sent}

    def post_state(self) -> dict[str, Any]:
        """The post's state as the centre sees it (the ``state`` payload)."""
        link, board = self.link, self.link.board_state
        line = self._alarm_line_level()
        up = link.up is True
        outputs: dict[str, bool | None]
        if up and board is not None:
            alarm = board.alarm if board.alarm in contract.ALARM_STATES else "unknown"
            outputs = {"siren": board.siren, "strobe": board.strobe, "testing": board.testing}
        else:
            alarm = "alarm" if line else "unknown"  # the hard-wired line still tells a latched alarm
            outputs = {"siren": None, "strobe": None, "testing": None}
        info = link.info
        if self.uplink is not None:
            unconfirmed, oldest_s = self.uplink.outbox_age()
            trouble = self.uplink.trouble
        else:
            (unconfirmed, _), oldest_s, trouble = self.store.backlog(), None, False
        return {
            "alarm": alarm,
            "alarm_line": line,
            "outputs": outputs,
            "faults": board.faults if up and board is not None else None,
            "link": "unknown" if link.up is None else ("up" if up else "down"),
            "board": {
                "name": info.board if info else None,
                "boot": info.boot if info else None,
                "seq": board.seq if board else None,
            },
            "versions": {
                "api": contract.API,
                "daemon": DAEMON_VERSION,
                "firmware": info.firmware if info else None,
                "protocol": codec.VERSION,
            },
            "events": {
                "store": self.store.store_id,
                "last_n": self.store.last_id(),
                "unconfirmed": unconfirmed,
                "oldest_unconfirmed_s": oldest_s,
                "trouble": trouble,
            },
            "updated_at": contract.iso_time(time.time()),
        }

    def _alarm_line_level(self) -> bool | None:
        if self.alarm_line is None:
            return None
        try:
            return bool(self.alarm_line.active)
        except Exception:  # closed while stopping
            return None

    def _read_port(self) -> None:
        try:
            data = self.port.read(self.port.in_waiting or 1)
        except serial.SerialException as exc:
            log.error("serial port failed", extra={"error": str(exc)})
            self.stopping.set()
            return
        self.link.feed(data)
        self._uplink_tick()

    def _alarm_line_changed(self, active: bool) -> None:
        log.warning("alarm line " + ("active" if active else "clear"), extra={"board": self.config.board.name})
        self.link.own_event(ev.PANIC, ev.NEW if active else ev.RESTORE, ev.ZONE_ALARM_LINE)
        self._uplink_tick()

    def _start_gpio(self, loop: asyncio.AbstractEventLoop) -> None:
        gpio = self.config.gpio
        if not gpio.enabled:
            return
        from edge_daemon.wiring import AlarmLine, BoardReset

        self.alarm_line = AlarmLine(
            gpio.alarm_line_pin,
            gpio.alarm_line_active == "high",
            lambda active: loop.call_soon_threadsafe(self._alarm_line_changed, active),
            self._pin_factory,
        )
        self.board_reset = BoardReset(
            gpio.board_reset_pin, gpio.board_reset_active == "high", gpio.reset_pulse_ms, self._pin_factory
        )
        if self.alarm_line.active:
            self._alarm_line_changed(True)

    def _uplink_tick(self) -> None:
        """Let the uplink send what is due; a fault in it never stops the link and the store."""
        if self.uplink is None:
            return
        try:
            self.uplink.tick()
        except Exception:
            log.exception("the uplink failed a turn; events stay in the store until it recovers")

    def reset_board(self) -> None:
        if self.board_reset is not None:
            log.warning("pulsing the board's reset", extra={"board": self.config.board.name})
            self.board_reset.pulse()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.port.fileno(), self._read_port)
        self._start_gpio(loop)
        if self.uplink is not None:
            self.uplink.start()
        if self.video is not None and self.video_link is not None:
            self._start_video(self.video, self.video_link)
        periodic = asyncio.create_task(self._periodic_self_test()) if self.config.selftest.every_h > 0 else None
        if self.config.selftest.socket:
            self.selftest_server = SelfTestServer(self)
            try:
                await self.selftest_server.start(self.config.selftest.socket)
            except OSError as exc:
                log.error("no self-test socket", extra={"socket": self.config.selftest.socket, "error": str(exc)})
                self.selftest_server = None
        sdnotify.ready()
        watchdog = sdnotify.watchdog_interval()
        next_feed = loop.time()
        log.info("edge daemon running", extra={"port": self.config.serial.port, "board": self.config.board.name})
        try:
            while not self.stopping.is_set():
                self.link.tick()
                self._uplink_tick()
                if watchdog is not None and loop.time() >= next_feed:
                    sdnotify.watchdog()
                    next_feed = loop.time() + watchdog
                try:
                    await asyncio.wait_for(self.stopping.wait(), TICK_S)
                except TimeoutError:
                    pass
        finally:
            sdnotify.stopping()
            if periodic is not None:
                periodic.cancel()
            if self.selftest_server is not None:
                await self.selftest_server.stop()
            loop.remove_reader(self.port.fileno())
            if self.video is not None:
                await asyncio.to_thread(self.video.stop)
            if self.video_link is not None:
                self.video_link.stop()
            if self.uplink is not None:
                await self.uplink.stop()
            self.close()

    def close(self) -> None:
        for part in (self.alarm_line, self.board_reset):
            if part is not None:
                part.close()
        self.port.close()
        self.store.close()
        log.info("edge daemon stopped")


async def serve(config: Config, pin_factory: Any = None) -> None:
    daemon = Daemon(config, pin_factory)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stopping.set)
    await daemon.run()
