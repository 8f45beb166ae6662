"""Who is let out: the nftables set of accepted phones, each element with its own timeout.

A phone that accepts is added to the set ``allowed`` of the table ``inet alarmpost_portal``
(see :mod:`captive_portal.netconf`) as ``IP . MAC`` with ``timeout`` = the session length.
The kernel deletes the element when the time is up, so a session ends on time even if
the portal has crashed; the portal keeps a copy of the deadlines only to answer quickly.

Commands go to the kernel through libnftables in this process (no shell, no ``nft``
process per phone: an accept costs well under a millisecond).  Every address is
checked before it reaches a command: :class:`Client` only holds an IPv4 address inside
the gate network and a unicast MAC address, written back in canonical form.

>>> Client.parse("10.73.0.23", "02:AB:cd:00:00:01", ipaddress.IPv4Network("10.73.0.0/22"))
Client(ip=IPv4Address('10.73.0.23'), mac='02:ab:cd:00:00:01')
>>> Client.parse("10.73.0.23", "ff:ff:ff:ff:ff:ff", ipaddress.IPv4Network("10.73.0.0/22"))
Traceback (most recent call last):
  ...
ValueError: 'ff:ff:ff:ff:ff:ff' is not a unicast MAC address
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE = "alarmpost_portal"
ALLOWED_SET = "allowed"
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
NFT_CTX_OUTPUT_JSON = 1 << 4
EXPIRES = re.compile(r"expires ((?:\d+(?:ms|d|h|m|s))+)")
DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class FirewallError(RuntimeError):
    """nftables refused a command; the message is nft's own."""


@dataclass(frozen=True)
class Client:
    """A phone on the gate network: its IPv4 address and the MAC address it joined with."""

    ip: ipaddress.IPv4Address
    mac: str

    @classmethod
    def parse(cls, ip: str, mac: str, network: ipaddress.IPv4Network) -> Client:
        """A checked client; ValueError says what is wrong with ``ip`` or ``mac``."""
        try:
            address = ipaddress.IPv4Address(ip)
        except (ipaddress.AddressValueError, ValueError):
            raise ValueError(f"{ip!r} is not an IPv4 address") from None
        if address not in network or address in (network.network_address, network.broadcast_address):
            raise ValueError(f"{ip} is not a host on the gate network {network}")
        canonical = mac.lower() if isinstance(mac, str) else ""
        if not MAC.fullmatch(canonical):
            raise ValueError(f"{mac!r} is not a MAC address (six colon-separated hex bytes)")
        if int(canonical[:2], 16) & 1 or canonical == "00:00:00:00:00:00":
            raise ValueError(f"{mac!r} is not a unicast MAC address")
        return cls(address, canonical)

    @property
    def element(self) -> str:
        return f"{self.ip} . {self.mac}"


class Nftables:
    """libnftables in this process: run command text, get JSON back."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise FirewallError(f"libnftables is not installed ({exc}): apt-get install nftables") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name_ in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name_).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for name_ in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name_).argtypes = [ctypes.c_void_p]
            getattr(lib, name_).restype = ctypes.c_char_p
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, commands: str, as_json: bool = False) -> str:
        """Run nft command text (one batch: all of it or none); the output, or FirewallError."""
        with self._lock:
            self._lib.nft_ctx_output_set_flags(self._ctx, NFT_CTX_OUTPUT_JSON if as_json else 0)
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if status != 0:
            raise FirewallError(error.strip() or f"nft failed ({status})")
        return output


class Firewall:
    """The set of accepted phones, written through :class:`Nftables`.

    Reading the kernel's set costs time that grows with its size (libnftables fetches the
    set to look one element up), so the portal answers "is this phone online, for how
    long" from its own copy of the deadlines and re-reads the set on every
    :meth:`sessions` (the portal's sweep, every few seconds): a session the kernel has
    ended, or that was deleted by hand, leaves the copy then.  Enforcement is the
    kernel's alone.

    >>> fw = Firewall(ipaddress.IPv4Network("10.73.0.0/22"))  # doctest: +SKIP
    >>> fw.load(Path("portal.nft").read_text())  # doctest: +SKIP
    >>> fw.allow(Client.parse("10.73.0.23", "02:00:00:00:00:01", fw.network), 3600)  # doctest: +SKIP
    >>> fw.remaining(Client.parse("10.73.0.23", "02:00:00:00:00:01", fw.network))  # doctest: +SKIP
    3600
    """

    def __init__(
        self, network: ipaddress.IPv4Network, nft: Nftables | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.network = network
        self._nft = nft or Nftables()
        self._clock = clock
        self._until: dict[Client, float] = {}  # the copy: each online phone's deadline
        self._lock = threading.Lock()

    def load(self, ruleset: str) -> None:
        """Replace the portal's table with ``ruleset`` (atomically: the old one stays on error).

        The new table's set is empty: every session ends.
        """
        self._nft.run(ruleset)
        with self._lock:
            self._until.clear()

    def allow(self, client: Client, seconds: int) -> None:
        """Let ``client`` out for ``seconds`` from now (a running session starts afresh)."""
        self._check(client)
        if not 1 <= seconds <= 7 * 86400:
            raise ValueError(f"a session of {seconds} s is out of range (1 s to 7 days)")
        # One batch, all or nothing: make sure the element exists, delete it, add it with the new
        # timeout (a running session starts afresh; an element's timeout cannot be changed in place,
        # and the kernel may have ended the session a moment before the copy noticed).
        element = f"inet {TABLE} {ALLOWED_SET} {{ {client.element} }}"
        self._nft.run(
            f"add element {element}\ndelete element {element}\n"
            f"add element inet {TABLE} {ALLOWED_SET} {{ {client.element} timeout {int(seconds)}s }}\n"
        )
        with self._lock:
            self._until[client] = self._clock() + seconds

    def revoke_all(self) -> None:
        """End every session now (the portal is stopping: nobody stays online without a log)."""
        self._nft.run(f"flush set inet {TABLE} {ALLOWED_SET}")
        with self._lock:
            self._until.clear()

    def revoke(self, client: Client) -> bool:
        """End ``client``'s session now; False if it had none."""
        self._check(client)
        with self._lock:
            self._until.pop(client, None)
        try:
            self._nft.run(self._delete(client))
        except FirewallError:
            return False
        return True

    def remaining(self, client: Client) -> int | None:
        """Seconds left in ``client``'s session, or None if it has none."""
        with self._lock:
            left = self._until.get(client, 0.0) - self._clock()
            if left <= 0:
                self._until.pop(client, None)
                return None
        return max(1, round(left))

    def kernel_remaining(self, client: Client) -> int | None:
        """Seconds left in ``client``'s session as the kernel's set has it (slower: for checks by hand)."""
        self._check(client)
        try:
            # nft prints 'get element' as text even when asked for JSON
            out = self._nft.run(f"get element inet {TABLE} {ALLOWED_SET} {{ {client.element} }}")
        except FirewallError:
            return None
        found = EXPIRES.search(out)
        if found is None:
            return None
        return round(sum(int(n) * UNIT_S[unit] for n, unit in DURATION_PART.findall(found.group(1))))

    def sessions(self) -> dict[Client, int]:
        """Every client in the kernel's set, with the seconds it has left; the copy follows it."""
        out = self._nft.run(f"list set inet {TABLE} {ALLOWED_SET}", as_json=True)
        found: dict[Client, int] = {}
        for element in _elements(out):
            ip, mac = element["val"]["concat"]
            try:
                client = Client.parse(ip, mac, self.network)
            except ValueError:
                continue  # put there by hand, outside the gate network: not ours to report
            found[client] = int(element.get("expires", element.get("timeout", 0)))
        now = self._clock()
        with self._lock:
            self._until = {c: self._until.get(c, now + left) for c, left in found.items()}
        return found

    def _delete(self, client: Client) -> str:
        return f"delete element inet {TABLE} {ALLOWED_SET} {{ {client.element} }}\n"

    def _check(self, client: Client) -> None:
        # Client.parse has checked it; re-check here so a hand-built Client cannot carry text into nft
        if not isinstance(client.ip, ipaddress.IPv4Address) or client.ip not in self.network:
            raise ValueError(f"{client.ip!r} is not a host on the gate network {self.network}")
        if not MAC.fullmatch(client.mac):
            raise ValueError(f"{client.mac!r} is not a MAC address")


def _elements(json_text: str) -> list[dict[str, Any]]:
    """The set elements in nft's JSON output, each as ``{"val": ..., "timeout": s, "expires": s}``."""
    found = []
    for item in json.loads(json_text or "{}").get("nftables", []):
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, dict) and "elem" in element:
                found.append(element["elem"])
            else:
                found.append({"val": element})
    return found


class NeighbourTable:
    """The MAC addresses the kernel has resolved on the gate network (``/proc/net/arp``).

    Read whole and kept for :attr:`max_age_s`; a phone not in the copy makes it read again
    at once.  A phone's SYN is answered only after the kernel has resolved its address, so a
    phone that has sent a request is always in the table.

    >>> NeighbourTable(Path("/nonexistent"))("10.73.0.23") is None
    True
    """

    max_age_s = 1.0  # an address is reused by DHCP only long after its last packet

    def __init__(self, path: Path = Path("/proc/net/arp"), clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._macs: dict[str, str] = {}
        self._read_at = -math.inf

    def __call__(self, ip: str) -> str | None:
        if self._clock() - self._read_at > self.max_age_s or ip not in self._macs:
            self._read()
        return self._macs.get(ip)

    def _read(self) -> None:
        try:
            lines = self.path.read_text().splitlines()[1:]
        except OSError:
            lines = []
        macs = {}
        for line in lines:
            fields = line.split()
            # IP address, HW type, Flags, HW address, Mask, Device; flag 0x2: complete
            if len(fields) >= 4 and int(fields[2], 16) & 0x2:
                macs[fields[0]] = fields[3].lower()
        self._macs, self._read_at = macs, self._clock()
