"""A network namespace joined to the host by a veth pair: a second machine on a cable that can be cut.

A broker (or a daemon) started with :meth:`NetnsLink.run_prefix` runs in the
namespace and is reached at :attr:`NetnsLink.inner_ip`; :meth:`NetnsLink.cut`
cuts the cable, so packets either way go nowhere (no RST, no ICMP: the host's
connections hang until their own timeouts notice), and :meth:`NetnsLink.restore`
mends it.

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2; :func:`why_unavailable`
says what is missing.  Each link has its own names and its own 10.77.X.0/24, so
parallel test runs do not clash; the namespace, the veth pair and the route are
always removed on close, even after a failed start.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import random
import re
import secrets
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from hw_sim.paths import MissingTool, tool

SUBNET_PREFIX = "10.77"
BLACKHOLE_METRIC = 4000  # under the link's own route: should that route go, the subnet's packets stop here
ALLOCATION_LOCK = Path(tempfile.gettempdir()) / "alarmpost-netns.lock"


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message has its error output."""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its output."""
    done = subprocess.run([tool("ip"), *args], capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@functools.cache
def why_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None if they can (tried once per process)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        probe = f"approbe{secrets.token_hex(3)}"
        ip("netns", "add", probe)
        ip("netns", "del", probe)
    except MissingTool as exc:
        return str(exc)
    except NetnsError as exc:
        return f"cannot make a network namespace: {exc}"
    return None


def available() -> bool:
    return why_unavailable() is None


class NetnsLink:
    """A namespace with a veth pair to the host: 10.77.X.1 on the host's end, 10.77.X.2 inside.

    Example (as root)::

        import subprocess
        from hw_sim.netns import NetnsLink

        with NetnsLink() as link:
            server = subprocess.Popen([*link.run_prefix(), "python3", "-m", "http.server", "-b", link.inner_ip])
            ...                 # the host reaches http://{link.inner_ip}:8000/
            link.cut()          # now it does not: packets go nowhere
            link.restore()
            server.terminate()
    """

    def __init__(self) -> None:
        token = secrets.token_hex(3)
        self.name = f"apns{token}"  # the namespace
        self.host_end = f"apv{token}h"  # interface names: at most 15 characters
        self.inner_end = f"apv{token}n"
        self.subnet = ""  # 10.77.X, chosen on open
        self.is_open = False

    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def inner_ip(self) -> str:
        return f"{self.subnet}.2"

    def run_prefix(self) -> list[str]:
        """The words to put before a command to run it inside the namespace."""
        return [tool("ip"), "netns", "exec", self.name]

    def open(self) -> NetnsLink:
        """Make the namespace, the veth pair and their addresses; on any failure undo what was made."""
        try:
            ip("netns", "add", self.name)
            self.is_open = True
            ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.inner_end, "netns", self.name)
            ip("-n", self.name, "link", "set", "lo", "up")
            with _allocation_lock():
                self.subnet = _free_subnet()
                self._address()
        except BaseException:
            self.close()
            raise
        return self

    def _address(self) -> None:
        ip("addr", "add", f"{self.host_ip}/24", "dev", self.host_end)
        ip("link", "set", self.host_end, "up")
        ip("-n", self.name, "addr", "add", f"{self.inner_ip}/24", "dev", self.inner_end)
        ip("-n", self.name, "link", "set", self.inner_end, "up")
        # Should the host's end ever lose its route, the subnet's packets stop here instead of going out to the LAN.
        ip("route", "add", "blackhole", f"{self.subnet}.0/24", "metric", str(BLACKHOLE_METRIC))

    def cut(self) -> None:
        """Cut the cable: nothing passes either way until :meth:`restore`.

        The namespace's end goes down, so the host's end loses its carrier but
        keeps its address and route: the host's packets go into the veth and are
        dropped there, and a connect from the host hangs until its own timeout,
        as when a line fails beyond the post's router.  (Taking the host's end
        down instead would drop its route, and the host's packets would follow
        the default route out to the LAN.)
        """
        ip("-n", self.name, "link", "set", self.inner_end, "down")

    def restore(self) -> None:
        """Mend the cable (the namespace's end comes up with its address and route)."""
        ip("-n", self.name, "link", "set", self.inner_end, "up")

    def close(self) -> None:
        """Remove the veth pair, the route and the namespace, killing whatever still runs inside."""
        if not self.is_open:
            return
        ip("link", "del", self.host_end, check=False)  # takes its peer with it
        if self.subnet:
            ip("route", "del", "blackhole", f"{self.subnet}.0/24", "metric", str(BLACKHOLE_METRIC), check=False)
        self._kill_leftovers()
        ip("netns", "del", self.name, check=False)
        self.is_open = False

    def _kill_leftovers(self) -> None:
        """A namespace lives on (unnamed) while a process is in it: end the ones started in this one."""
        for pid in ip("netns", "pids", self.name, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> NetnsLink:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Serialises choosing a subnet and taking it, across processes (parallel test runs)."""
    with open(ALLOCATION_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # the lock goes with the file


def _free_subnet() -> str:
    """A 10.77.X that no address or route on the host uses yet."""
    taken = {int(x) for x in re.findall(r"\b10\.77\.(\d+)\.", ip("-4", "addr") + ip("-4", "route"))}
    free = [x for x in range(1, 255) if x not in taken]
    if not free:
        raise NetnsError(f"every {SUBNET_PREFIX}.X.0/24 is in use")
    return f"{SUBNET_PREFIX}.{random.choice(free)}"
