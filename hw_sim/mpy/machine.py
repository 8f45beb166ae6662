"""The simulated MCU's `machine` module, for the MicroPython unix port.

It stands in for the board's peripherals: every output change (Pin, PWM, UART
bytes, watchdog feeds) is sent to the bench as one text line, and the bench sends
input levels, ADC readings and UART bytes back.  Pin interrupts are delivered by
a small asyncio task that wakes as soon as the bench writes, the way a soft IRQ
runs between bytecodes on a board.

The bench's socket path comes from ALARMPOST_BENCH and the reset cause from
ALARMPOST_RESET_CAUSE.  Lines to the bench: ``O pin level``, ``W pin freq duty``,
``D timeout_ms``, ``F``, ``U id hex``, ``R``, ``S alloc free``.  Lines from it:
``I pin level``, ``E pin us:level,us:level,...`` (timed edges, played on the
board's clock from when the line arrives), ``A pin u16``, ``U id hex``, ``H`` (hang the CPU), ``S`` (heap
statistics), ``.`` (initial state complete).
"""

import asyncio
import gc
import io
import os
import socket
import struct
import sys
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_levels = {}
_adc = {}
_pins = {}
_uarts = {}


def _connect():
    path = os.getenv("ALARMPOST_BENCH")
    if not path:
        raise OSError("ALARMPOST_BENCH is not set: run the firmware from the bench")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(struct.pack("H108s", socket.AF_UNIX, path))
    return sock


_sock = None if os.getenv("ALARMPOST_BENCH") == "none" else _connect()  # "none": heap calibration only
_pending = b""


def _send(line):
    try:
        _sock.send(line.encode() + b"\n")
    except OSError:
        sys.exit(1)  # the bench is gone: the board has lost power


def _handle(line):
    kind = line[:1]
    if kind == b"I":
        _, pin, level = line.split()
        _set_input(int(pin), int(level))
    elif kind == b"E":
        _, pin, steps = line.split()
        _plan_edges(int(pin), [(int(at), int(level)) for at, level in (s.split(b":") for s in steps.split(b","))])
    elif kind == b"A":
        _, pin, value = line.split()
        _adc[int(pin)] = int(value)
    elif kind == b"U":
        _, uart_id, data = line.split()
        uart = _uarts.get(int(uart_id))
        if uart is not None:
            uart._received(bytes.fromhex(data))
    elif kind == b"S":
        gc.collect()
        _send("S %d %d" % (gc.mem_alloc(), gc.mem_free()))
    elif kind == b"H":
        while True:  # a hung CPU: nothing runs, the watchdog is not fed
            pass


_plans = {}  # pin -> (plan number, [(ticks_us, level), ...]): edges still being played
_plan_count = 0


def _plan_edges(pin, edges):
    """Timed edges from the bench, on the board's clock from now.

    The pin's *level* follows the plan's times exactly (``_level_now``), as a
    wire's does, however late the loop runs; the interrupts are delivered by a
    task, late if the loop is busy, as a real CPU's can be.  A new plan for the
    pin replaces one still playing.
    """
    global _plan_count
    start = time.ticks_us()
    _plan_count += 1
    plan = [(time.ticks_add(start, at), level) for at, level in edges]
    _plans[pin] = (_plan_count, plan)
    _set_input(pin, plan[0][1])
    if len(plan) > 1:
        asyncio.create_task(_play_edges(pin, _plan_count, plan))
    else:
        del _plans[pin]


async def _play_edges(pin, number, plan):
    for due, level in plan[1:]:
        wait = time.ticks_diff(due, time.ticks_us())
        if wait >= 1000:
            await asyncio.sleep_ms(wait // 1000)
            wait = time.ticks_diff(due, time.ticks_us())
        if wait > 0:
            time.sleep_us(wait)  # bounce gaps: a burst of interrupts keeps the CPU
        if _plans.get(pin, (None,))[0] != number:
            return  # a newer plan took over the pin
        _set_input(pin, level)
    del _plans[pin]


def _level_now(pin):
    level = _levels.get(pin, 0)
    plan = _plans.get(pin)
    if plan is not None:
        now = time.ticks_us()
        for due, planned in plan[1]:
            if time.ticks_diff(now, due) >= 0:
                level = planned
    return level


def _set_input(pin, level):
    old = _levels.get(pin)
    _levels[pin] = level
    obj = _pins.get(pin)
    if obj is not None and old is not None and old != level:
        obj._edge(level)


def _take_lines(data):
    global _pending
    _pending += data
    while True:
        end = _pending.find(b"\n")
        if end < 0:
            return
        line = _pending[:end]
        _pending = _pending[end + 1 :]
        if line == b".":
            return True
        _handle(line)


def _read_initial_state():
    while not _take_lines(_sock.recv(512)):
        pass


_buffer = bytearray(512)  # allocated once: the pump must not fragment the firmware's heap


async def _pump():
    view = memoryview(_buffer)
    while True:
        yield asyncio.core._io_queue.queue_read(_sock)
        count = _sock.readinto(_buffer)
        if not count:
            sys.exit(1)
        _take_lines(bytes(view[:count]))


if _sock is not None:
    _read_initial_state()
    _sock.setblocking(False)
    asyncio.create_task(_pump())


def reset_cause():
    return int(os.getenv("ALARMPOST_RESET_CAUSE") or PWRON_RESET)


def reset():
    _send("R")
    sys.exit(0)


def soft_reset():
    reset()


def unique_id():
    return (os.getenv("ALARMPOST_UNIQUE_ID") or "e6614103e7452d2f").encode()


def freq():
    return 125000000


def idle():
    pass


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


class Pin:
    """A GPIO pin.  Inputs read the level the bench last set; outputs report to it."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._mode = self.IN
        self._handler = None
        self._trigger = 0
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self._mode = mode
        if self._mode == self.IN:
            _pins[self.id] = self
            if self.id not in _levels:
                _levels[self.id] = 0 if pull == self.PULL_DOWN else 1
        elif value is not None:
            self.value(value)

    def value(self, level=None):
        if level is None:
            return _level_now(self.id) if self._mode == self.IN else _levels.get(self.id, 0)
        level = 1 if level else 0
        if self._mode != self.IN and _levels.get(self.id) != level:
            _levels[self.id] = level
            _send("O %d %d" % (self.id, level))
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, hard=False):
        self._handler = handler
        self._trigger = trigger

    def _edge(self, level):
        wanted = self.IRQ_RISING if level else self.IRQ_FALLING
        if self._handler is not None and self._trigger & wanted:
            self._handler(self)


class Signal:
    def __init__(self, pin, invert=False):
        self._pin = pin
        self._invert = invert

    def value(self, level=None):
        if level is None:
            return self._pin.value() ^ self._invert
        self._pin.value((1 if level else 0) ^ self._invert)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class PWM:
    """PWM output: every change of frequency or duty is reported to the bench."""

    def __init__(self, pin, freq=1000, duty_u16=0):
        self._pin = pin.id if isinstance(pin, Pin) else pin
        self._freq = freq
        self._duty = duty_u16
        self._report()

    def _report(self):
        _send("W %d %d %d" % (self._pin, self._freq, self._duty))

    def freq(self, value=None):
        if value is None:
            return self._freq
        if value != self._freq:
            self._freq = value
            self._report()
        return None

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        value = min(max(int(value), 0), 65535)
        if value != self._duty:
            self._duty = value
            self._report()
        return None

    def deinit(self):
        self.duty_u16(0)


class ADC:
    def __init__(self, pin):
        self._pin = pin.id if isinstance(pin, Pin) else pin

    def read_u16(self):
        return _adc.get(self._pin, 0)


class UART(io.IOBase):
    """A UART whose wire runs through the bench; pollable, so asyncio streams work on it."""

    def __init__(self, id, baudrate=115200, tx=None, rx=None, **kwargs):
        self.id = id
        self.baudrate = baudrate
        self._rx = bytearray()
        _uarts[id] = self

    def init(self, baudrate=115200, **kwargs):
        self.baudrate = baudrate

    def _received(self, data):
        self._rx.extend(data)

    def any(self):
        return len(self._rx)

    def ioctl(self, request, arg):
        if request == 3:  # MP_STREAM_POLL: readable when bytes wait, always writable
            return (arg & 1 if self._rx else 0) | (arg & 4)
        return 0

    def read(self, nbytes=None):
        if not self._rx:
            return None
        if nbytes is None or nbytes >= len(self._rx):
            data = bytes(self._rx)
            self._rx = bytearray()
        else:
            data = bytes(self._rx[:nbytes])
            self._rx = self._rx[nbytes:]
        return data

    def write(self, data):
        _send("U %d %s" % (self.id, bytes(data).hex()))
        return len(data)


class WDT:
    """The hardware watchdog, kept by the bench: unfed for `timeout` ms, the board resets."""

    def __init__(self, id=0, timeout=5000):
        _send("D %d" % timeout)

    def feed(self):
        _send("F")


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kwargs):
        self._task = None
        if kwargs:
            self.init(**kwargs)

    def init(self, mode=PERIODIC, period=1000, callback=None, freq=None):
        self.deinit()
        if freq:
            period = 1000 // freq
        self._task = asyncio.create_task(self._run(mode, period, callback))

    async def _run(self, mode, period, callback):
        while True:
            await asyncio.sleep_ms(period)
            callback(self)
            if mode == self.ONE_SHOT:
                return

    def deinit(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
