"""systemd service notifications (``sd_notify``) without dependencies.

Under a ``Type=notify`` unit, systemd passes a datagram socket in ``$NOTIFY_SOCKET``; the
daemon tells it when it is ready (``READY=1``), that it is alive (``WATCHDOG=1``, at least once
per ``WatchdogSec``, or systemd kills and restarts it), what it is doing (``STATUS=...``) and
that it is stopping (``STOPPING=1``).  Outside systemd every call is a no-op returning False,
so the daemon runs the same on a bench.

>>> import os
>>> _ = os.environ.pop("NOTIFY_SOCKET", None)  # not under systemd
>>> ready()
False

A daemon's main loop::

    from edge_daemon import sdnotify

    interval = sdnotify.watchdog_interval()  # None when the unit has no WatchdogSec
    sdnotify.ready()
    sdnotify.status("link up, 0 events pending")
    while running:
        ...  # serve, waking at least every `interval` seconds
        sdnotify.watchdog()
    sdnotify.stopping()
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or an abstract name given as ``@name``."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other transports are not used on a Pi


def notify(message: str) -> bool:
    """Send ``message`` (``KEY=value`` lines) to systemd; True if it was sent.

    False when ``$NOTIFY_SOCKET`` is unset (not under systemd), names a transport other than
    a Unix socket, or the send fails (logged as a warning; the daemon goes on).
    """
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _address(value)
    if address is None:
        log.warning("NOTIFY_SOCKET %r is not a Unix socket address; not notifying", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        log.warning("systemd notification failed: %s", exc, extra={"notify_socket": value})
        return False
    return True


def ready() -> bool:
    """Tell systemd that start-up is complete (``READY=1``); units ordered after this one start now."""
    return notify("READY=1")


def stopping() -> bool:
    """Tell systemd that the daemon is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1")


def watchdog() -> bool:
    """Tell systemd that the daemon is alive (``WATCHDOG=1``); send it every :func:`watchdog_interval`."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """Show ``text`` in ``systemctl status`` (``STATUS=...``); line breaks become spaces."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_interval() -> float | None:
    """Seconds between :func:`watchdog` calls (half of ``WatchdogSec``), or None without a watchdog.

    Read from ``$WATCHDOG_USEC``; None when it is unset or not a positive integer, or when
    ``$WATCHDOG_PID`` is set to another process's id (the watchdog is not meant for us).

    >>> import os
    >>> os.environ["WATCHDOG_USEC"] = "10000000"
    >>> watchdog_interval()
    5.0
    >>> del os.environ["WATCHDOG_USEC"]
    >>> watchdog_interval() is None
    True
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        period = int(usec)
    except ValueError:
        return None
    if period <= 0:
        return None
    return period / 2 / 1_000_000
