"""The UART wire between the board and the Pi, with the Pi's end on a pty.

The Pi's daemon opens ``wire.path`` with pyserial exactly as it opens
``/dev/ttyAMA0`` on a Pi.  Bytes take as long as the baud rate says (ten bit
times each), and on the way they meet the faults the bench sets: bit errors at
a given rate, dropped and duplicated bytes, or a cut wire.  A board reset in
the middle of a frame needs nothing here: the bench stops the board and the
frame ends short.

>>> wire = Wire(115200, to_board=bench.uart_in)
>>> wire.bit_error_rate = 1e-3
>>> serial.Serial(wire.path, 115200)
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
import tty
from collections.abc import Callable


class Wire:
    bit_error_rate = 0.0  # probability that any one bit arrives flipped
    drop_rate = 0.0  # probability that a byte is lost
    duplicate_rate = 0.0  # probability that a byte arrives twice

    def __init__(self, baud: int, to_board: Callable[[bytes], None], seed: int | None = None) -> None:
        self.baud = baud
        self.to_board = to_board
        self.rng = random.Random(seed)
        self.connected = True
        self.flipped_bits = self.dropped = self.duplicated = self.cut_bytes = 0
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: a serial port
        self.path = os.ttyname(self._slave)  # the slave stays open so the master never reads EIO
        self._to_pi: queue.Queue[bytes | None] = queue.Queue()
        self._to_board: queue.Queue[bytes | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read_pi, daemon=True, name="wire-from-pi"),
            threading.Thread(target=self._pace, args=(self._to_pi, self._write_pi), daemon=True, name="wire-to-pi"),
            threading.Thread(target=self._pace, args=(self._to_board, to_board), daemon=True, name="wire-to-board"),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def faults(self) -> int:
        return self.flipped_bits + self.dropped + self.duplicated + self.cut_bytes

    def from_board(self, data: bytes) -> None:
        """Bytes the board's UART sent."""
        self._to_pi.put(self._mangle(data))

    def cut(self) -> None:
        self.connected = False

    def mend(self) -> None:
        self.connected = True

    def close(self) -> None:
        self._closed = True
        self._to_pi.put(None)
        self._to_board.put(None)
        os.close(self._slave)  # wakes the reader with EIO or EOF
        for thread in self._threads:
            thread.join(timeout=1)
        os.close(self._master)

    def _mangle(self, data: bytes) -> bytes:
        with self._lock:
            if not self.connected:
                self.cut_bytes += len(data)
                return b""
            if not (self.bit_error_rate or self.drop_rate or self.duplicate_rate):
                return data
            out = bytearray()
            for byte in data:
                if self.rng.random() < self.drop_rate:
                    self.dropped += 1
                    continue
                for bit in range(8):
                    if self.bit_error_rate and self.rng.random() < self.bit_error_rate:
                        byte ^= 1 << bit
                        self.flipped_bits += 1
                out.append(byte)
                if self.rng.random() < self.duplicate_rate:
                    out.append(byte)
                    self.duplicated += 1
            return bytes(out)

    def _read_pi(self) -> None:
        while not self._closed:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                return
            self._to_board.put(self._mangle(data))

    def _write_pi(self, data: bytes) -> None:
        os.write(self._master, data)

    def _pace(self, chunks: queue.Queue[bytes | None], deliver: Callable[[bytes], None]) -> None:
        """Deliver each chunk when its last bit would have crossed the wire."""
        free_at = 0.0
        while True:
            data = chunks.get()
            if data is None:
                return
            if not data:
                continue
            done = max(time.monotonic(), free_at) + len(data) * 10 / self.baud
            free_at = done
            while time.monotonic() < done:
                time.sleep(max(0.0, min(done - time.monotonic(), 0.001)))
            try:
                deliver(data)
            except OSError:
                return
