"""The gate WiFi's network files, generated from the portal config: hostapd, two dnsmasq instances, nftables.

Every file is text made by a pure function of a checked :class:`~captive_portal.config.Config`,
so the same config always gives the same files, and a technician never edits them by hand::

    python -m captive_portal.netconf --config /etc/alarmpost/portal.toml --out /etc/alarmpost/net
    python -m captive_portal.netconf --config /etc/alarmpost/portal.toml --print nft

``hostapd.conf`` (only with ``wifi.mode = "hostapd"``)
    The access point: an open network (or OWE, encrypted without a password), client isolation
    on, at most ``wifi.max_clients`` phones.

``dnsmasq.conf`` and ``dnsmasq-captive.conf``: why two DNS servers
    A phone that has not accepted the terms must find the portal whatever name it looks up
    (its connectivity check, then any page the parent types); a phone that has accepted must
    get real answers.  One dnsmasq cannot answer the same name two ways by who asks, so there
    are two instances side by side, each bound to its own address and port: the main one on
    port 53 (DHCP for everyone, real DNS) and the captive one on ``portal.captive_dns_port``,
    which answers every A query with the gateway's address.  The firewall decides which one a
    phone talks to: until it has accepted, its DNS packets (to any server) are redirected to
    the captive port.  DHCP option 114 tells phones the RFC 8908/8910 Captive Portal API.

``portal.nft``: who gets out, checked on every packet
    One table, ``inet alarmpost_portal``, replaced atomically by ``nft -f`` (the file first
    makes sure the table exists, deletes it and defines it again, in one transaction).  The set
    ``allowed`` holds the phones that have accepted, as ``IP . MAC`` with a timeout each; the
    portal adds an element on acceptance and the kernel deletes it when the session is over.
    Every packet a phone sends out is looked up in that set (not just a connection's first
    packet), so when an element times out the phone's open connections stop at once, even if
    the portal has crashed: a session ends in the kernel, on time.  Phones not in the set have
    their DNS and web traffic redirected to the portal and nothing else forwarded.  Accepted
    phones reach the internet through the WAN interface only, never a private network behind
    it (the school's own, the post's camera), never the WAN's own networks (a school that gives
    the Pi a public address has its cameras beside it: the portal adds the WAN interface's
    networks when it loads the ruleset, and ``wan.blocked_networks`` adds more), never a
    special-use range, and never over IPv6.  Per-phone rate limits use
    dynamic sets (``up_rate``, ``down_rate``); ``portal_flood`` limits new connections to the
    portal per phone.  Traffic on the Pi's other interfaces is not touched.  Loading the file
    again empties ``allowed``: every phone has to accept again.

Values in the config have been checked by :mod:`captive_portal.config`; the renderers check
again that none can break out of its line (a newline in a value would add a line of its own
choosing to a daemon's config), and raise ValueError if one could.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from captive_portal.config import HOSTNAME, IFNAME, Config, ConfigError, load_config
from captive_portal.files import write_atomically
from captive_portal.firewall import ALLOWED_SET, TABLE

HOSTAPD_FILE = "hostapd.conf"
DNSMASQ_FILE = "dnsmasq.conf"
CAPTIVE_DNS_FILE = "dnsmasq-captive.conf"
NFT_FILE = "portal.nft"

LEASE_FILE = Path("/var/lib/misc/alarmpost-portal.leases")
DNSMASQ_PID_FILE = Path("/run/alarmpost-portal-dnsmasq.pid")
CAPTIVE_DNS_PID_FILE = Path("/run/alarmpost-portal-captive-dns.pid")
HOSTAPD_CTRL_DIR = "/run/hostapd"
DEFAULT_SOURCE = "the portal config"

# Private and special-use destinations a phone must never reach through the Pi: the school's own
# network behind the WAN, the post's camera, the ISP's carrier-grade NAT, link-local services.
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")
# Special-use destinations that are no phone's business: "this network", benchmarking, multicast and reserved.
SPECIAL_NETWORKS = ("0.0.0.0/8", "198.18.0.0/15", "224.0.0.0/3")
ROUTES_FILE = Path("/proc/net/route")
RTF_GATEWAY = 0x2
RATE_STATE_TIMEOUT_S = 60  # a phone's rate-limit state is forgotten after this long without traffic
MIN_CONNECTION_BURST = 10  # new connections to the portal a phone may open at once, at the least
PING_LIMIT = "10/second burst 20 packets"  # echo requests the gateway answers, from all phones together
SET_SIZE = 65535


def kbit_to_bytes_per_s(kbit_per_s: int) -> int:
    """A rate in the config's unit (kbit/s, 1 kbit = 1000 bits) in bytes/s, nft's unit.

    nft's own ``kbytes`` are 1024 bytes, so the ruleset states rates in plain bytes.

    >>> kbit_to_bytes_per_s(1024)
    128000
    """
    return kbit_per_s * 1000 // 8


# --- hostapd -------------------------------------------------------------------------------


def render_hostapd(cfg: Config, *, source: str = DEFAULT_SOURCE) -> str:
    """``hostapd.conf`` for ``wifi.mode = "hostapd"``: the Pi (or its USB adapter) is the access point."""
    wifi = cfg.wifi
    if wifi.mode != "hostapd":
        raise ValueError(f'wifi.mode is "{wifi.mode}": an external access point needs no hostapd.conf')
    lines = [
        *_header(source, f"hostapd {HOSTAPD_FILE}"),
        f"interface={_ifname(wifi.interface)}",
        "driver=nl80211",
        f"ctrl_interface={HOSTAPD_CTRL_DIR}",
        "# hostapd takes the SSID as raw bytes: the UTF-8 of the config, announced as UTF-8",
        "utf8_ssid=1",
        f"ssid={wifi.ssid}",
        "ignore_broadcast_ssid=0",
        "# Radio: the regulatory domain is announced (802.11d) so phones use its channels and power",
        f"country_code={wifi.country}",
        "ieee80211d=1",
        *_five_ghz_lines(wifi.hw_mode),
        f"hw_mode={wifi.hw_mode}",
        f"channel={wifi.channel}",
        "ieee80211n=1",
        "wmm_enabled=1",
        "# Phones cannot reach each other over the air",
        "ap_isolate=1",
        f"max_num_sta={wifi.max_clients}",
        *_security_lines(wifi.security),
    ]
    return _text(lines)


def _five_ghz_lines(hw_mode: str) -> list[str]:
    if hw_mode != "a":
        return []
    return ["# 5 GHz: radar detection (DFS) where the regulatory domain requires it", "ieee80211h=1"]


def _security_lines(security: str) -> list[str]:
    if security == "owe":
        return [
            "# OWE (Enhanced Open): encrypted without a password; phones older than about 2019 cannot join",
            "auth_algs=1",
            "wpa=2",
            "wpa_key_mgmt=OWE",
            "rsn_pairwise=CCMP",
            "ieee80211w=2",
        ]
    return ["# Open network (no WPA): no password, the portal asks for acceptance", "auth_algs=1"]


# --- dnsmasq: the main instance ------------------------------------------------------------


def render_dnsmasq(
    cfg: Config,
    *,
    lease_file: Path | str = LEASE_FILE,
    pid_file: Path | str = DNSMASQ_PID_FILE,
    source: str = DEFAULT_SOURCE,
) -> str:
    """The main dnsmasq: DHCP for every phone, and real DNS for the phones that have accepted.

    It binds the gate network's own addresses only (``bind-dynamic``), so the captive instance
    and any resolver of the Pi's own can run beside it; unlike ``bind-interfaces`` it also starts
    before the interface has its address (hostapd or the cable may bring it up later) and follows
    it.  ``except-interface=lo``: dnsmasq adds loopback to ``interface=`` by itself, and the Pi's
    own lookups are none of its business.
    """
    gateway = _ipv4(cfg.lan.address)
    lines = [
        *_header(source, f"dnsmasq --keep-in-foreground --conf-file={DNSMASQ_FILE}"),
        "# Only the gate network's addresses, not loopback: other DNS servers of the Pi live beside it",
        f"interface={_ifname(cfg.lan.interface)}",
        "except-interface=lo",
        "bind-dynamic",
        "port=53",
        f"pid-file={pid_file}",
        "# Privacy: phones' DHCP host names (e.g. a parent's name) never become DNS names other",
        "# phones can look up, and no phone's DHCP traffic (MAC, address, name) goes to the system log",
        "dhcp-ignore-names",
        "quiet-dhcp",
        "quiet-dhcp6",
        "quiet-ra",
        "# DNS: the portal's name is the gateway; every other name from upstream",
        "no-hosts",
        "domain-needed",
        "bogus-priv",
        *_upstream_lines(cfg.wan.dns_servers),
        f"address=/{_hostname(cfg.portal.hostname)}/{gateway}",
        *_dhcp_lines(cfg, lease_file),
    ]
    return _text(lines)


def _upstream_lines(dns_servers: Iterable[str]) -> list[str]:
    servers = [f"server={_ipv4(server)}" for server in dns_servers]
    if not servers:
        return ["# wan.dns_servers is empty: the Pi's own resolvers, from /etc/resolv.conf"]
    return ["no-resolv", *servers]


def _dhcp_lines(cfg: Config, lease_file: Path | str) -> list[str]:
    lan, gateway, network = cfg.lan, _ipv4(cfg.lan.address), cfg.network
    pool_size = int(ipaddress.IPv4Address(lan.dhcp_end)) - int(ipaddress.IPv4Address(lan.dhcp_start)) + 1
    return [
        "# DHCP: the gateway is router and DNS server; the only DHCP server on this network",
        f"dhcp-range={_ipv4(lan.dhcp_start)},{_ipv4(lan.dhcp_end)},{network.netmask},{lan.lease_s}",
        f"dhcp-option=option:router,{gateway}",
        f"dhcp-option=option:dns-server,{gateway}",
        "# RFC 8910: the Captive Portal API (RFC 8908), a quoted string",
        f'dhcp-option=114,"{_no_quote(cfg.api_url)}"',
        "dhcp-authoritative",
        f"dhcp-lease-max={pool_size}",
        f"dhcp-leasefile={lease_file}",
    ]


# --- dnsmasq: the captive instance ---------------------------------------------------------


def render_captive_dns(
    cfg: Config, *, pid_file: Path | str = CAPTIVE_DNS_PID_FILE, source: str = DEFAULT_SOURCE
) -> str:
    """The captive dnsmasq: for phones that have not accepted, every name is the portal.

    A queries get the gateway's address (time to live 0, so nothing is cached past acceptance).
    AAAA and every other type get an empty answer (NODATA): the gate network has no IPv6,
    and an empty answer makes a phone use the IPv4 address rather than wait for an AAAA that
    never comes.  ``local=/#/`` makes those answers local: without it dnsmasq (from 2.86) would
    forward them, and with no upstream server here it would answer REFUSED.
    """
    gateway = _ipv4(cfg.lan.address)
    lines = [
        *_header(source, f"dnsmasq --keep-in-foreground --conf-file={CAPTIVE_DNS_FILE}"),
        "# Reached only through the firewall's redirect of port 53, on the gateway's address",
        f"listen-address={gateway}",
        "bind-dynamic",
        f"port={int(cfg.portal.captive_dns_port)}",
        f"pid-file={pid_file}",
        "# No DHCP (the main instance serves it), no upstream, no /etc/hosts",
        "no-resolv",
        "no-hosts",
        "# Every name is the portal (A); every other query type has an empty answer",
        f"address=/#/{gateway}",
        "local=/#/",
        "local-ttl=0",
    ]
    return _text(lines)


# --- nftables --------------------------------------------------------------------------------


def render_nft(cfg: Config, *, wan_networks: Iterable[str] = (), source: str = DEFAULT_SOURCE) -> str:
    """The portal's nftables table: the ``allowed`` set, redirects to the portal, filtering and NAT.

    ``wan_networks``: the WAN interface's own networks (:func:`wan_networks`), blocked for phones
    beside the private ranges and ``wan.blocked_networks``.
    """
    lines = [
        *_header(source, f"nft -f {NFT_FILE}"),
        "# Make sure the table exists, delete it and define it again: one atomic, repeatable load.",
        "# (Loading it ends every session: the set of accepted phones starts empty.)",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        *_nft_sets(cfg),
        *_nft_prerouting(cfg),
        *_nft_input(cfg),
        *_nft_forward(cfg, wan_networks),
        *_nft_postrouting(cfg),
        "}",
    ]
    return _text(lines)


PORTAL_CONNECTIONS_PER_PHONE = 32  # a browser opens at most 6 per host; probes and the API a few more


def _nft_sets(cfg: Config) -> list[str]:
    return [
        "\t# Phones that have accepted, as IP . MAC; the portal adds them, the kernel removes them at timeout",
        f"\tset {ALLOWED_SET} {{",
        "\t\ttype ipv4_addr . ether_addr",
        "\t\tflags timeout",
        f"\t\ttimeout {int(cfg.portal.session_s)}s",
        f"\t\tsize {SET_SIZE}",
        "\t}",
        *_dynamic_set("up_rate", "each phone's upload rate limit"),
        *_dynamic_set("down_rate", "each phone's download rate limit"),
        *_dynamic_set("portal_flood", "each phone's rate of new connections to the portal"),
        "\t# Each phone's open connections to the portal, counted by conntrack",
        "\tset portal_conns {",
        "\t\ttype ipv4_addr",
        "\t\tflags dynamic",
        "\t\tsize 65535",
        "\t}",
    ]


def _dynamic_set(name: str, purpose: str) -> list[str]:
    return [
        f"\t# The state of {purpose}, forgotten after {RATE_STATE_TIMEOUT_S} s without traffic",
        f"\tset {name} {{",
        "\t\ttype ipv4_addr",
        "\t\tflags dynamic, timeout",
        f"\t\ttimeout {RATE_STATE_TIMEOUT_S}s",
        f"\t\tsize {SET_SIZE}",
        "\t}",
    ]


def _nft_prerouting(cfg: Config) -> list[str]:
    lan, gateway = _quoted_ifname(cfg.lan.interface), _ipv4(cfg.lan.address)
    port, dns_port = int(cfg.portal.port), int(cfg.portal.captive_dns_port)
    rules = [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
    ]
    if port != 80:
        rules += [
            "\t\t# The portal's address on port 80 is the portal, for every phone",
            f"\t\tiifname {lan} ip daddr {gateway} tcp dport 80 redirect to :{port}",
        ]
    rules += [
        "\t\t# Phones that have accepted go their own way",
        f"\t\tiifname {lan} ip saddr . ether saddr @{ALLOWED_SET} return",
        "\t\t# Every other phone: DNS to any server is answered by the captive instance (every name is the portal)",
        f"\t\tiifname {lan} udp dport 53 redirect to :{dns_port}",
        f"\t\tiifname {lan} tcp dport 53 redirect to :{dns_port}",
        "\t\t# ... and plain HTTP to any host lands on the portal (HTTPS to other hosts is never intercepted)",
        f"\t\tiifname {lan} tcp dport 80 redirect to :{port}",
        "\t}",
    ]
    return rules


def _portal_ports(cfg: Config) -> str:
    """The portal's TCP ports as nft writes them: HTTP, and HTTPS for the API when it has a certificate."""
    if not cfg.portal.tls_cert_file:
        return str(int(cfg.portal.port))
    return f"{{ {int(cfg.portal.port)}, {int(cfg.portal.https_port)} }}"


def _nft_input(cfg: Config) -> list[str]:
    lan, gateway = _quoted_ifname(cfg.lan.interface), _ipv4(cfg.lan.address)
    ports, dns_port = _portal_ports(cfg), int(cfg.portal.captive_dns_port)
    per_s = int(cfg.portal.new_connections_per_s)
    burst = max(per_s, MIN_CONNECTION_BURST)
    return [
        "\t# What phones may ask of the Pi itself; traffic on the Pi's other interfaces is not touched",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\tiifname {lan} ct state established,related accept",
        "\t\t# DHCP (requests come from 0.0.0.0 to the broadcast address)",
        f"\t\tiifname {lan} udp dport 67 accept",
        "\t\t# DNS: the main instance and the captive one, on the gateway's address only",
        f"\t\tiifname {lan} ip daddr {gateway} meta l4proto {{ tcp, udp }} th dport {{ 53, {dns_port} }} accept",
        f"\t\t# The portal (HTTP; HTTPS for the API with a certificate), at most {per_s} new connections",
        f"\t\t# a second per phone (burst {burst})",
        f"\t\tiifname {lan} tcp dport {ports} ct state new"
        f" update @portal_flood {{ ip saddr limit rate over {per_s}/second burst {burst} packets }} drop",
        f"\t\t# ... and at most {PORTAL_CONNECTIONS_PER_PHONE} open at once: a phone cannot hoard the portal's sockets",
        f"\t\tiifname {lan} tcp dport {ports} ct state new"
        f" add @portal_conns {{ ip saddr ct count over {PORTAL_CONNECTIONS_PER_PHONE} }} reject with tcp reset",
        f"\t\tiifname {lan} ip daddr {gateway} tcp dport {ports} accept",
        "\t\t# Ping the gateway, within a limit",
        f"\t\tiifname {lan} icmp type echo-request limit rate {PING_LIMIT} accept",
        "\t\t# Nothing else from the phones (no SSH, no IPv6, no other service of the Pi).  TCP is refused",
        "\t\t# at once: a browser's HTTPS to a name the captive DNS answered with the portal then falls",
        "\t\t# back to plain HTTP (which lands on the portal) instead of waiting seconds for a timeout",
        f"\t\tiifname {lan} meta l4proto tcp reject with tcp reset",
        f"\t\tiifname {lan} drop",
        "\t}",
    ]


def blocked_networks(cfg: Config, wan_networks: Iterable[str] = ()) -> list[str]:
    """Every destination an accepted phone must never reach, in order, without one inside another.

    (nft refuses overlapping intervals in one set: a WAN on 10.1.2.0/24 is in 10.0.0.0/8 already.)
    """
    wanted = [*PRIVATE_NETWORKS, *SPECIAL_NETWORKS, *cfg.wan.blocked_networks, *wan_networks]
    networks = list(dict.fromkeys(ipaddress.IPv4Network(network) for network in wanted))
    return [str(n) for n in networks if not any(n != other and n.subnet_of(other) for other in networks)]


def wan_networks(interface: str, routes: Path = ROUTES_FILE) -> list[str]:
    """The networks directly on ``interface`` (its addresses' prefixes), from the kernel's routes.

    Read when the portal starts; none if the interface has no IPv4 address yet.
    """
    found = []
    for line in routes.read_text().splitlines()[1:]:
        fields = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...: addresses in hex, little-endian
        if len(fields) < 8 or fields[0] != interface or int(fields[3], 16) & RTF_GATEWAY:
            continue
        destination, mask = (ipaddress.IPv4Address(int(f, 16).to_bytes(4, "little")) for f in (fields[1], fields[7]))
        if int(mask):  # not the default route
            found.append(str(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)))
    return list(dict.fromkeys(found))


def _nft_forward(cfg: Config, wan_networks: Iterable[str] = ()) -> list[str]:
    lan, wan = _quoted_ifname(cfg.lan.interface), _quoted_ifname(cfg.wan.interface)
    up = kbit_to_bytes_per_s(int(cfg.portal.rate_up_kbit))
    down = kbit_to_bytes_per_s(int(cfg.portal.rate_down_kbit))
    blocked = ", ".join(blocked_networks(cfg, wan_networks))
    return [
        "\t# What passes through the Pi; traffic between its other interfaces is not touched",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\t# Phones never talk to each other through the gateway (with an external AP: as well as its isolation)",
        f"\t\tiifname {lan} oifname {lan} drop",
        "\t\t# The gate network is IPv4 only",
        f"\t\tiifname {lan} meta nfproto ipv6 drop",
        "\t\t# Not the school's network behind the WAN, nor the WAN's own networks, nor any private",
        "\t\t# or special-use range",
        f"\t\tiifname {lan} ip daddr {{ {blocked} }} drop",
        "\t\t# Every packet out is checked against the set, so a session that times out stops at once;",
        f"\t\t# upload at most {cfg.portal.rate_up_kbit} kbit/s = {up} bytes/s per phone (burst: one second's worth)",
        f"\t\tiifname {lan} oifname {wan} ip saddr . ether saddr @{ALLOWED_SET}"
        f" update @up_rate {{ ip saddr limit rate over {up} bytes/second burst {up} bytes }} drop",
        f"\t\tiifname {lan} oifname {wan} ip saddr . ether saddr @{ALLOWED_SET} accept",
        "\t\t# Phones that have not accepted (or whose session is over) get nowhere; TCP is refused at once",
        f"\t\tiifname {lan} meta l4proto tcp reject with tcp reset",
        f"\t\tiifname {lan} drop",
        "\t\t# Replies to the phones' own connections only, download at most",
        f"\t\t# {cfg.portal.rate_down_kbit} kbit/s = {down} bytes/s per phone (burst: one second's worth)",
        f"\t\toifname {lan} ct state established,related"
        f" update @down_rate {{ ip daddr limit rate over {down} bytes/second burst {down} bytes }} drop",
        f"\t\toifname {lan} ct state established,related accept",
        f"\t\toifname {lan} drop",
        "\t}",
    ]


def _nft_postrouting(cfg: Config) -> list[str]:
    wan = _quoted_ifname(cfg.wan.interface)
    return [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        "\t\t# The gate network goes out under the Pi's WAN address",
        f"\t\toifname {wan} ip saddr {cfg.network} masquerade",
        "\t}",
    ]


# --- writing the files -------------------------------------------------------------------------


def render_all(cfg: Config, *, source: str = DEFAULT_SOURCE) -> dict[str, str]:
    """Every file the config needs, by file name (no ``hostapd.conf`` with an external access point)."""
    files: dict[str, str] = {}
    if cfg.wifi.mode == "hostapd":
        files[HOSTAPD_FILE] = render_hostapd(cfg, source=source)
    files[DNSMASQ_FILE] = render_dnsmasq(cfg, source=source)
    files[CAPTIVE_DNS_FILE] = render_captive_dns(cfg, source=source)
    files[NFT_FILE] = render_nft(cfg, source=source)
    return files


def write_all(cfg: Config, folder: Path, *, source: str = DEFAULT_SOURCE) -> list[Path]:
    """Write every file into ``folder`` (made if missing), each atomically; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all(cfg, source=source).items():
        written.append(write_atomically(folder / name, text.encode()))
    return written


# --- safety of every line ----------------------------------------------------------------------


def _header(source: str, used_by: str) -> list[str]:
    return [
        f"# Generated from {source} by python -m captive_portal.netconf: do not edit,",
        "# change the config and generate the files again.",
        f"# Used as: {used_by}",
    ]


def _text(lines: list[str]) -> str:
    """The file's text; ValueError if any line holds a character that could end it or hide in it."""
    for line in lines:
        bad = next((c for c in line if (ord(c) < 32 and c != "\t") or ord(c) == 127), None)
        if bad is not None:
            raise ValueError(f"a config value would break its line: {line!r} holds {bad!r}")
    return "\n".join(lines) + "\n"


def _ipv4(value: str) -> str:
    """An IPv4 address in its plain form; ValueError otherwise."""
    return str(ipaddress.IPv4Address(value))


def _ifname(value: str) -> str:
    if not IFNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a network interface name")
    return value


def _hostname(value: str) -> str:
    if not HOSTNAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a host name")
    return value


def _quoted_ifname(value: str) -> str:
    """An interface name as an nft string: nothing in it can end the quotes or the rule."""
    return f'"{_ifname(value)}"'


def _no_quote(value: str) -> str:
    if '"' in value or "\\" in value:
        raise ValueError(f"{value!r} cannot be written as a quoted string")
    return value


# --- command line ----------------------------------------------------------------------------

RENDERERS: dict[str, Callable[..., str]] = {
    "hostapd": render_hostapd,
    "dnsmasq": render_dnsmasq,
    "captive-dns": render_captive_dns,
    "nft": render_nft,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m captive_portal.netconf",
        description="Generate the gate WiFi's hostapd, dnsmasq and nftables files from the portal config.",
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="the portal config (TOML)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--out", type=Path, metavar="DIR", help="write every file into DIR")
    action.add_argument("--print", choices=sorted(RENDERERS), dest="show", help="print one file")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if args.show:
            print(RENDERERS[args.show](cfg, source=str(args.config)), end="")
            return 0
        for path in write_all(cfg, args.out, source=str(args.config)):
            print(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"cannot generate the network files: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
