"""The alarm post: reads the board file and config, builds the devices, runs the tasks.

Boot order puts life safety first: outputs are driven to a safe "off" before
anything else, the watchdog starts, the journal is opened, and an alarm that was
latched before a reset or power cut is raised again before the tasks start.

Console lines (USB REPL on a board, read by the bench in simulation):
``EV seq boot uptime code qualifier zone value`` for every committed event,
``ST state siren test faults`` when what the post shows changes, ``IN input level``
when the firmware has taken in an input change, ``UP boot`` once the tasks run, ``TR text`` for
a trouble that needs a person (a bad config field, a failed flash write).

>>> import alarmpost.app
>>> alarmpost.app.run()        # never returns
"""

import asyncio
import gc
import os
import sys
import time

import machine

from alarmpost import events, patterns
from alarmpost.alarm import Alarm
from alarmpost.inputs import Button, Switch
from alarmpost.journal import Journal
from alarmpost.outputs import Blinker, DigitalOutput, NullOutput, Siren, Strobe
from alarmpost.supervisor import Supervisor
from alarmpost.supply import Supply

LATCH_FILE = "latched"


def _unload(module):
    sys.modules.pop("alarmpost." + module, None)
    package = sys.modules["alarmpost"]
    if module in package.__dict__:
        delattr(package, module)


class Post:
    main_loop_ms = 100
    gc_every = 10  # main-loop turns between garbage collections

    def __init__(self, folder="."):
        self.folder = folder
        self._uptime = 0
        self._uptime_mark = time.ticks_ms()
        self._presses_since_reset = 0
        self._config_trouble_open = False
        self.faults = {}  # (code, zone) -> True while active: troubles, tamper, supply
        self.testing = False
        self.listeners = []
        self.seq = 0
        self.boot_count = 1
        self._shown = None
        self._load_settings()
        self._build_outputs()
        self.alarm = Alarm(self.show, self.emit, self._set_latch_file)
        self.alarm.siren_cutoff_s = self.config["siren_cutoff_s"]
        self.supervisor = Supervisor(machine.WDT(timeout=self.config["wdt_timeout_ms"]), self.config["wdt_timeout_ms"])
        self.journal = Journal(folder, self.config["journal_records"])

    # -- set-up -----------------------------------------------------------------

    def _path(self, name):
        return name if self.folder in ("", ".") else self.folder + "/" + name

    def _load_settings(self):
        from alarmpost import settings

        self.setting_errors = []
        board, config = [], []
        for name, parsed in (("board.json", board), ("config.json", config)):
            data, error = settings.load_json(self._path(name))
            if error:
                self.setting_errors.append(error)
            parsed.append(data)
        self.board, board_errors = settings.check_board(board[0])
        self.config, config_errors = settings.check_config(config[0], self.board)
        self.setting_errors += board_errors + config_errors
        _unload("settings")  # the schema is only needed at boot: give its heap back

    def _pin(self, device):
        pin = self.board["pins.%s.pin" % device]
        if pin is None:
            return None
        return pin, self.board.get("pins.%s.active" % device) == "low"

    def _device(self, device, build, fallback):
        wiring = self._pin(device)
        if wiring is None:
            return fallback
        try:
            return build(*wiring)
        except (ValueError, OSError) as exc:
            self.setting_errors.append("pins.%s: %s" % (device, exc))
            return fallback

    def _build_outputs(self):
        board, config = self.board, self.config
        self.strobe = self._device("strobe", lambda p, low: Strobe(p, board["strobe_pwm_hz"], low), NullOutput())
        self.siren = self._device("siren", lambda p, low: Siren(p, config["siren_low_hz"], low), NullOutput())
        self.led = self._device("status_led", Blinker, NullOutput())
        self.alarm_line = self._device("alarm_line", DigitalOutput, NullOutput())
        self.strobe.duty_pct = config["strobe_duty_pct"]
        for name in ("low_hz", "high_hz", "sweep_ms", "step_ms", "duty_pct"):
            setattr(self.siren, name, config["siren_" + name])

    def _input(self, device, cls, **callbacks):
        wiring = self._pin(device)
        if wiring is None:
            return None
        pull = self.board["pins.%s.pull" % device]
        return self._device(device, lambda p, low: cls(p, low, pull, **callbacks), None)

    def _build_inputs(self):
        config = self.config
        self.button = self._input(
            "button",
            Button,
            on_press=self._pressed,
            on_long_press=self.alarm.long_press,
            on_stuck=self._stuck,
            on_release=self._released,
        )
        if self.button is not None:
            for name in ("glitch_ms", "debounce_ms", "long_press_ms", "stuck_ms"):
                setattr(self.button, name, config[name])
        self.key_switch = self._input("key_switch", Switch, on_change=self._key_turned)
        self.tamper = self._input("tamper", Switch, on_change=self._tampered)
        for switch in (self.key_switch, self.tamper):
            if switch is not None:
                switch.debounce_ms = config["switch_debounce_ms"]
        self.supply = self._device("supply_adc", self._build_supply, None)

    def _build_supply(self, pin, active_low):
        config = self.config
        supply = Supply(
            machine.ADC(machine.Pin(pin)),
            self.board["supply_full_scale_v"],
            config["ac_loss_v"],
            config["low_battery_v"],
            self._supply_changed,
        )
        supply.poll_ms = config["supply_poll_ms"]
        supply.confirm_ms = config["supply_confirm_ms"]
        supply.hysteresis_v = config["supply_hysteresis_v"]
        return supply

    # -- what the post shows ------------------------------------------------------

    def show(self):
        state = self.alarm.state
        strobe, siren, led = patterns.choose(state, self.alarm.siren_allowed, self.testing, bool(self.faults))
        self.strobe.show(strobe)
        self.siren.show(siren)
        self.led.show(led)
        self.alarm_line.set(self.alarm.latched)
        shown = (state, int(bool(siren)), int(self.testing), len(self.faults))
        if shown != self._shown:
            self._shown = shown
            print("ST %s %d %d %d" % shown)

    # -- events ---------------------------------------------------------------------

    def emit(self, code, qualifier, zone, value=0):
        """Journal an event, print it and hand it to listeners (the link to the Pi)."""
        self.seq += 1
        event = events.Event(self.seq, self.boot_count, self.uptime_ms(), code, qualifier, zone, value)
        try:
            self.journal.append(event)
        except OSError as exc:
            print("TR journal write failed:", exc)
        print(event.console_line())
        for listener in self.listeners:
            listener(event)
        return event

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
        path = self._path(LATCH_FILE)
        try:
            if latched:
                open(path, "w").close()
            else:
                os.remove(path)
        except OSError:
            pass

    def _latch_file_exists(self):
        try:
            os.stat(self._path(LATCH_FILE))
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
        if not turned:
            return
        if not self.alarm.reset(events.ZONE_KEY_SWITCH) and not self.testing:
            asyncio.create_task(self._manual_test())

    async def _manual_test(self):
        self.testing = True
        self.emit(events.MANUAL_TEST, events.NEW, events.ZONE_KEY_SWITCH)
        self.show()
        await asyncio.sleep(self.config["test_pattern_s"])
        self.testing = False
        self.show()

    def _tampered(self, open_):
        print("IN tamper %d" % open_)
        self._fault(events.TAMPER, events.ZONE_TAMPER, open_)

    def _supply_changed(self, code, active, volts):
        self._fault(code, events.ZONE_SUPPLY, active, int(volts * 100))

    # -- running ----------------------------------------------------------------------

    def _replay(self, event):
        """Learn from the journal what RAM lost: presses since the last reset, an open config trouble."""
        if event.code == events.PANIC and event.value != events.PRESS_LONG:
            self._presses_since_reset += 1
        elif event.code == events.PANIC_RESET:
            self._presses_since_reset = 0
        elif event.code == events.SYSTEM_TROUBLE and event.zone == events.ZONE_CONFIG:
            self._config_trouble_open = event.qualifier == events.NEW

    def boot(self):
        self.show()
        self.journal.open(self._replay)
        last = self.journal.last
        if last is not None:
            self.seq = last.seq
            self.boot_count = (last.boot + 1) & 0xFFFF
        self._build_inputs()
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
        for name, output in (("strobe", self.strobe), ("siren", self.siren), ("status LED", self.led)):
            self.supervisor.watch(name, lambda output=output: not output.alive())
        asyncio.create_task(self.supervisor.run())
        print("UP %d" % self.boot_count)
        turns = 0
        while True:
            self.supervisor.main_loop_turned()
            self.uptime_ms()
            self.alarm.check_siren_cutoff()
            turns += 1
            if turns % self.gc_every == 0:
                gc.collect()
            await asyncio.sleep_ms(self.main_loop_ms)


def run(folder="."):
    asyncio.run(Post(folder).run())
