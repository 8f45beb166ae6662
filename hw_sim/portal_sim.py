"""The gate WiFi's firewall on the simulated bench: the same interface as
:class:`captive_portal.firewall.Firewall`, kept in memory, for ``make sim`` on a machine
without root, where the portal serves loopback and "phones" are browsers on this machine.

Each loopback address stands for one phone, with a made-up MAC address
(:func:`loopback_mac`), so a person can open the splash page and accept.

>>> import ipaddress
>>> from captive_portal.firewall import Client
>>> fw = MemoryFirewall(ipaddress.IPv4Network("127.0.0.0/16"), clock=lambda: 100.0)
>>> phone = Client.parse("127.0.0.1", loopback_mac("127.0.0.1"), fw.network)
>>> fw.allow(phone, 60); fw.remaining(phone)
60
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable

from captive_portal.firewall import Client


def loopback_mac(ip: str) -> str:
    """A locally administered MAC address standing for the phone at loopback address ``ip``."""
    octets = ipaddress.IPv4Address(ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


class MemoryFirewall:
    """Sessions with deadlines, as the kernel's set keeps them."""

    def __init__(self, network: ipaddress.IPv4Network, clock: Callable[[], float] = time.monotonic) -> None:
        self.network = network
        self._clock = clock
        self._until: dict[Client, float] = {}
        self._lock = threading.Lock()

    def load(self, ruleset: str) -> None:
        with self._lock:
            self._until.clear()

    def allow(self, client: Client, seconds: int) -> None:
        with self._lock:
            self._until[client] = self._clock() + seconds

    def revoke_all(self) -> None:
        with self._lock:
            self._until.clear()

    def revoke(self, client: Client) -> bool:
        with self._lock:
            return self._until.pop(client, None) is not None

    def remaining(self, client: Client) -> int | None:
        with self._lock:
            left = self._until.get(client, 0.0) - self._clock()
            if left <= 0:
                self._until.pop(client, None)
                return None
            return round(left)

    def sessions(self) -> dict[Client, int]:
        with self._lock:
            now = self._clock()
            return {c: round(t - now) for c, t in self._until.items() if t > now}
