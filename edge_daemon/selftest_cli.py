"""``alarmpost-selftest``: a technician's self-test of the alarm post, at the post (docs/selftest.md).

    sudo alarmpost-selftest                      # asks you to press, turn and open
    sudo alarmpost-selftest --non-interactive    # what needs no person (CI, a remote shell)
    sudo alarmpost-selftest --json               # the report as JSON on the last line

It checks the gate WiFi itself (is its interface up, does the portal answer), then asks
the edge daemon, on ``selftest.socket``, to test the rest: the board link and firmware,
troubles, the siren (a short quiet chirp, where the board can sense it), the supply, the
journal, the button, key switch and tamper (asking you), the camera, a test event the
centre must confirm, the clock and the disk.  Each step shows PASS, FAIL or SKIP with
what to check; the daemon saves the report and sends it to the centre.  Exit status 0
when nothing failed, 1 when a step failed, 2 when the daemon could not be asked.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edge_daemon.config import ConfigError, SelfTestConfig, load_config

PORTAL_CONFIG = Path("/etc/alarmpost/portal.toml")
EDGE_CONFIG = Path("/etc/alarmpost/edge.toml")
READ_TIMEOUT_S = 120.0  # the longest a step may go without a word: a question (30 s), the centre (20 s)
STYLES = {"pass": "bold green", "fail": "bold red", "skip": "yellow", "prompt": "bold cyan", "running": "dim"}


def step(name: str, status: str, detail: str) -> dict[str, str]:
    return {"name": name, "status": status, "detail": detail}


def gate_wifi(portal_config: Path, net: Path = Path("/sys/class/net"), timeout: float = 3.0) -> list[dict[str, str]]:
    """The gate WiFi's own checks: its interface up, the portal answering."""
    if not portal_config.exists():
        return [step("wifi", "skip", f"no gate WiFi on this post ({portal_config} is not there)")]
    try:
        config = tomllib.loads(portal_config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [step("wifi", "fail", f"{portal_config} cannot be read: {exc}")]
    lan, portal, wifi = config.get("lan", {}), config.get("portal", {}), config.get("wifi", {})
    interface = str(lan.get("interface", "wlan1"))
    state_file = net / interface / "operstate"
    try:
        state = state_file.read_text().strip() if state_file.exists() else "missing"
    except OSError as exc:
        state = f"unreadable ({exc.strerror})"
    mode = wifi.get("mode", "hostapd")
    if state in ("up", "unknown"):
        wifi_step = step("wifi", "pass", f"{interface} is up ({mode})")
    elif state == "missing":
        what = "the USB WiFi adapter plugged in" if mode == "hostapd" else "the cable to the access point in"
        wifi_step = step("wifi", "fail", f"there is no interface {interface}: is {what}?")
    else:
        wifi_step = step("wifi", "fail", f"{interface} is {state}: systemctl status alarmpost-hostapd")
    url = f"http://{lan.get('address', '10.73.0.1')}:{portal.get('port', 80)}/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310  (our own portal's address)
            code = answer.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return [
            wifi_step,
            step(
                "portal", "fail", f"the portal does not answer on {url} ({reason}): systemctl status alarmpost-portal"
            ),
        ]
    return [wifi_step, step("portal", "pass", f"answers on {url} ({code})")]


def ask_daemon(path: str, interactive: bool, local: list[dict[str, str]], show: Any) -> dict[str, Any]:
    """Run the self-test in the daemon; each message to ``show``; the last one (report or error) returned."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(READ_TIMEOUT_S)  # a daemon that stalls is named, not waited for without end
        conn.connect(path)
        conn.sendall(json.dumps({"selftest": {"interactive": interactive, "local": local}}).encode() + b"\n")
        with conn.makefile("rb") as lines:
            for raw in lines:
                message: dict[str, Any] = json.loads(raw)
                if "report" in message or "error" in message:
                    return message
                show(message)
    return {"error": "the daemon closed the connection before its report"}


def show_step(console: Console) -> Any:
    def show(message: dict[str, Any]) -> None:
        status = message["status"]
        if status == "running":
            console.print(f"[dim]… {message['step']}[/dim]")
            return
        label = "ASK" if status == "prompt" else status.upper()
        console.print(f"[{STYLES[status]}]{label:>4}[/] {message['step']}: {message.get('detail', '')}")

    return show


def table(report: dict[str, Any]) -> Table:
    result = Table(title=f"Self-test {report['time']}: {report['result'].upper()} in {report['duration_s']} s")
    for column in ("step", "result", "what was found / what to check"):
        result.add_column(column)
    for item in report["steps"]:
        result.add_row(item["name"], f"[{STYLES[item['status']]}]{item['status'].upper()}[/]", item["detail"])
    return result


def socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    if args.config.exists():
        return load_config(args.config).selftest.socket
    return SelfTestConfig().socket


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alarmpost-selftest", description=__doc__.splitlines()[0])
    parser.add_argument("--non-interactive", action="store_true", help="skip what needs a person (press, turn, open)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    parser.add_argument("--config", type=Path, default=EDGE_CONFIG, help="the edge daemon's config (for its socket)")
    parser.add_argument("--socket", type=Path, help="the daemon's self-test socket (default: from the config)")
    parser.add_argument("--portal-config", type=Path, default=PORTAL_CONFIG, help="the gate WiFi's config")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json, highlight=False)
    try:
        path = socket_path(args)
    except ConfigError as exc:
        console.print(f"[bold red]{exc}[/]")
        return 2
    local = gate_wifi(args.portal_config)
    console.print(f"Self-test of this alarm post (the daemon's socket: {path})")
    try:
        answer = ask_daemon(path, not args.non_interactive, local, show_step(console))
    except (OSError, ValueError) as exc:
        console.print(
            f"[bold red]FAIL[/] the edge daemon does not answer on {path} ({exc}):"
            " systemctl status alarmpost-edge (run this as root or as the alarmpost user)"
        )
        return 2
    if "error" in answer:
        console.print(f"[bold red]FAIL[/] {answer['error']}")
        return 2
    report = answer["report"]
    console.print(table(report))
    if answer.get("saved"):
        console.print(f"report saved in {answer['saved']} and sent to the centre")
    if args.json:
        print(json.dumps(report))
    return 1 if report["result"] == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
