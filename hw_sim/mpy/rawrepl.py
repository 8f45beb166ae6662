# A simulated board's REPL on this process's stdin and stdout (the master side of a pty), for
# mpremote, run by the MicroPython unix port in the board's flash folder (hw_sim/pty_board.py).
#
# It speaks what mpremote needs of a board's USB serial REPL, as MicroPython's pyexec.c does:
# Ctrl-A enters the raw REPL ("raw REPL; CTRL-B to exit\r\n>"); there, a command ends with
# Ctrl-D and is answered "OK", its output, "\x04", its traceback, "\x04", then ">"; an empty
# command soft-resets ("OK\r\nMPY: soft reboot\r\n" and the raw REPL again); Ctrl-E "A" Ctrl-A
# asks for raw-paste mode ("R\x01", the window size, "\x01" after each window the board took).
# Globals stay from one command to the next until a soft reset, as on a board.
# machine.reset() boots the board: with a main.py the process ends (the board runs its
# firmware: the bench does that), without one the board comes back to its REPL.
import io
import os
import sys

WINDOW = 256  # raw-paste flow control: bytes the host may send before the board says "\x01"
BANNER = b"raw REPL; CTRL-B to exit\r\n"

_in = sys.stdin.buffer
_out = sys.stdout.buffer


class Reset(Exception):
    pass


class PowerOff(Exception):
    pass


class machine:  # noqa: N801  (what "import machine" finds: only the reset of a board)
    @staticmethod
    def reset():
        raise Reset

    @staticmethod
    def soft_reset():
        raise Reset


sys.modules["machine"] = machine


def read_byte():
    data = _in.read(1)
    if not data:
        raise PowerOff  # the pty is gone
    return data[0]


def execute(code, scope):
    """Run ``code``: its output, "\\x04", its traceback, "\\x04"."""
    trace = ""
    try:
        exec(code, scope)
    except (Reset, PowerOff):
        raise
    except BaseException as exc:  # noqa: BLE001  (a board prints every exception and carries on)
        text = io.StringIO()
        sys.print_exception(exc, text)
        trace = text.getvalue()
    _out.write(b"\x04" + trace.encode() + b"\x04")


def raw_paste():
    """Read a command under raw-paste flow control; None if the host broke off (Ctrl-C)."""
    _out.write(b"R\x01" + bytes((WINDOW & 0xFF, WINDOW >> 8)))
    code = bytearray()
    remain = WINDOW
    while True:
        c = read_byte()
        if c in (3, 4):
            _out.write(b"\x04")
            return bytes(code) if c == 4 else None
        code.append(c)
        remain -= 1
        if remain == 0:
            _out.write(b"\x01")
            remain = WINDOW


def raw_repl(scope):
    """The raw REPL until Ctrl-B (returns False) or a soft reset (returns True); ``scope``: its globals."""
    _out.write(BANNER + b">")
    line = bytearray()
    while True:
        c = read_byte()
        if c == 1:
            if bytes(line) == b"\x05A":
                code = raw_paste()
                if code is not None:
                    execute(code, scope)
                line = bytearray()
                _out.write(b">")
                continue
            line = bytearray()
            _out.write(BANNER + b">")
        elif c == 2:
            _out.write(b"\r\n")
            return False
        elif c == 3:
            line = bytearray()
        elif c == 4:
            _out.write(b"OK")
            if not line:
                _out.write(b"\r\n")
                return True
            execute(bytes(line), scope)
            line = bytearray()
            _out.write(b">")
        else:
            line.append(c)


def friendly_repl():
    """Only what gets a host into the raw REPL: Ctrl-A; Ctrl-D soft-resets; the rest is ignored."""
    _out.write(b"MicroPython (simulated board)\r\n>>> ")
    while True:
        c = read_byte()
        if c == 1:
            return
        if c == 4:
            _out.write(b"MPY: soft reboot\r\n>>> ")


def has_firmware():
    try:
        os.stat("main.py")
        return True
    except OSError:
        return False


def main():
    while True:
        scope = {"__name__": "__main__"}  # kept until a soft reset, as a board keeps its globals
        try:
            friendly_repl()
            while True:
                if raw_repl(scope):
                    scope = {"__name__": "__main__"}
                    _out.write(b"MPY: soft reboot\r\n")
                    continue
                friendly_repl()
        except PowerOff:
            return
        except Reset:
            if has_firmware():
                return


main()
