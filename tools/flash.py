"""Flash an alarm-post board over USB: build, check the board, copy what changed, verify, reset.

    make flash BOARD=rpi_pico PORT=/dev/ttyACM0
    python -m tools.flash rpi_pico /dev/ttyACM0 [--config my-config.json] [--json]

1. The image is built with mpy-cross (``tools.build``): ``main.py``, ``board.json``,
   ``alarmpost/*.mpy`` and, with ``--config``, the post's ``config.json`` (checked
   against the board first).
2. mpremote's serial transport opens ``PORT`` and enters the board's raw REPL.
3. The board is asked what it is: its MicroPython port (``sys.platform``) must be the
   board file's MCU's, and it must load the ``.mpy`` version mpy-cross wrote. Any
   refusal comes *before* anything is written: the board is left as it was.
4. Each file's SHA-256 on the board is compared with the image's; only files that differ
   are copied (each to a temporary name, then renamed over the old one), with progress.
   The build stamp ``alarmpost-build.json`` is removed first and written last, so a board
   whose flashing was cut off shows no stamp.
   A board running the firmware has it stopped first (``main.py`` moved aside, a reset):
   its watchdog, which nothing stops once started, would reset it in the middle of a copy.
   ``main.py`` is written last, then the stamp.
5. Every file is read back by hash. Then the board is reset and runs the new firmware.

A board already holding the same build is left as it is: nothing is copied (it is reset,
as after any flash, so that its firmware runs again after the tool interrupted it).
Exit status 0 on success, 1 when refused or failed (the message says what to do).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.boards import SettingsError, check_config, load_board
from tools.build import build
from tools.paths import FIRMWARE_DIR

STAMP = "alarmpost-build.json"
# The MicroPython port (sys.platform) each board file's "mcu" runs
MCU_PLATFORMS = {"RP2040": "rp2", "ESP32": "esp32", "unix port": "linux"}
CHUNK = 1024  # bytes of a file sent in one raw-REPL command

# Run on the board first, and quickly (a stopped firmware's watchdog still runs): what it is.
IDENTIFY = """
import sys, os
try:
    import hashlib
except ImportError:
    hashlib = None
try:
    os.stat('main.py')
    _main = True
except OSError:
    _main = False
print(repr({'platform': sys.platform, 'mpy': getattr(sys.implementation, '_mpy', 0),
            'hashlib': hashlib is not None, 'main': _main}))
"""

# Then: the SHA-256 of each file asked for (absent ones left out), and what else is in the package.
PROBE = """
import sys, os, binascii, hashlib
def _sha(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(512)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()
_out = {}
for _p in %r:
    try:
        _out[_p] = _sha(_p)
    except OSError:
        pass
try:
    _package = ['alarmpost/' + _n for _n in os.listdir('alarmpost')]
except OSError:
    _package = []
print(repr({'files': _out, 'package': _package}))
"""


def firmware_version() -> str:
    """The firmware's ``FIRMWARE_VERSION`` (read from its source: it imports the board's ``machine``)."""
    found = re.search(r'^FIRMWARE_VERSION = "([^"]+)"', (FIRMWARE_DIR / "alarmpost" / "post.py").read_text(), re.M)
    return found.group(1) if found else "unknown"


class FlashError(RuntimeError):
    """Flashing refused or failed; the message tells the technician what to do."""


@dataclass
class FlashReport:
    board: str
    port: str
    build: str
    files: int
    copied: int
    verified: int
    reset: bool
    flash_s: float


def image(board: str, config: Path | None = None) -> dict[str, bytes]:
    """The files to put on the board, by their path there, stamp included."""
    board_values = load_board(board)
    with tempfile.TemporaryDirectory(prefix="alarmpost-image-") as tmp:
        out = Path(tmp)
        build(board, out)
        files = {
            path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()
        }
    if config is not None:
        try:
            settings = json.loads(config.read_text())
            check_config(settings, board_values, str(config))
        except (OSError, ValueError) as exc:
            raise FlashError(f"{config}: {exc}") from None
        except SettingsError as exc:
            raise FlashError(str(exc)) from None
        files["config.json"] = json.dumps(settings).encode()
    identity = hashlib.sha256()
    for path, data in sorted(files.items()):
        identity.update(f"{path}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    stamp = {"board": board, "firmware": firmware_version(), "build": identity.hexdigest()[:16], "files": len(files)}
    files[STAMP] = json.dumps(stamp, sort_keys=True).encode()
    return files


def mpy_version(files: dict[str, bytes]) -> tuple[int, int]:
    """(version, native architecture) of the image's .mpy files, from their header (architecture 0: bytecode)."""
    header = next(data for path, data in files.items() if path.endswith(".mpy"))
    return header[1], header[2] >> 2


def check_board(board: str, found: dict[str, Any], files: dict[str, bytes], port: str) -> None:
    """Refuse a board of another kind, or one whose MicroPython cannot load the image."""
    mcu = load_board(board)["mcu"]
    wanted = MCU_PLATFORMS.get(mcu)
    if wanted is None:
        raise FlashError(f"the board file {board} names the MCU {mcu!r}, which this tool does not know")
    if found["platform"] != wanted:
        raise FlashError(
            f"{port} is a {found['platform']} board, not the {mcu} ({wanted}) that BOARD={board} is for:"
            f" check BOARD (the boards are in boards/) or the cable; nothing was written"
        )
    # MicroPython loads bytecode .mpy files of its own major version whatever their sub-version
    # (native code would also need the same sub-version and architecture: the image has none)
    version, native = mpy_version(files)
    theirs = found["mpy"] & 0xFF
    if theirs != version or native:
        raise FlashError(
            f"the board's MicroPython loads .mpy v{theirs}, the image is v{version}:"
            f" put the MicroPython release mpy-cross comes from on the board (UF2 or esptool) first;"
            f" nothing was written"
        )
    if not found["hashlib"]:
        raise FlashError("the board's MicroPython has no hashlib, so its files cannot be verified; nothing was written")


class Board:
    """The board behind ``port``, through mpremote's serial transport, in its raw REPL."""

    reconnect_s = 15.0  # a board's USB port is back this long after a reset, at most

    def __init__(self, port: str, timeout: float = 10.0) -> None:
        if not Path(port).exists():
            raise FlashError(
                f"{port}: no such device. Plug the board in by USB and find its port"
                " (ls /dev/ttyACM* /dev/ttyUSB*), then PORT=<that port>"
            )
        self.port, self.timeout = port, timeout
        self.in_repl = False
        self._connect()

    def _connect(self) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        transport = None
        try:
            # a read timeout: a port with nothing behind it must not hang the flash for ever
            transport = SerialTransport(self.port, baudrate=115200, timeout=self.timeout)
            transport.enter_raw_repl(soft_reset=False, timeout_overall=self.timeout)
            self.transport = transport
        except (TransportError, OSError) as exc:
            if transport is not None:
                transport.close()  # its lock on the port would refuse the next try
            raise FlashError(
                f"{self.port}: no MicroPython REPL answers ({exc}). Is MicroPython on the board"
                " (hold BOOTSEL and copy its UF2 on a Pico), or is another program using the port?"
            ) from None
        self.in_repl = True

    def identify(self) -> dict[str, Any]:
        found: dict[str, Any] = ast.literal_eval(self.transport.exec(IDENTIFY).decode().strip())
        return found

    def probe(self, paths: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = ast.literal_eval(self.transport.exec(PROBE % (paths,)).decode().strip())
        return found

    def rename(self, old: str, new: str) -> None:
        self.transport.exec(f"import os\nos.rename({old!r}, {new!r})")

    def stop_firmware(self) -> None:
        """Move main.py aside and reset: the firmware's watchdog, which nothing can stop once started,
        would otherwise reset the board in the middle of the copy.  The board comes back to its REPL."""
        self.transport.exec("import os\nos.rename('main.py', 'main.off')")
        self.reset()
        self.transport.close()
        deadline = time.monotonic() + self.reconnect_s
        while True:
            try:
                self._connect()
                return
            except FlashError:
                if time.monotonic() > deadline:
                    raise FlashError(
                        f"{self.port} did not come back after a reset; main.py is main.off on the board:"
                        " plug it in again and flash again"
                    ) from None
                time.sleep(0.5)  # the USB port re-enumerating: try again

    def write(self, path: str, data: bytes) -> None:
        parent = path.rpartition("/")[0]
        if parent:
            self.transport.exec(f"import os\ntry:\n os.mkdir({parent!r})\nexcept OSError:\n pass")
        self.transport.fs_writefile(path + ".new", data, chunk_size=CHUNK)
        self.transport.exec(f"import os\nos.rename({path + '.new'!r}, {path!r})")

    def remove(self, path: str) -> None:
        self.transport.exec(f"import os\ntry:\n os.remove({path!r})\nexcept OSError:\n pass")

    def reset(self) -> None:
        """Reset the board: it runs its firmware (or, without main.py, comes back to its REPL)."""
        self.transport.exec_raw_no_follow("import machine\nmachine.reset()")
        self.in_repl = False

    def close(self) -> None:
        self.transport.close()


def flash(
    board: str, port: str, config: Path | None = None, say: Callable[[str], None] = print, timeout: float = 10.0
) -> FlashReport:
    """Flash ``board``'s image onto the board at ``port``; FlashError says why not.

    Whatever happens once the board's REPL answered, the board is reset at the end, so a
    post never stays stopped in its REPL.  ``timeout``: how long the board has to answer."""
    from mpremote.transport import TransportError
    from serial import SerialException

    started = time.monotonic()
    try:
        files = image(board, config)
    except subprocess.CalledProcessError as exc:
        raise FlashError(f"mpy-cross failed, nothing was written:\n{exc.stderr}") from None
    device = Board(port, timeout)
    try:
        return _flash(device, board, port, files, say, started)
    except (TransportError, SerialException, OSError) as exc:
        raise FlashError(
            f"{port}: the board stopped answering ({exc or type(exc).__name__}); flash again. If main.py is"
            " missing on it, the firmware stays stopped until it is flashed"
        ) from None
    finally:
        try:
            if device.in_repl:
                device.reset()
        except (TransportError, SerialException, OSError):
            pass  # gone already: it resets by itself
        device.close()


def _flash(
    device: Board, board: str, port: str, files: dict[str, bytes], say: Callable[[str], None], started: float
) -> FlashReport:
    build_id = json.loads(files[STAMP])["build"]
    found = device.identify()
    check_board(board, found, files, port)
    set_aside = bool(found["main"])
    if set_aside:
        # at once: the stopped firmware's watchdog, which nothing stops, would reset it mid-copy
        say("stopping the firmware (main.py set aside, board reset)")
        device.stop_firmware()
    probed = device.probe(sorted(files) + ["main.off"])
    on_board = dict(probed["files"])
    if set_aside and "main.off" in on_board:
        on_board["main.py"] = on_board.pop("main.off")  # its content, set aside
    wanted = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    changed = [path for path in sorted(files) if on_board.get(path) != wanted[path]]
    stale = sorted(set(probed["package"]) - set(files))  # an old .py would be imported before its .mpy
    if not changed and not stale:
        if set_aside:
            device.rename("main.off", "main.py")
        say(f"{port}: already holds build {build_id} of {board}; nothing copied")
        return FlashReport(board, port, build_id, len(files), 0, len(files), True, time.monotonic() - started)
    device.remove(STAMP)
    for path in stale:
        say(f"removing {path} (not in this build)")
        device.remove(path)
    # main.py last: a board cut off before it boots to its REPL, not half a firmware; the stamp after it
    ordered = [path for path in changed if path not in ("main.py", STAMP)] + ["main.py", STAMP]
    for index, path in enumerate(ordered, 1):
        if path == "main.py" and path not in changed and set_aside:
            device.rename("main.off", "main.py")  # unchanged: back in its place
            continue
        say(f"[{index}/{len(ordered)}] {path} ({len(files[path]):,} bytes)")
        device.write(path, files[path])
    device.remove("main.off")
    after = device.probe(sorted(files))["files"]
    wrong = [path for path in sorted(files) if after.get(path) != wanted[path]]
    if wrong:
        raise FlashError(
            f"verify failed for {', '.join(wrong)}: the board holds other bytes than were sent;"
            " flash again, and if it fails again, erase the board's filesystem"
        )
    say(f"verified {len(files)} files by SHA-256; build {build_id}; resetting the board")
    return FlashReport(board, port, build_id, len(files), len(changed), len(files), True, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.flash", description=__doc__.splitlines()[0])
    parser.add_argument("board", help="the board file's name (boards/<name>.json), e.g. rpi_pico")
    parser.add_argument("port", nargs="?", default="", help="the board's serial port, e.g. /dev/ttyACM0")
    parser.add_argument("--config", type=Path, help="the post's config.json to put on the board")
    parser.add_argument("--json", action="store_true", help="end with the report as one JSON object")
    args = parser.parse_args(argv)
    if not args.port:
        print("flash: no port given: make flash BOARD=rpi_pico PORT=/dev/ttyACM0", file=sys.stderr)
        return 1
    try:
        report = flash(args.board, args.port, args.config)
    except (FlashError, SettingsError) as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
