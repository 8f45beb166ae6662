"""The alarm post: builds the devices from the checked board file and config, runs the tasks.

Boot order puts life safety first: outputs are driven to a safe "off" before
anything else, the watchdog starts, the journal is opened, and an alarm that was
latched before a reset or power cut is raised again before the tasks start.

Console lines (USB REPL on a board, read by the bench in simulation):
``EV seq boot uptime code qualifier zone value`` for every committed event,
``ST state siren test faults`` when what the post shows changes, ``IN input level``
when the firmware has taken in an input change, ``UP boot`` once the tasks run,
``TR text`` for a trouble that needs a person (a bad config field, a failed
flash write).

>>> post = Post(board, config, errors)
>>> asyncio.run(post.run())      # never returns
"""

import asyncio
import gc
import os
import time

import machine

from alarmpost import events, patterns
from alarmpost.alarm import Alarm
from alarmpost.journal import TROUBLES, Journal
from alarmpost.supervisor import Supervisor

LATCH_FILE = "latched"
FIRMWARE_VERSION = "0.2.0"


class Post:
    firmware_version = FIRMWARE_VERSION
    main_loop_ms = 100
    gc_every = 10  # main-loop turns between garbage collections
    log_full_pct = 90  # the journal this full of what the Pi has not stored: event 623
    log_clear_pct = 80  # 623 is restored below this, so a journal near the mark does not chatter
    chirp_ms = 80  # the siren check's chirp: long enough for the sense input, short enough to be a chirp
    chirp_duty_pct = 5  # ... and quiet: a tenth of the alarm's drive

    def __init__(self, board, config, setting_errors, folder="."):
        self.folder = folder
        self.board = board
        self.config = config
        self.setting_errors = setting_errors
        self._uptime = 0
        self._gone = 0  # events folded or dropped since the journal overflowed
        self._uptime_mark = time.ticks_ms()
        self._presses_since_reset = 0
        self._config_trouble_open = False
        self._log_full = False  # 623 reported and not restored
        self._log_overflow = False  # 624 reported and not restored
        self._dropped_reported = 0  # journal.dropped when 624 was last reported
        self.faults = {}  # (code, zone) -> True while active: troubles, tamper, supply
        self.testing = False
        self._next_check_ms = self.config["selftest_h"] * 3600000  # the first periodic siren check
        self.listeners = []
        self.seq = 0
        self.boot_count = 1
        self._shown = None
        self.sounding = self.flashing = False
        self.link = self.button = self.key_switch = self.tamper = self.supply = None
        from alarmpost import wiring

        wiring.outputs(self)  # first of all: every output driven to "off"
        self.alarm = Alarm(self.show, self.emit, self._set_latch_file)
        self.alarm.siren_cutoff_s = self.config["siren_cutoff_s"]
        self.supervisor = Supervisor(machine.WDT(timeout=self.config["wdt_timeout_ms"]), self.config["wdt_timeout_ms"])
        self.journal = Journal(
            folder, self.config["journal_records"], self.board["journal_bytes"], self.board["fs_block_bytes"]
        )

    # -- set-up -----------------------------------------------------------------

    def path(self, name):
        return name if self.folder in ("", ".") else self.folder + "/" + name

    # -- what the post shows ------------------------------------------------------

    def show(self):
        state = self.alarm.state
        strobe, siren, led = patterns.choose(state, self.alarm.siren_allowed, self.testing, bool(self.faults))
        self.strobe.show(strobe)
        self.siren.show(siren)
        self.led.show(led)
        self.alarm_line.set(self.alarm.latched)
        self.sounding = bool(siren)
        self.flashing = bool(strobe)
        shown = (state, int(bool(siren)), int(self.testing), len(self.faults))
        if shown != self._shown:
            self._shown = shown
            print("ST %s %d %d %d" % shown)
            if self.link is not None:
                self.link.beat_soon()

    # -- events ---------------------------------------------------------------------

    def emit(self, code, qualifier, zone, value=0):
        """Journal an event, print it and hand it to listeners (the link to the Pi)."""
        self.seq += 1
        event = events.Event(self.seq, self.boot_count, self.uptime_ms(), code, qualifier, zone, value)
        try:
            self.journal.append(event)
        except (OSError, MemoryError) as exc:
            print("TR journal write failed:", exc)
        print(event.console_line())
        for listener in self.listeners:
            listener(event)
        self.watch_journal()
        return event

    def watch_journal(self):
        """Report the journal filling up (623) and losing events before the Pi stored them (624).

        623 comes once when the journal reaches ``log_full_pct`` and is restored below
        ``log_clear_pct``.  624 comes each time room was made by folding or dropping,
        its value the number gone since the overflow began (so of repeated 624s, folded
        in turn, the latest has the count); it is restored, with the total, with 623, once
        both restores fit without making room (making it could lose an event after the total).
        The state changes before each report, so the report's own ``emit`` (which
        calls this again) finds nothing more to say unless its write made room too.
        """
        journal = self.journal
        pct = journal.fill_pct()
        if not self._log_full and (pct >= self.log_full_pct or journal.dropped > self._dropped_reported):
            self._log_full = True
            self.emit(events.LOG_FULL, events.NEW, events.ZONE_SYSTEM, pct)
        if journal.dropped > self._dropped_reported:
            if not self._log_overflow:
                self._log_overflow = True
                self._gone = 0
            self._gone += journal.dropped - self._dropped_reported
            self._dropped_reported = journal.dropped
            self.emit(events.LOG_OVERFLOW, events.NEW, events.ZONE_SYSTEM, min(self._gone, 0xFFFF))
        elif self._log_full and pct < self.log_clear_pct and journal.room(TROUBLES) >= 2:
            # both restores are written without making room: room made for them could drop an event
            # the total below has not counted (until the Pi's acknowledgements free a segment, wait)
            self._log_full = False
            self.emit(events.LOG_FULL, events.RESTORE, events.ZONE_SYSTEM, pct)
            if self._log_overflow:
                self._log_overflow = False
                self.emit(events.LOG_OVERFLOW, events.RESTORE, events.ZONE_SYSTEM, min(self._gone, 0xFFFF))

    def uptime_ms(self):
        """Milliseconds since boot, as the journal stores them (wraps after 49.7 days).

        ticks_ms() differences are only valid for 6.2 days on 32-bit ports, so the
        main loop folds them into a plain counter several times a second.
        """
        now = time.ticks_ms()
        self._uptime += time.ticks_diff(now, self._uptime_mark)
        self._uptime_mark = now
        return self._uptime & 0xFFFFFFFF

    def _fault(self, code, zone, active, value=0):
        key = (code, zone)
        if active == (key in self.faults):
            return
        if active:
            self.faults[key] = True
        else:
            del self.faults[key]
        self.show()
        self.emit(code, events.NEW if active else events.RESTORE, zone, value)

    def _set_latch_file(self, latched):
        path = self.path(LATCH_FILE)
        try:
            if latched:
                open(path, "w").close()
            else:
                os.remove(path)
        except OSError:
            pass

    def _latch_file_exists(self):
        try:
            os.stat(self.path(LATCH_FILE))
            return True
        except OSError:
            return False

    # -- input handlers ---------------------------------------------------------------

    def _pressed(self, at_boot):
        self.alarm.press(events.PRESS_AT_BOOT if at_boot else events.PRESS_FIRST)
        print("IN button 1")

    def _released(self):
        print("IN button 0")

    def _stuck(self, stuck):
        self._fault(events.SYSTEM_TROUBLE, events.ZONE_BUTTON, stuck, events.TROUBLE_STUCK_BUTTON)

    def _key_turned(self, turned):
        print("IN key_switch %d" % turned)
        if turned and not self.alarm.reset(events.ZONE_KEY_SWITCH):
            self.start_test(events.ZONE_KEY_SWITCH)

    def start_test(self, zone):
        if self.testing or self.alarm.latched:
            return False
        asyncio.create_task(self._manual_test(zone))
        return True

    async def _manual_test(self, zone):
        self.testing = True
        self.emit(events.MANUAL_TEST, events.NEW, zone)
        self.show()
        await asyncio.sleep(self.config["test_pattern_s"])
        self.testing = False
        self.show()

    def check_siren(self):
        """Chirp the siren briefly at low drive and read its current sense; the answer lands in
        ``siren.check`` (and an open circuit raises 307 on zone 10 until a check passes).
        False on a board without the input."""
        siren = self.siren
        if siren.sense is None:
            return False
        if siren.check != "pending":
            siren.check = "pending"
            asyncio.create_task(self._check_siren())
        return True

    def _periodic_check(self):
        """Every ``selftest_h`` hours of uptime, the siren's check (a quiet chirp): on its own, with no Pi."""
        period = self.config["selftest_h"] * 3600000
        if period and self._uptime >= self._next_check_ms:
            self._next_check_ms = self._uptime + period
            self.check_siren()

    async def _check_siren(self):
        siren = self.siren
        if self.sounding or self.alarm.latched or self.testing:
            siren.check = "busy"  # an alarm (even silenced) or a test: never sound the siren for a check
            return
        current = False
        try:
            siren.tone(siren.low_hz)
            siren.drive(65535 * self.chirp_duty_pct // 100)  # of full drive; Siren.step leaves it while pending
            for _ in range(self.chirp_ms // 10):  # a PWM's current comes and goes: any sample with current counts
                await asyncio.sleep_ms(10)
                current = current or siren.sense.is_active
        except Exception:  # noqa: BLE001 - a check that breaks must not stay pending for ever
            siren.check = "error"
            return
        finally:
            if not self.sounding:  # an alarm that started meanwhile keeps its siren
                siren.drive(0)
        siren.check = "ok" if current else "open"
        self._fault(events.SELF_TEST_FAILURE, events.ZONE_SIREN, not current)

    def _tampered(self, open_):
        print("IN tamper %d" % open_)
        self._fault(events.TAMPER, events.ZONE_TAMPER, open_)

    def _supply_changed(self, code, active, volts):
        self._fault(code, events.ZONE_SUPPLY, active, int(volts * 100))

    def link_changed(self, up):
        self._fault(events.COMM_TROUBLE, events.ZONE_LINK, not up)

    def command(self, command, args):
        """Carry out an operator command from the link: (result status, result data).

        The handlers live in ``commands``, loaded at boot and kept (see ``app.run``).
        """
        gc.collect()  # room for what the command allocates (the settings schema, for a config change)
        from alarmpost import commands

        return commands.handle(self, command, args)

    def _replay(self, event):
        """Learn from the journal what RAM lost: presses since the last reset, an open config trouble."""
        if event.code == events.PANIC and event.value != events.PRESS_LONG:
            self._presses_since_reset += 1
        elif event.code == events.PANIC_RESET:
            self._presses_since_reset = 0
        elif event.code == events.SYSTEM_TROUBLE and event.zone == events.ZONE_CONFIG:
            self._config_trouble_open = event.qualifier == events.NEW
        elif event.code == events.LOG_FULL:
            self._log_full = event.qualifier == events.NEW
        elif event.code == events.LOG_OVERFLOW:
            self._log_overflow = event.qualifier == events.NEW
            self._gone = event.value

    def boot(self):
        self.show()
        self.journal.open(self._replay)
        last = self.journal.last
        if last is not None:
            self.seq = last.seq
            self.boot_count = (last.boot + 1) & 0xFFFF
        from alarmpost import unload, wiring

        wiring.inputs(self)
        wiring.link(self)
        unload("wiring")  # needed only to build the devices
        self.emit(events.SYSTEM_RESET, events.NEW, events.ZONE_SYSTEM, machine.reset_cause())
        for error in self.setting_errors:
            print("TR config " + error)
        if self.setting_errors:
            self._fault(events.SYSTEM_TROUBLE, events.ZONE_CONFIG, True, len(self.setting_errors))
        elif self._config_trouble_open:
            self.emit(events.SYSTEM_TROUBLE, events.RESTORE, events.ZONE_CONFIG)
        if self._latch_file_exists():
            self.alarm.restore_latched(self._presses_since_reset)

    def _start(self, name, coro):
        task = asyncio.create_task(coro)
        self.supervisor.watch(name, task.done)
        return task

    async def run(self):
        self.boot()
        if self.button is not None:
            self._start("button", self.button.run())
        if self.key_switch is not None:
            self._start("key switch", self.key_switch.run())
        if self.tamper is not None:
            self._start("tamper", self.tamper.run(report_initial=True))
        if self.supply is not None:
            self._start("supply", self.supply.run())
        if self.link is not None:
            self._start("link receiver", self.link.receive())
            self._start("link sender", self.link.send())
        for name, output in (("strobe", self.strobe), ("siren", self.siren), ("status LED", self.led)):
            self.supervisor.watch(name, lambda output=output: not output.alive())
        asyncio.create_task(self.supervisor.run())
        print("UP %d" % self.boot_count)
        turns = 0
        while True:
            self.supervisor.main_loop_turned()
            self.uptime_ms()
            self.alarm.check_siren_cutoff()
            self.watch_journal()  # the Pi's acknowledgements free the journal between events
            self._periodic_check()
            turns += 1
            if turns % self.gc_every == 0:
                gc.collect()
            await asyncio.sleep_ms(self.main_loop_ms)
