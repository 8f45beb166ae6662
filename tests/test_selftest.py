"""The post's self-test on the bench: ``alarmpost-selftest`` against the real daemon, board, broker and centre.

Each test names the fault it injects and the step that must catch it.  The CLI runs as a
technician runs it (its own process, through the daemon's socket); with ``--json`` the
progress goes to stderr and the report is the last line of stdout.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alarmpost import events as ev
from edge_daemon.centre import Centre, Message
from hw_sim.mosquitto import Mosquitto
from hw_sim.uplinked import UplinkedPost

from .conftest import require

CLI = [sys.executable, "-m", "edge_daemon.selftest_cli"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require("mosquitto")
    require("micropython")
    with Mosquitto(tmp_path / "broker") as running:
        yield running


def start_post(tmp_path: Path, broker: Mosquitto, **options: Any) -> tuple[UplinkedPost, Centre]:
    post = UplinkedPost(tmp_path, broker.host, broker.port, camera=options.pop("camera", {}), **options)
    post.start()
    centre = post.centre()
    post.wait_online(centre)
    return post, centre


@pytest.fixture
def post(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[UplinkedPost, Centre]]:
    running = start_post(tmp_path, broker)
    yield running
    running[0].stop()


def selftest(post: UplinkedPost, *args: str, timeout: float = 150) -> tuple[int, dict[str, Any], str]:
    """Run the CLI non-interactively; (exit status, report, what it showed)."""
    done = subprocess.run(
        [
            *CLI,
            "--json",
            "--non-interactive",
            "--socket",
            str(post.pi.selftest_socket),
            "--portal-config",
            "/nonexistent",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    return done.returncode, report, done.stderr


def steps(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {step["name"]: (step["status"], step["detail"]) for step in report["steps"]}


def test_the_self_test_passes_on_a_healthy_post_in_under_two_minutes(post: tuple[UplinkedPost, Centre]) -> None:
    """Catches: a step that fails on a healthy post, a report not saved or not sent to the centre."""
    rig, centre = post
    code, report, shown = selftest(rig)
    assert code == 0, shown
    assert report["result"] == "pass" and report["duration_s"] < 120
    found = steps(report)
    for name in ("board_link", "board_troubles", "siren", "supply", "journal", "camera", "centre", "clock", "disk"):
        assert found[name][0] == "pass", (name, found[name])
    assert found["button"][0] == found["key_switch"][0] == found["tamper"][0] == "skip"  # nobody to press
    assert "PASS" in shown and "board_link" in shown
    saved = sorted((rig.folder / "selftest").glob("selftest-*-technician.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text()) == report
    sent = centre.wait_for(lambda m: m.channel == "selftest", since=0).payload
    assert sent == report, "the centre got another report than the technician saw"
    test_event = centre.wait_for(lambda m: m.channel == "events" and m.payload["code"] == ev.MANUAL_TEST, since=0)
    assert test_event.payload["source"] == "daemon"


def test_a_technician_is_asked_to_press_turn_and_open_and_each_is_seen(post: tuple[UplinkedPost, Centre]) -> None:
    """Catches: a prompt that waits for the wrong event (or none), so a dead button would pass."""
    rig, _ = post
    proc = subprocess.Popen(
        [*CLI, "--json", "--socket", str(rig.pi.selftest_socket), "--portal-config", "/nonexistent"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    actions = {
        "ASK button": rig.bench.press,
        "ASK key_switch": lambda: (rig.bench.release(), rig.bench.turn_key()),
        "ASK tamper: Open": lambda: rig.bench.set_switch("tamper", True),
        "ASK tamper: Close": lambda: rig.bench.set_switch("tamper", False),
    }
    asked = []
    for line in proc.stderr:
        for prompt, act in actions.items():
            if line.strip().startswith(prompt):
                asked.append(prompt)
                act()
    out = proc.stdout.read()
    assert proc.wait(30) == 0, out
    assert asked == list(actions), "the self-test did not ask for each thing in turn"
    found = steps(json.loads(out.strip().splitlines()[-1]))
    assert [found[name][0] for name in ("button", "key_switch", "tamper")] == ["pass"] * 3


@pytest.mark.parametrize(
    ("fault", "step", "says"),
    [
        ("siren_open_circuit", "siren", "its circuit is open. Check the siren's wires"),
        ("board_link_cut", "board_link", "no answer from the board on"),
        ("broker_down", "centre", "not connected to the broker"),
        ("centre_not_confirming", "centre", "the centre did not confirm the test event"),
    ],
)
def test_an_injected_fault_fails_its_step_with_what_to_check(
    tmp_path: Path, broker: Mosquitto, fault: str, step: str, says: str
) -> None:
    """Catches: a fault the self-test does not see, or a FAIL that does not tell the technician what to check."""
    rig, centre = start_post(tmp_path, broker)
    try:
        if fault == "siren_open_circuit":
            rig.bench.siren_open_circuit = True
        elif fault == "board_link_cut":
            rig.bench.power_cut()
        elif fault == "broker_down":
            broker.stop()
        elif fault == "centre_not_confirming":
            centre.close()
            rig.centres.remove(centre)
            rig.centre(record=None)  # a centre that records nothing confirms nothing
        code, report, shown = selftest(rig)
    finally:
        rig.stop()
    assert code == 1, shown
    assert report["result"] == "fail"
    status, detail = steps(report)[step]
    assert status == "fail" and says in detail, detail
    assert f"FAIL {step}" in shown.replace("  ", " ")


def test_a_missing_camera_fails_the_camera_step(tmp_path: Path, broker: Mosquitto) -> None:
    """Catches: a post whose camera gives nothing passing its self-test (the centre would get no picture)."""
    require("ffmpeg")
    camera = {"backend": "ffmpeg", "url": "rtsp://127.0.0.1:9/nothing-here"}
    rig, _ = start_post(tmp_path, broker, camera=camera)
    try:
        code, report, shown = selftest(rig)
    finally:
        rig.stop()
    assert code == 1, shown
    status, detail = steps(report)["camera"]
    assert status == "fail" and ("no picture from the camera" in detail or "did not start" in detail), detail


def siren_trouble(qualifier: str) -> Callable[[Message], bool]:
    """The board's 307 (self-test failure) on zone 10 (the siren), ``new`` or ``restore``."""
    return lambda m: (
        m.channel == "events"
        and m.payload["code"] == ev.SELF_TEST_FAILURE
        and m.payload["zone"] == ev.ZONE_SIREN
        and m.payload["qualifier"] == qualifier
    )


def test_an_open_siren_raises_307_on_zone_10_at_the_board_and_a_good_one_restores_it(
    post: tuple[UplinkedPost, Centre],
) -> None:
    """Catches: a siren fault seen by the self-test but never reported upstream as a trouble."""
    rig, centre = post
    rig.bench.siren_open_circuit = True
    assert selftest(rig)[0] == 1
    centre.wait_for(siren_trouble("new"), since=0)
    rig.bench.siren_open_circuit = False
    code, report, _ = selftest(rig)
    assert code == 0 and steps(report)["siren"][0] == "pass"
    centre.wait_for(siren_trouble("restore"), since=0)


def test_the_daemon_tests_itself_periodically_and_reports_602_or_307(tmp_path: Path, broker: Mosquitto) -> None:
    """Catches: no periodic test report (the centre cannot tell a silent post from a quiet one)."""
    rig = UplinkedPost(tmp_path, broker.host, broker.port, camera={}, selftest={"every_h": 0.001})
    rig.start()
    try:
        centre = rig.centre()
        periodic = centre.wait_for(
            lambda m: m.channel == "events" and m.payload["code"] == ev.PERIODIC_TEST, timeout=30, since=0
        )
        assert periodic.payload["source"] == "daemon"
        report = centre.wait_for(lambda m: m.channel == "selftest" and m.payload["trigger"] == "periodic", since=0)
        assert report.payload["result"] == "pass", report.payload
        rig.bench.siren_open_circuit = True
        centre.wait_for(
            lambda m: (
                m.channel == "events"
                and m.payload["code"] == ev.SELF_TEST_FAILURE
                and m.payload["source"] == "daemon"
                and m.payload["qualifier"] == "new"
            ),
            timeout=30,
            since=0,
        )
    finally:
        rig.stop()


@pytest.mark.parametrize(
    ("request_line", "error"),
    [
        (b"not json\n", "not a self-test request"),
        (b'{"selftest": []}\n', "must be an object"),
        (b'{"selftest": {"local": [{"name": "X", "status": "pass", "detail": ""}]}}\n', "name must be 1-32"),
        (b'{"selftest": {"local": [{"name": "wifi", "status": "great", "detail": ""}]}}\n', "status must be pass"),
    ],
)
def test_a_bad_request_on_the_socket_is_refused_saying_why(
    post: tuple[UplinkedPost, Centre], request_line: bytes, error: str
) -> None:
    rig, _ = post
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(rig.pi.selftest_socket))
        conn.sendall(request_line)
        answer = json.loads(conn.makefile("rb").readline())
    assert error in answer["error"]
    assert not list((rig.folder / "selftest").glob("*.json")), "a refused request ran a self-test"


def test_without_the_daemon_the_cli_says_what_to_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "--socket", str(tmp_path / "nobody.sock"), "--portal-config", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "the edge daemon does not answer" in done.stdout and "systemctl status alarmpost-edge" in done.stdout


def test_the_gate_wifi_steps_see_the_interface_and_the_portal(tmp_path: Path) -> None:
    """Catches: a gate WiFi whose adapter is missing or whose portal is down passing the self-test."""
    import http.server
    import threading

    from edge_daemon.selftest_cli import gate_wifi

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    net = tmp_path / "net"
    (net / "wlan1").mkdir(parents=True)
    (net / "wlan1" / "operstate").write_text("up\n")
    config = tmp_path / "portal.toml"
    config.write_text(
        f'[lan]\ninterface = "wlan1"\naddress = "127.0.0.1"\n[portal]\nport = {server.server_address[1]}\n'
    )
    try:
        found = {step["name"]: step for step in gate_wifi(config, net)}
        assert found["wifi"]["status"] == "pass" and found["portal"]["status"] == "pass"
        (net / "wlan1" / "operstate").write_text("down\n")
        assert "wlan1 is down" in gate_wifi(config, net)[0]["detail"]
    finally:
        server.shutdown()
        server.server_close()
    portal = gate_wifi(config, net, timeout=1.0)[1]
    assert portal["status"] == "fail" and "systemctl status alarmpost-portal" in portal["detail"]
    (net / "wlan1" / "operstate").unlink()
    (net / "wlan1").rmdir()
    assert "is the USB WiFi adapter plugged in" in gate_wifi(config, net, timeout=1.0)[0]["detail"]
    assert gate_wifi(tmp_path / "absent.toml", net)[0]["status"] == "skip"
