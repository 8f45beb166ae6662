"""A phone on the gate WiFi, as far as the network can tell: HTTP without following redirects,
and bare TCP connection attempts.  Runs inside the phone's namespace (its own resolver)::

    ip netns exec PHONE python -m hw_sim.phone fetch http://captive.apple.com/hotspot-detect.html
    ip netns exec PHONE python -m hw_sim.phone fetch http://wifi.alarmpost.lan/accept --form token=... --form lang=zh
    ip netns exec PHONE python -m hw_sim.phone connect 198.51.100.10 8080
    ip netns exec PHONE python -m hw_sim.phone dns 10.73.0.1 10.0.73.10.in-addr.arpa PTR

Each prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import sys
import urllib.parse
from typing import Any


def fetch(url: str, form: dict[str, str] | None = None, timeout: float = 3.0) -> dict[str, Any]:
    """One request (POST when ``form`` is given); the answer as status, headers and body, or the error."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        if form is None:
            connection.request("GET", path)
        else:
            body = urllib.parse.urlencode(form)
            connection.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return {
            "status": response.status,
            "headers": {k.lower(): v for k, v in response.getheaders()},
            "body": response.read().decode(errors="replace"),
        }
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        connection.close()


def connect(host: str, port: int, timeout: float = 1.0) -> dict[str, Any]:
    """Whether a TCP connection to ``host:port`` opens within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"connected": True}
    except OSError as exc:
        return {"connected": False, "error": f"{type(exc).__name__}: {exc}"}


QTYPES = {"A": 1, "PTR": 12}


def dns(server: str, name: str, qtype: str = "A", timeout: float = 2.0) -> dict[str, Any]:
    """One DNS query over UDP, as a phone's resolver sends it: the reply's rcode and its answers
    (addresses for A, names for PTR), or the error."""
    query_id = random.randrange(65536)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    query = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", QTYPES[qtype], 1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((server, 53))
            sock.send(query)
            reply = sock.recv(4096)
            while reply[:2] != query[:2]:
                reply = sock.recv(4096)
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    count = struct.unpack(">H", reply[6:8])[0]
    offset = 12 + len(question) + 4
    answers = []
    for _ in range(count):
        _, offset = _name(reply, offset)
        rtype, _, _, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 1:
            answers.append(socket.inet_ntoa(reply[offset : offset + 4]))
        elif rtype == 12:
            answers.append(_name(reply, offset)[0])
        offset += length
    return {"rcode": reply[3] & 15, "answers": answers}


def _name(message: bytes, offset: int) -> tuple[str, int]:
    """The (possibly compressed) name at ``offset``, and the offset after it."""
    labels, end = [], None
    while (length := message[offset]) != 0:
        if length >= 0xC0:  # a pointer to a name earlier in the message
            end = end or offset + 2
            offset = struct.unpack(">H", message[offset : offset + 2])[0] & 0x3FFF
            continue
        labels.append(message[offset + 1 : offset + 1 + length].decode(errors="replace"))
        offset += 1 + length
    return ".".join(labels), end or offset + 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw_sim.phone")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch")
    get.add_argument("url")
    get.add_argument("--form", action="append", default=None, metavar="KEY=VALUE")
    get.add_argument("--timeout", type=float, default=3.0)
    tcp = sub.add_parser("connect")
    tcp.add_argument("host")
    tcp.add_argument("port", type=int)
    tcp.add_argument("--timeout", type=float, default=1.0)
    lookup = sub.add_parser("dns")
    lookup.add_argument("server")
    lookup.add_argument("name")
    lookup.add_argument("qtype", choices=sorted(QTYPES))
    args = parser.parse_args(argv)
    if args.command == "fetch":
        form = dict(item.split("=", 1) for item in args.form) if args.form is not None else None
        result = fetch(args.url, form, args.timeout)
    elif args.command == "dns":
        result = dns(args.server, args.name, args.qtype)
    else:
        result = connect(args.host, args.port, args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
