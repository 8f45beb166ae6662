"""A phone on the gate WiFi, as far as the network can tell: HTTP without following redirects,
and bare TCP connection attempts.  Runs inside the phone's namespace (its own resolver)::

    ip netns exec PHONE python -m hw_sim.phone fetch http://captive.apple.com/hotspot-detect.html
    ip netns exec PHONE python -m hw_sim.phone fetch http://wifi.alarmpost.lan/accept --form token=... --form lang=zh
    ip netns exec PHONE python -m hw_sim.phone connect 198.51.100.10 8080

Each prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
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
    args = parser.parse_args(argv)
    if args.command == "fetch":
        form = dict(item.split("=", 1) for item in args.form) if args.form is not None else None
        result = fetch(args.url, form, args.timeout)
    else:
        result = connect(args.host, args.port, args.timeout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
