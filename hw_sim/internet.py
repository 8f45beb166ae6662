"""A stand-in for the internet behind the gate WiFi: one web server that answers every OS probe
the way the real probe servers do, and any other page with a greeting.

Run inside the "internet" namespace of :class:`hw_sim.gatenet.GateNetwork`, where the
upstream DNS answers every name with this server's address::

    python -m hw_sim.internet --bind 198.51.100.10 --port 80 --port 8080
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from captive_portal import probes

GREETING = b"hello from the internet\n"


class InternetHandler(BaseHTTPRequestHandler):
    server_version = "internet-stub"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").partition(":")[0].lower()
        found = probes.probe(host, self.path.partition("?")[0])
        status, body, content_type = (
            (found.answer.status, found.answer.body, found.answer.content_type)
            if found
            else (200, GREETING, "text/plain")
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        return


def main() -> None:
    parser = argparse.ArgumentParser(description="The internet, as far as a test phone can tell.")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append", required=True)
    args = parser.parse_args()
    servers = [ThreadingHTTPServer((args.bind, port), InternetHandler) for port in args.port]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
