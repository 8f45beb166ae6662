"""The gate WiFi's TOML config: one file for the access point, DHCP/DNS, the firewall and the portal.

Read the same way as the edge daemon's config: every key checked, every error named by
its dotted path, unknown keys refused.  ``[board]`` and ``[uplink]`` are the edge
daemon's own sections (the portal talks to the centre as the same post).

>>> config = parse_config('[wifi]\\nssid = "School gate"\\n[portal]\\nsession_s = 1800')
>>> config.wifi.ssid, config.portal.session_s, config.lan.address, config.lan.prefix
('School gate', 1800, '10.73.0.1', 22)
>>> try:
...     parse_config('[wifi]\\ncountry = "china"\\n[access_log]\\nretention_days = 30')
... except ConfigError as exc:
...     print(*exc.errors, sep="\\n")
wifi.country: "china" is not a two-letter ISO 3166 country code in capitals (e.g. CN)
access_log.retention_days: 30 is below the minimum 60

Check a file from the shell (prints ``FILE: ok``, or the errors and exits 1)::

    python -m captive_portal.config check /etc/alarmpost/portal.toml
"""

from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_daemon.config import (
    SECTIONS as EDGE_SECTIONS,
)
from edge_daemon.config import (
    BoardConfig,
    Check,
    ConfigError,
    LogConfig,
    Sections,
    UplinkConfig,
    _boolean,
    _choice,
    _integer,
    _optional_text,
    _show,
    _text,
    _uplink_checks,
    check_files_main,
    check_sections,
    read_toml,
    toml_table,
)

WifiMode = Literal["hostapd", "external"]
WIFI_MODES = ("hostapd", "external")
SECURITY = ("open", "owe")
HW_MODES = ("g", "a")
# Linux interface names: at most 15 bytes, no '/' or whitespace (and nothing nft or a shell would read)
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
CHANNELS_24 = range(1, 14)
CHANNELS_5 = (36, 40, 44, 48, 52, 56, 60, 64, 149, 153, 157, 161, 165)


@dataclass(frozen=True)
class WifiConfig:
    """The access point.  ``mode = "hostapd"``: the Pi (or its USB adapter) is the AP and a
    ``hostapd.conf`` is generated; ``"external"``: an access point in bridge mode with the Pi
    as gateway on ``lan.interface`` (switch on its client isolation)."""

    mode: WifiMode = "hostapd"
    interface: str = "wlan1"
    ssid: str = "校门安全WiFi"
    country: str = "CN"
    hw_mode: str = "g"
    channel: int = 6
    security: str = "open"
    max_clients: int = 64


@dataclass(frozen=True)
class LanConfig:
    """The parents' network: the gateway's address on ``interface``, the DHCP range and lease."""

    interface: str = "wlan1"
    address: str = "10.73.0.1"
    prefix: int = 22
    dhcp_start: str = "10.73.0.10"
    dhcp_end: str = "10.73.3.250"
    lease_s: int = 3600


@dataclass(frozen=True)
class WanConfig:
    """The way out: ``interface`` is masqueraded; ``dns_servers`` empty uses the Pi's own resolvers.

    ``blocked_networks``: networks beyond the private ranges that phones must never reach (the
    school's public addresses); the WAN interface's own networks are found when the portal starts."""

    interface: str = "eth0"
    dns_servers: tuple[str, ...] = ()
    blocked_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class PortalConfig:
    """The portal itself.  ``hostname`` is answered by DNS with ``lan.address``; sessions last
    ``session_s`` and are ended by the kernel; rates are per client.

    RFC 8908 asks for the API over HTTPS: with a certificate for ``hostname`` (a name the
    school owns, e.g. from its own domain) in ``tls_cert_file``/``tls_key_file`` the API is
    also served on ``https_port`` and DHCP option 114 points there.  Without one, phones
    fall back to their probes, which the portal answers on plain HTTP either way."""

    hostname: str = "wifi.alarmpost.lan"
    port: int = 80
    captive_dns_port: int = 5300  # not 5353: that is mDNS (avahi on Raspberry Pi OS)
    session_s: int = 3600
    can_extend: bool = True
    rate_down_kbit: int = 4096
    rate_up_kbit: int = 1024
    new_connections_per_s: int = 50
    venue_name_zh: str = "学校"
    venue_name_en: str = "School"
    terms_zh: str = "本网络仅供在校门等候的家长免费使用，请勿用于违法用途。按规定记录上网日志并保存60天。"
    tls_cert_file: str = ""
    tls_key_file: str = ""
    https_port: int = 443
    terms_en: str = (
        "This network is free for parents waiting at the gate. Do not use it for anything unlawful."
        " Access is logged as the law requires and the log is kept for 60 days."
    )


@dataclass(frozen=True)
class ContentConfig:
    """Safety content from the centre: bundles signed with the centre's Ed25519 key (a PEM
    public key at ``centre_key_file``), cached in ``cache_dir`` across reboots."""

    centre_key_file: str = ""
    cache_dir: str = "/var/lib/alarmpost-portal/content"
    max_bundle_kb: int = 2048


@dataclass(frozen=True)
class AccessLogConfig:
    """The access log MPS Order No. 82 requires (log-on/off time, account, address), kept
    ``retention_days`` (at least the 60 the order requires) and then deleted; statistics
    go upstream every ``stats_interval_s``."""

    path: str = "/var/lib/alarmpost-portal/access.db"
    retention_days: int = 60
    stats_interval_s: int = 300


@dataclass(frozen=True)
class Config:
    """The whole checked portal config."""

    wifi: WifiConfig = field(default_factory=WifiConfig)
    lan: LanConfig = field(default_factory=LanConfig)
    wan: WanConfig = field(default_factory=WanConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    access_log: AccessLogConfig = field(default_factory=AccessLogConfig)
    log: LogConfig = field(default_factory=LogConfig)
    board: BoardConfig = field(default_factory=BoardConfig)
    uplink: UplinkConfig = field(default_factory=UplinkConfig)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.lan.address}/{self.lan.prefix}", strict=False)

    @property
    def portal_url(self) -> str:
        """The splash page's address, as phones are sent to it."""
        return f"http://{self.portal.hostname}{'' if self.portal.port == 80 else f':{self.portal.port}'}/"

    @property
    def secure_portal_url(self) -> str:
        """The splash page's address for the RFC 8908 API: over HTTPS when the portal has a certificate."""
        if not self.portal.tls_cert_file:
            return self.portal_url
        port = "" if self.portal.https_port == 443 else f":{self.portal.https_port}"
        return f"https://{self.portal.hostname}{port}/"

    @property
    def api_url(self) -> str:
        """The RFC 8908 API's address (DHCP option 114): HTTPS when the portal has a certificate."""
        return self.secure_portal_url + "api/captive"


def _ifname(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not IFNAME.fullmatch(value):
        return None, f"{_show(value)} is not a network interface name (1-15 of A-Z a-z 0-9 . _ -)"
    return value, None


def _ssid(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not 1 <= len(value.encode()) <= 32:
        return None, f"{_show(value)} must be 1-32 bytes of UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None, f"{_show(value)} contains a control character"
    return value, None


def _country(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]{2}", value):
        return None, f"{_show(value)} is not a two-letter ISO 3166 country code in capitals (e.g. CN)"
    return value, None


def _ipv4(value: Any) -> tuple[Any, str | None]:
    try:
        return str(ipaddress.IPv4Address(value)), None
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return None, f"{_show(value)} is not an IPv4 address"


def _ipv4_list(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, list):
        return None, f"{_show(value)} is not an array of IPv4 addresses"
    checked = []
    for item in value:
        address, problem = _ipv4(item)
        if problem:
            return None, problem
        checked.append(address)
    return tuple(checked), None


MIN_BLOCKED_PREFIX = 8  # a shorter prefix would cut the phones off from a large part of the internet


def _network_list(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, list):
        return None, f'{_show(value)} is not an array of IPv4 networks (e.g. ["202.101.8.0/26"])'
    checked = []
    for item in value:
        try:
            if not isinstance(item, str) or "/" not in item:
                raise ipaddress.AddressValueError(item)
            network = ipaddress.IPv4Network(item)
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError):
            return None, f'{_show(item)} is not an IPv4 network in CIDR form (e.g. "202.101.8.0/26")'
        except ValueError:
            whole = ipaddress.IPv4Network(item, strict=False)
            return None, f'{_show(item)} has host bits set: write the network, e.g. "{whole}"'
        if network.prefixlen < MIN_BLOCKED_PREFIX:
            return None, f"{_show(item)} is wider than /{MIN_BLOCKED_PREFIX}: it would block much of the internet"
        checked.append(str(network))
    return tuple(checked), None


def _hostname(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, str) or not HOSTNAME.fullmatch(value) or "." not in value:
        return None, f"{_show(value)} is not a dotted host name (e.g. wifi.alarmpost.lan)"
    return value.lower(), None


def _one_line(value: Any) -> tuple[Any, str | None]:
    checked, problem = _text(value)
    if problem is None and any(ord(c) < 32 for c in checked):
        return None, f"{_show(value)} contains a control character"
    return checked, problem


SECTIONS: Sections = {
    "wifi": (
        WifiConfig,
        {
            "mode": _choice(WIFI_MODES),
            "interface": _ifname,
            "ssid": _ssid,
            "country": _country,
            "hw_mode": _choice(HW_MODES),
            "channel": _integer(1, 165),
            "security": _choice(SECURITY),
            "max_clients": _integer(1, 2007),
        },
    ),
    "lan": (
        LanConfig,
        {
            "interface": _ifname,
            "address": _ipv4,
            "prefix": _integer(16, 29),
            "dhcp_start": _ipv4,
            "dhcp_end": _ipv4,
            "lease_s": _integer(120, 86400),
        },
    ),
    "wan": (WanConfig, {"interface": _ifname, "dns_servers": _ipv4_list, "blocked_networks": _network_list}),
    "portal": (
        PortalConfig,
        {
            "hostname": _hostname,
            "port": _integer(1, 65535),
            "captive_dns_port": _integer(1, 65535),
            "session_s": _integer(5, 7 * 86400),
            "can_extend": _boolean,
            "rate_down_kbit": _integer(64, 1_000_000),
            "rate_up_kbit": _integer(64, 1_000_000),
            "new_connections_per_s": _integer(1, 10_000),
            "venue_name_zh": _one_line,
            "venue_name_en": _one_line,
            "tls_cert_file": _optional_text,
            "tls_key_file": _optional_text,
            "https_port": _integer(1, 65535),
            "terms_zh": _one_line,
            "terms_en": _one_line,
        },
    ),
    "content": (
        ContentConfig,
        {"centre_key_file": _optional_text, "cache_dir": _text, "max_bundle_kb": _integer(16, 16384)},
    ),
    "access_log": (
        AccessLogConfig,
        {"path": _text, "retention_days": _integer(60, 3650), "stats_interval_s": _integer(10, 86400)},
    ),
    "log": EDGE_SECTIONS["log"],
    "board": EDGE_SECTIONS["board"],
    "uplink": EDGE_SECTIONS["uplink"],
}


def _network_checks(sections: dict[str, Any], errors: list[str]) -> None:
    wifi: WifiConfig | None = sections["wifi"]
    lan: LanConfig | None = sections["lan"]
    wan: WanConfig | None = sections["wan"]
    portal: PortalConfig | None = sections["portal"]
    if wifi is not None:
        if wifi.hw_mode == "g" and wifi.channel not in CHANNELS_24:
            errors.append(f'wifi.channel: {wifi.channel} is not a 2.4 GHz channel (1-13) for hw_mode = "g"')
        if wifi.hw_mode == "a" and wifi.channel not in CHANNELS_5:
            errors.append(f"wifi.channel: {wifi.channel} is not a 5 GHz channel ({', '.join(map(str, CHANNELS_5))})")
    if wifi is not None and lan is not None and wifi.mode == "hostapd" and wifi.interface != lan.interface:
        errors.append(f"lan.interface: must be wifi.interface ({wifi.interface}) when hostapd runs the access point")
    if lan is not None and wan is not None and lan.interface == wan.interface:
        errors.append(f"wan.interface: {wan.interface} is also lan.interface")
    if lan is not None:
        _lan_checks(lan, errors)
    if portal is not None and portal.port == portal.captive_dns_port:
        errors.append(f"portal.captive_dns_port: {portal.port} is also portal.port")
    if portal is not None:
        _tls_checks(portal, errors)
    if portal is not None and portal.captive_dns_port == 53:
        errors.append("portal.captive_dns_port: 53 is the gateway's own DNS; choose another port (e.g. 5300)")


def _tls_checks(portal: PortalConfig, errors: list[str]) -> None:
    if bool(portal.tls_cert_file) != bool(portal.tls_key_file):
        errors.append("portal.tls_key_file: HTTPS needs both portal.tls_cert_file and portal.tls_key_file")
        return
    if not portal.tls_cert_file:
        return
    if portal.https_port in (portal.port, portal.captive_dns_port):
        errors.append(f"portal.https_port: {portal.https_port} is already taken by the portal's HTTP or DNS port")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(portal.tls_cert_file, portal.tls_key_file)
    except (ssl.SSLError, OSError) as exc:
        errors.append(f"portal.tls_cert_file: the certificate and portal.tls_key_file do not load as a pair: {exc}")


def _lan_checks(lan: LanConfig, errors: list[str]) -> None:
    network = ipaddress.IPv4Network(f"{lan.address}/{lan.prefix}", strict=False)
    gateway = ipaddress.IPv4Address(lan.address)
    if not network.is_private:
        errors.append(f"lan.address: {network} is not a private network")
    if gateway in (network.network_address, network.broadcast_address):
        errors.append(f"lan.address: {gateway} is the network or broadcast address of {network}")
    start, end = ipaddress.IPv4Address(lan.dhcp_start), ipaddress.IPv4Address(lan.dhcp_end)
    for name, address in (("dhcp_start", start), ("dhcp_end", end)):
        if address not in network or address in (network.network_address, network.broadcast_address):
            errors.append(f"lan.{name}: {address} is not a host address in {network}")
    if start > end:
        errors.append(f"lan.dhcp_end: {end} is before lan.dhcp_start {start}")
    elif start <= gateway <= end:
        errors.append(f"lan.address: {gateway} lies inside the DHCP range {start}-{end}")


def _content_checks(sections: dict[str, Any], errors: list[str]) -> None:
    content: ContentConfig | None = sections["content"]
    if content is None or not content.centre_key_file:
        return
    from captive_portal.content import ContentKeyError, load_public_key

    try:
        load_public_key(Path(content.centre_key_file))
    except ContentKeyError as exc:
        errors.append(f"content.centre_key_file: {exc}")


def check_data(data: dict[str, Any], source: str = "config") -> Config:
    """A :class:`Config` from parsed TOML; :class:`ConfigError` lists every problem."""
    errors: list[str] = []
    sections = check_sections(data, SECTIONS, errors)
    _network_checks(sections, errors)
    uplink: UplinkConfig | None = sections["uplink"]
    if uplink is not None and uplink.command_key_file:
        errors.append(
            "uplink.command_key_file: the portal must not hold the post's command key (it answers anonymous"
            " phones and needs none); leave it out"
        )
    if uplink is not None and uplink.enabled:
        _uplink_checks(uplink, errors, command_key=False)
        content: ContentConfig | None = sections["content"]
        if content is not None and not content.centre_key_file:
            errors.append("content.centre_key_file: required with the uplink (content must be signed by the centre)")
    _content_checks(sections, errors)
    if errors:
        raise ConfigError(source, errors)
    return Config(**sections)


def parse_config(text: str, source: str = "config") -> Config:
    """A :class:`Config` from TOML text."""
    return check_data(toml_table(text, source), source)


def load_config(path: Path) -> Config:
    """The checked config in the file at ``path``."""
    return check_data(read_toml(path), str(path))


def main(argv: list[str] | None = None) -> int:
    """``python -m captive_portal.config check FILE...``."""
    return check_files_main("python -m captive_portal.config", "Check gate WiFi configs.", load_config, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Check", "Config", "ConfigError", "load_config", "parse_config", "check_data"]
