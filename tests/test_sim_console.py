"""`make sim` headless and the bench CLI: a person's keys reach the firmware and back, and the Pi beside it."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from hw_sim.camera import has_alarm_mark

from .conftest import require


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    require("micropython")
    require("mosquitto")  # the sim centre's broker
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120, check=False)


def test_sim_console_script_raises_and_resets_the_alarm() -> None:
    result = _run("hw_sim.console", "--script", "b,wait:0.3,b,wait:0.3,k,wait:0.5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "state: idle -> alarm" in out
    assert "siren: silent -> sounding" in out
    assert "panic, button (first press)" in out
    assert "panic reset, key switch (1 press)" in out
    assert out.index("state: idle -> alarm") < out.index("state: alarm -> idle")


def test_sim_console_reads_keys_from_a_pipe_and_quits() -> None:
    require("micropython")
    require("mosquitto")
    result = subprocess.run(
        [sys.executable, "-m", "hw_sim.console"], input="t\nwait:0.3\nq\n", capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "tamper, tamper" in result.stdout


def test_sim_console_refuses_an_unknown_key() -> None:
    result = _run("hw_sim.console", "--script", "b,z")
    assert result.returncode == 2
    assert "unknown key 'z'" in result.stderr


def _pi_folder(out: str) -> Path:
    found = re.search(r"the Pi's daemon logs to (\S+) \(removed on exit\)", out)
    assert found, out
    return Path(found[1]).parent


def test_sim_console_runs_the_pi_daemon_beside_the_board() -> None:
    result = _run("hw_sim.console", "--script", "b,wait:1,a,wait:0.5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pi daemon: running (start 1)" in out
    assert "pi link: not yet -> up" in out
    assert "pi hello: - -> firmware " in out
    # the panic reaches the Pi twice: the board's event over the UART, and the alarm line on its GPIO
    stored = re.search(r"pi stored #\d+ \((\d+) in the store\): board .*panic, button \(first press\)", out)
    assert stored, out
    counts = [int(n) for n in re.findall(r"pi stored #\d+ \((\d+) in the store\)", out)]
    assert counts == list(range(1, len(counts) + 1)) and len(counts) >= 3
    assert re.search(r"pi stored #\d+ \(\d+ in the store\): daemon .*panic, alarm line", out)
    assert "pi alarm line: inactive -> active" in out
    assert "> a: acknowledge: ok (0)" in out
    assert out.index("pi link: not yet -> up") < out.index("> b:") < out.index("> a:")
    assert "state: alarm -> acknowledged" in out
    # the final status shows the Pi's side too
    status = out[out.index("Alarm post on the simulated bench") :]
    assert "PI  link UP" in status
    assert f"in the Pi's store: {counts[-1]}" in status
    assert not _pi_folder(out).exists()  # the store, the log and their folder are gone


def test_sim_console_cuts_the_wire_and_restarts_the_daemon() -> None:
    result = _run("hw_sim.console", "--script", "u,wait:3.5,u,wait:2,d,wait:1.5,o")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "uart wire: connected -> CUT" in out
    assert "pi link: up -> down" in out
    assert "communication trouble, serial link" in out
    assert "pi link: down -> up" in out
    assert "pi daemon: running (start 1) -> running (start 2)" in out
    assert out.count("pi link: not yet -> up") == 2
    assert "> o: operator reset: refused (1)" in out  # nothing is latched
    assert not _pi_folder(out).exists()


def test_press_test_cli() -> None:
    result = _run("hw_sim", "press-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "press-test passed" in result.stdout


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that contain ``text`` (e.g. a mosquitto started in a folder)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in args:
            found.append(args)
    return found


def test_sim_console_commands_go_through_the_centre_on_mosquitto(tmp_path: Path) -> None:
    require("mosquitto")
    pictures = tmp_path / "pictures"
    result = _run("hw_sim.console", "--pictures", str(pictures), "--script", "b,wait:0.3,b,a,x,o,c")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    port = re.search(r"centre broker: mosquitto 127\.0\.0\.1:(\d+) running", out)
    assert port, out
    assert "centre availability: - -> online" in out
    # the press reaches the centre as a Contact ID event, timed from the press
    arrived = re.search(r"centre event #(\d+) 1120 01 001 panic, button \(press to centre (\d+) ms\)", out)
    assert arrived, out
    assert out.index("> b: pressed") < arrived.start()
    assert re.search(r"centre state: .* -> alarm alarm, link up", out)
    # each command is signed, sent over MQTT and answered by the board through the post
    assert "> a: acknowledge: ok (0) through the centre" in out
    assert "> x: silence: ok (0) through the centre" in out
    assert "> o: operator reset: ok (0) through the centre" in out
    assert out.index("> a:") < out.index("state: alarm -> acknowledged") < out.index("> x:")
    assert out.index("> x:") < out.index("state: acknowledged -> silenced") < out.index("> o:")
    assert "state: silenced -> idle" in out
    status = re.search(r"> c: status: ok \(0\) through the centre in \d+ ms: status carried out (\{.*\})", out)
    assert status and '"state":"idle"' in status[1], out
    final = out[out.index("Alarm post on the simulated bench") :]
    assert f"CENTRE  broker mosquitto 127.0.0.1:{port[1]} running   post sim-school/post-1 ONLINE" in final
    assert "duplicates dropped 0  contract violations 0" in final
    assert 'state "idle"' in final  # the status data on the screen
    folder = _pi_folder(out)
    assert not folder.exists()
    assert _processes_mentioning(str(folder)) == []  # mosquitto stopped with the console
    # the camera: the alarm picture (with its mark) reached the centre, which saved it where it says
    picture = re.search(r"centre picture alarm #\d+ with the alarm mark, \d+ KB, saved as (\S+\.jpg)", out)
    assert picture, out
    assert re.search(rf"pictures \d+ alarm.*; saved in {re.escape(str(pictures))}", final)
    saved = pictures / "sim-school" / "post-1" / picture[1]
    assert has_alarm_mark(saved.read_bytes())


def test_sim_console_broker_stops_and_the_backlog_drains() -> None:
    result = _run("hw_sim.console", "--script", "m,b,wait:0.3,b,a,m,c")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    port = re.search(r"centre broker: mosquitto 127\.0\.0\.1:(\d+) running", out)
    assert port, out
    stopped = out.index(f"127.0.0.1:{port[1]} running -> mosquitto 127.0.0.1:{port[1]} STOPPED")
    # with the broker down the press waits in the Pi's outbox and the command takes the direct link
    assert "> a: acknowledge: ok (0) (sent straight over the Pi's link: the broker is down)" in out
    restarted = out.index(f"> m: started the mosquitto broker again on port {port[1]}")
    arrived = re.search(r"centre event #\d+ 1120 01 001 panic, button \(press to centre [\d.]+ m?s\)", out)
    assert arrived, out
    assert stopped < restarted < arrived.start()
    status = re.search(r"> c: status: ok \(0\) through the centre in \d+ ms: status carried out (\{.*\})", out)
    assert status and '"state":"acknowledged"' in status[1], out
    assert arrived.start() < status.start()  # the console waited for the backlog before the next key
    final = out[out.index("Alarm post on the simulated bench") :]
    assert f"CENTRE  broker mosquitto 127.0.0.1:{port[1]} running" in final
    assert "contract violations 0" in final
    assert not _pi_folder(out).exists()


def test_sim_console_serves_the_gate_wifi_splash_with_the_centres_notice() -> None:
    """`make sim` prints the portal's address; the page there shows the notice the sim's centre signed."""
    require("micropython")
    require("mosquitto")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hw_sim.console", "--script", "wait:30,q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if "content v1" in line:  # the centre's bundle is in use
                url = re.search(r"http://gate-wifi\.localhost:\d+/", line).group(0)  # type: ignore[union-attr]
                break
        assert url, "the console never showed the portal with the centre's content"
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        assert "模拟台通知：本页来自监控中心" in page and 'action="/accept"' in page
    finally:
        proc.terminate()
        proc.wait(timeout=30)
