"""The simulated bench: a board running the real firmware under the MicroPython unix port.

The bench flashes the firmware into a folder that stands for the board's flash,
starts it as a MicroPython process with the board's heap limit, and wires it to
the bench through the simulated ``machine`` module.  It drives the inputs
(button with contact bounce, key switch, tamper, supply voltage), keeps the
hardware watchdog, and records every output change in a timestamped timeline.

Example::

    with Bench() as bench:
        bench.press()
        bench.wait_output("siren", True)
        assert bench.state == "alarm"
        bench.turn_key()
        bench.wait_state("idle")

Times are host ``time.monotonic()`` seconds; a press's time is its first edge.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alarmpost import events as ev
from alarmpost.eventnames import CODE_NAMES
from alarmpost.patterns import IDLE
from hw_sim import bounce
from hw_sim.build import sim_machine_dir
from hw_sim.paths import tool
from hw_sim.timeline import Timeline
from hw_sim.wire import Wire
from tools.boards import load_board
from tools.build import build

INPUTS = ("button", "key_switch", "tamper", "siren_sense")
OUTPUTS = ("strobe", "siren", "status_led", "alarm_line")
PWRON_RESET, WDT_RESET = 1, 3


_CALIBRATION = """
import gc
import asyncio
gc.collect()
before = gc.mem_alloc()
import machine
gc.collect()
print(gc.mem_alloc() - before)
"""


@functools.cache
def simulator_heap() -> int:
    """Heap bytes the simulated ``machine`` module itself takes (a board has it built in).

    The bench adds this to the board's ``heap_bytes``, so the firmware gets exactly
    the board's heap, and subtracts it from the heap figures it reports.  asyncio
    is counted as the firmware's: a board pays for it too.
    """
    result = subprocess.run(
        [tool("micropython"), "-X", "heapsize=1M", "-c", _CALIBRATION],
        env=dict(os.environ, ALARMPOST_BENCH="none", MICROPYPATH=f".frozen:{sim_machine_dir()}"),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.split()[-1])


class BenchError(RuntimeError):
    """The firmware did not do what a test waited for; carries its recent console."""


@dataclass(frozen=True)
class Logged:
    """A committed event as the console printed it, with the host time it arrived."""

    t: float
    event: ev.Event


@dataclass(frozen=True)
class Shown:
    """What the post showed, from an ``ST`` console line."""

    t: float
    state: str
    siren: bool
    testing: bool
    faults: int


class Bench:
    wdt_check_s = 0.005  # how often the bench's watchdog looks at the deadline
    boot_timeout_s = 10.0

    def __init__(
        self,
        board: str = "sim",
        flash: str | Path | None = None,
        config: dict[str, Any] | str | None = None,
        heap: int | None = None,
        compiled: bool = True,
        seed: int | None = None,
        wire: bool = False,
        flashed: bool = False,
    ):
        """``flashed``: ``flash`` already holds an image (written by the flash tool): boot it as it is."""
        self.board_name = board
        self.board = load_board(board)
        self.heap = heap or self.board["heap_bytes"]
        self.compiled = compiled
        self.rng = random.Random(seed)
        self.output_listeners: list[Callable[[str, bool], None]] = []  # (device, on) for each Pin output change
        self._want_wire = wire
        self.wire: Wire | None = None  # the UART wire to the Pi, with its pty (``wire=True``)
        self._own_flash = flash is None
        self.flashed = flashed
        self.flash = Path(flash) if flash else Path(tempfile.mkdtemp(prefix="alarmpost-flash-"))
        self._config = config
        self._sockdir = Path(tempfile.mkdtemp(prefix="alarmpost-bench-"))
        self.timeline = Timeline()
        self.logged: list[Logged] = []
        self.shown: list[Shown] = []
        self.console: list[str] = []
        self.troubles: list[str] = []
        self.boots: list[tuple[float, int]] = []  # (time, reset cause given)
        self.heap_samples: list[tuple[int, int]] = []
        self.ups = 0  # boots that reached the running state
        self.inputs_seen: list[tuple[float, str, bool]] = []  # input changes the firmware took in
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._levels: dict[int, int] = {}
        self._adc: dict[int, int] = {}
        self._pin_names = self._name_pins()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._wdt_timeout: float | None = None
        self._wdt_deadline: float | None = None
        self._closing = False
        self._generation = 0
        self._monitor: threading.Thread | None = None
        for device in INPUTS:
            pin = self._pin(device)
            if pin is not None:
                self._levels[pin] = self._level(device, False)
        self.siren_open_circuit = False  # a fault to inject: the siren's wire cut, no current through it
        self.supply_volts = 13.8
        if self.board["pins.supply_adc.pin"] is not None:
            self._adc[self.board["pins.supply_adc.pin"]] = self._adc_counts(self.supply_volts)

    # -- wiring ----------------------------------------------------------------------

    def _pin(self, device: str) -> int | None:
        pin: int | None = self.board[f"pins.{device}.pin"]
        return pin

    def _active_low(self, device: str) -> bool:
        return bool(self.board[f"pins.{device}.active"] == "low")

    def _level(self, device: str, active: bool) -> int:
        return int(active != self._active_low(device))

    def _name_pins(self) -> dict[int, str]:
        names = {}
        for device in INPUTS + OUTPUTS:
            pin = self._pin(device)
            if pin is not None:
                names[pin] = device
        return names

    def _adc_counts(self, volts: float) -> int:
        full_scale: float = self.board["supply_full_scale_v"]
        return max(0, min(65535, round(volts / full_scale * 65535)))

    # -- power -----------------------------------------------------------------------

    def flash_firmware(self) -> None:
        """Write the firmware, the board file and the config into the flash folder (unless ``flashed``)."""
        if self.flashed:
            return
        build(self.board_name, self.flash, compiled=self.compiled)
        if self._config is not None:
            text = self._config if isinstance(self._config, str) else json.dumps(self._config)
            (self.flash / "config.json").write_text(text)

    def start(self) -> Bench:
        """Flash the firmware and power the board on."""
        self.flash_firmware()
        if self._want_wire and self.wire is None:
            self.wire = Wire(self.board["uart.baud"], self.uart_in, seed=self.rng.randrange(1 << 30))
        self._monitor = threading.Thread(target=self._watch_dog, daemon=True, name="bench-watchdog")
        self._monitor.start()
        self.power_on()
        return self

    def __enter__(self) -> Bench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def power_on(self, cause: int = PWRON_RESET) -> None:
        with self._cond:
            if self._proc is not None:
                raise BenchError("the board is already powered")
            self._generation += 1
            generation = self._generation
            self._wdt_timeout = self._wdt_deadline = None
        path = self._sockdir / f"board{generation}.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        env = dict(
            os.environ,
            ALARMPOST_BENCH=str(path),
            ALARMPOST_RESET_CAUSE=str(cause),
            MICROPYPATH=f".frozen:{sim_machine_dir()}",
        )
        proc = subprocess.Popen(
            [tool("micropython"), "-X", f"heapsize={self.heap + simulator_heap()}", "main.py"],
            cwd=self.flash,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        server.settimeout(self.boot_timeout_s)
        try:
            conn, _ = server.accept()
        except TimeoutError:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            raise BenchError(f"the firmware did not start:\n{out}") from None
        finally:
            server.close()
            path.unlink()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        with self._cond:
            self._proc, self._conn = proc, conn
            self.boots.append((time.monotonic(), cause))
            self.timeline.add("power", True)
            self._cond.notify_all()
        initial = [f"I {pin} {level}" for pin, level in self._levels.items()]
        initial += [f"A {pin} {value}" for pin, value in self._adc.items()]
        self._send_lines(initial + ["."])
        threading.Thread(target=self._read_machine, args=(conn, generation), daemon=True).start()
        threading.Thread(target=self._read_console, args=(proc, generation), daemon=True).start()

    def power_cut(self) -> None:
        """Cut the power: the process dies wherever it is; the flash folder stays."""
        with self._cond:
            proc, conn = self._proc, self._conn
            self._proc = self._conn = None
            self._wdt_timeout = self._wdt_deadline = None
            self.timeline.add("power", False)
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if conn is not None:
            conn.close()
        for device in OUTPUTS:
            self.timeline.add(device, False)

    def restart(self, cause: int = PWRON_RESET) -> None:
        self.power_cut()
        self.power_on(cause)

    def stop(self) -> None:
        self._closing = True
        self.power_cut()
        if self.wire is not None:
            self.wire.close()
        shutil.rmtree(self._sockdir, ignore_errors=True)
        if self._own_flash:
            shutil.rmtree(self.flash, ignore_errors=True)

    @property
    def powered(self) -> bool:
        return self._proc is not None

    # -- the hardware watchdog ----------------------------------------------------------

    def _watch_dog(self) -> None:
        while not self._closing:
            time.sleep(self.wdt_check_s)
            with self._cond:
                expired = self._wdt_deadline is not None and time.monotonic() > self._wdt_deadline
            if expired and not self._closing:
                self.timeline.add("watchdog", True)
                self.restart(WDT_RESET)

    # -- what the board says --------------------------------------------------------------

    def _read_machine(self, conn: socket.socket, generation: int) -> None:
        buffer = b""
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            with self._cond:
                if generation != self._generation:
                    return
                for line in lines:
                    try:
                        self._machine_line(line.decode(), now)
                    except (ValueError, IndexError, UnicodeError) as exc:
                        self.console.append(f"BENCH bad line from the simulated machine {line!r}: {exc}")
                self._cond.notify_all()

    def _machine_line(self, line: str, now: float) -> None:
        kind, _, rest = line.partition(" ")
        args = rest.split()
        if kind == "O":
            device = self._pin_names.get(int(args[0]), f"pin{args[0]}")
            active = bool(int(args[1])) != self._active_low(device) if device in OUTPUTS else bool(int(args[1]))
            self.timeline.add(device, active, at=now)
            for listener in self.output_listeners:
                listener(device, active)
        elif kind == "W":
            pin, freq, duty = (int(a) for a in args)
            device = self._pin_names.get(pin, f"pin{pin}")
            level = 65535 - duty if device in OUTPUTS and self._active_low(device) else duty
            self.timeline.add(device, level > 0, level=level / 65535, freq=freq, at=now)
            if device == "siren":
                self._siren_current(level > 0)
        elif kind == "D":
            self._wdt_timeout = int(args[0]) / 1000
            self._wdt_deadline = now + self._wdt_timeout
        elif kind == "F" and self._wdt_timeout is not None:
            self._wdt_deadline = now + self._wdt_timeout
        elif kind == "U" and self.wire is not None:
            self.wire.from_board(bytes.fromhex(args[1]))
        elif kind == "S":
            self.heap_samples.append((int(args[0]), int(args[1])))
        elif kind == "R":
            threading.Thread(target=self.restart, args=(5,), daemon=True).start()

    def _siren_current(self, driven: bool) -> None:
        """The siren's current-sense input: active while the siren is driven, unless its circuit is open."""
        pin = self._pin("siren_sense")
        if pin is None:
            return
        level = self._level("siren_sense", driven and not self.siren_open_circuit)
        if self._levels.get(pin) != level:
            self._levels[pin] = level
            try:
                self._send_lines([f"E {pin} 0:{level}"])
            except (BenchError, OSError):
                pass  # the power was cut meanwhile: the level is sent with the others at the next power-on

    def _read_console(self, proc: subprocess.Popen[bytes], generation: int) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            now = time.monotonic()
            with self._cond:
                if generation != self._generation:
                    return
                self.console.append(line)
                self._console_line(line, now)
                self._cond.notify_all()

    def _console_line(self, line: str, now: float) -> None:
        event = ev.parse_console_line(line)
        if event is not None:
            self.logged.append(Logged(now, event))
        elif line.startswith("ST "):
            state, siren, testing, faults = line.split()[1:5]
            self.shown.append(Shown(now, state, siren == "1", testing == "1", int(faults)))
        elif line.startswith("IN "):
            _, device, level = line.split()
            self.inputs_seen.append((now, device, level == "1"))
        elif line.startswith("UP "):
            self.ups += 1
        elif line.startswith("TR "):
            self.troubles.append(line[3:])

    # -- inputs ------------------------------------------------------------------------

    def _send_lines(self, lines: list[str]) -> None:
        conn = self._conn
        if conn is None:
            raise BenchError("the board is not powered")
        with self._send_lock:
            conn.sendall(("\n".join(lines) + "\n").encode())

    def _drive(self, device: str, edges: list[bounce.Edge]) -> float:
        """Play timed edges on an input; return the host time of the first edge.

        The edges go in one message and the simulated MCU plays them on its own
        clock, so a busy host cannot stretch a 1 ms glitch into a press.
        """
        pin = self._pin(device)
        if pin is None:
            raise BenchError(f"the board has no {device}")
        steps = ",".join(f"{round(offset * 1e6)}:{self._level(device, active)}" for offset, active in edges)
        self._levels[pin] = self._level(device, edges[-1][1])
        start = time.monotonic()
        self._send_lines([f"E {pin} {steps}"])
        for offset, active in edges:
            self.timeline.add(device, active, at=start + offset)
        return start

    def input_active(self, device: str) -> bool:
        """Whether the bench holds ``device`` (button, key switch, tamper loop) in its active state."""
        pin = self._pin(device)
        return pin is not None and self._levels.get(pin) == self._level(device, True)

    def press(self, bounce_contacts: bool = True) -> float:
        """Press the button (with realistic contact bounce); return the time of the first edge."""
        edges = bounce.bounce(self.rng, True) if bounce_contacts else [(0.0, True)]
        return self._drive("button", edges)

    def release(self, bounce_contacts: bool = True) -> float:
        edges = bounce.bounce(self.rng, False) if bounce_contacts else [(0.0, False)]
        return self._drive("button", edges)

    def glitch(self, width_ms: float = 1.0, device: str = "button") -> float:
        """A lone spike on an input, like interference on a long cable."""
        return self._drive(device, bounce.glitch(width_ms / 1000))

    def set_switch(self, device: str, active: bool) -> float:
        return self._drive(device, bounce.bounce(self.rng, active))

    def turn_key(self, hold_s: float = 0.15) -> None:
        """Turn the reset key switch and let it spring back."""
        self.set_switch("key_switch", True)
        time.sleep(hold_s)  # a person holds the key; this is the input, not a wait for the board
        self.set_switch("key_switch", False)

    def set_supply(self, volts: float) -> None:
        pin = self.board["pins.supply_adc.pin"]
        self.supply_volts = volts
        self._adc[pin] = self._adc_counts(volts)
        self._send_lines([f"A {pin} {self._adc[pin]}"])
        self.timeline.add("supply", True, level=volts)

    def uart_in(self, data: bytes) -> None:
        """Bytes arriving at the board's UART; lost while the board is off."""
        try:
            self._send_lines([f"U {self.board['uart.id']} {data.hex()}"])
        except (BenchError, OSError):
            pass

    def hang(self) -> None:
        """Hang the board's CPU in a loop that never returns."""
        self._send_lines(["H"])

    def heap_stats(self, timeout: float = 5.0) -> tuple[int, int]:
        """(bytes the firmware uses after a collection, bytes free), asked of the running firmware.

        The simulated ``machine`` module's own heap is not counted (see ``simulator_heap``).
        """
        with self._cond:
            count = len(self.heap_samples)
        self._send_lines(["S"])
        self.wait_for(lambda: len(self.heap_samples) > count, timeout, "heap statistics")
        used, free = self.heap_samples[count]
        return used - simulator_heap(), free

    # -- waiting and looking ------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self.console[-15:])
                    raise BenchError(f"timed out after {timeout} s waiting for {what}; console:\n{tail}")
                self._cond.wait(left)

    def wait_event(
        self, code: int, qualifier: int | None = None, since: int = 0, timeout: float = 5.0, **fields: int
    ) -> ev.Event:
        """The first logged event from index ``since`` with this code (and qualifier, fields)."""

        def find() -> ev.Event | None:
            for logged in self.logged[since:]:
                e = logged.event
                if e.code == code and qualifier in (None, e.qualifier):
                    if all(getattr(e, k) == v for k, v in fields.items()):
                        return e
            return None

        name = CODE_NAMES.get(code, str(code))
        found: ev.Event = self.wait_for(find, timeout, f"event {code} ({name})")
        return found

    def wait_state(self, state: str, timeout: float = 5.0, since: int = 0) -> Shown:
        def find() -> Shown | None:
            return next((s for s in self.shown[since:] if s.state == state), None)

        found: Shown = self.wait_for(find, timeout, f"state {state}")
        return found

    def wait_output(self, device: str, on: bool, after: float = 0.0, timeout: float = 5.0) -> float:
        """The time ``device`` was first seen on (or off) after ``after``."""
        found: float = self.wait_for(
            lambda: self.timeline.first(device, on, after), timeout, f"{device} {'on' if on else 'off'}"
        )
        return found

    def wait_boot(self, count: int, timeout: float = 10.0) -> None:
        """Wait until the board has booted ``count`` times and its tasks are running."""
        self.wait_for(lambda: self.ups >= count, timeout, f"boot {count}")

    def wait_input(self, device: str, active: bool, since: int = 0, timeout: float = 5.0) -> float:
        """When the firmware took in ``device`` becoming active (or inactive), from index ``since``."""
        found: float = self.wait_for(
            lambda: next((t for t, d, a in self.inputs_seen[since:] if d == device and a == active), None),
            timeout,
            f"the firmware to see {device} {'active' if active else 'inactive'}",
        )
        return found

    @property
    def state(self) -> str:
        with self._cond:
            return self.shown[-1].state if self.shown else IDLE

    def is_on(self, device: str) -> bool:
        return self.timeline.current(device)

    def events(self, code: int | None = None) -> list[ev.Event]:
        with self._cond:
            return [x.event for x in self.logged if code is None or x.event.code == code]
