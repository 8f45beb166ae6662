"""The alarm core on the bench, under real MicroPython: button, latch, outputs, reset."""

from __future__ import annotations

import time

from alarmpost import events as ev
from alarmpost import patterns
from hw_sim.bench import Bench


def press_and_wait(bench: Bench) -> float:
    """Press with contact bounce; return when the firmware has raised the alarm."""
    since = len(bench.logged)
    t = bench.press()
    bench.wait_event(ev.PANIC, ev.NEW, since=since)
    return t


def test_press_lights_strobe_and_sounds_siren(bench: Bench) -> None:
    t = bench.press()
    on_strobe = bench.wait_output("strobe", True, after=t)
    on_siren = bench.wait_output("siren", True, after=t)
    assert on_strobe >= t and on_siren >= t
    event = bench.wait_event(ev.PANIC, ev.NEW, zone=ev.ZONE_BUTTON)
    assert event.value == ev.PRESS_FIRST
    assert bench.wait_output("alarm_line", True, after=t)
    assert bench.state == patterns.ALARM


def test_siren_sweeps_between_configured_tones(make_bench) -> None:  # type: ignore[no-untyped-def]
    bench = make_bench(config={"siren_low_hz": 800, "siren_high_hz": 1200, "siren_sweep_ms": 400})
    t = press_and_wait(bench)
    bench.wait_for(lambda: len({c.freq for c in bench.timeline.changes("siren", after=t)}) > 5, 3, "a sweep")
    tones = {c.freq for c in bench.timeline.changes("siren", after=t) if c.freq}
    assert min(tones) == 800
    assert 1100 <= max(tones) <= 1200


def test_one_millisecond_glitch_raises_nothing(bench: Bench) -> None:
    t_glitch = bench.glitch(1.0)
    # A real press afterwards must be the *first* press: the glitch latched nothing.
    t_press = press_and_wait(bench)
    panics = bench.events(ev.PANIC)
    assert [e.value for e in panics] == [ev.PRESS_FIRST]
    assert bench.timeline.first("strobe", True, after=t_glitch) >= t_press
    assert bench.timeline.first("siren", True, after=t_glitch) >= t_press


def test_bouncing_press_raises_one_alarm(bench: Bench) -> None:
    since = len(bench.inputs_seen)
    press_and_wait(bench)
    bench.release()
    bench.wait_input("button", False, since=since)
    bench.turn_key()
    reset = bench.wait_event(ev.PANIC_RESET)
    assert reset.value == 1  # presses counted while latched
    assert len(bench.events(ev.PANIC)) == 1


def test_release_does_not_stop_the_alarm(bench: Bench) -> None:
    since = len(bench.inputs_seen)
    t = press_and_wait(bench)
    t_release = bench.release()
    bench.wait_input("button", False, since=since)
    assert bench.state == patterns.ALARM
    # the strobe keeps flashing and the siren keeps sounding after the release
    bench.wait_output("strobe", True, after=t_release + 0.1)
    assert bench.is_on("siren") and bench.is_on("alarm_line")
    assert bench.timeline.first("siren", False, after=t) is None


def test_presses_while_latched_are_recorded(bench: Bench) -> None:
    for _ in range(3):
        since = len(bench.inputs_seen)
        press_and_wait(bench)
        bench.release()
        bench.wait_input("button", False, since=since)
    assert [e.value for e in bench.events(ev.PANIC)] == [ev.PRESS_FIRST, ev.PRESS_REPEAT, ev.PRESS_REPEAT]
    bench.turn_key()
    assert bench.wait_event(ev.PANIC_RESET).value == 3


def test_long_press_is_reported(bench: Bench) -> None:
    press_and_wait(bench)
    long = bench.wait_event(ev.PANIC, value=ev.PRESS_LONG, timeout=3)
    assert long.zone == ev.ZONE_BUTTON
    assert bench.state == patterns.ALARM


def test_stuck_button_is_trouble_and_alarm_stays_latched(bench: Bench) -> None:
    press_and_wait(bench)
    stuck = bench.wait_event(ev.SYSTEM_TROUBLE, ev.NEW, zone=ev.ZONE_BUTTON, timeout=5)
    assert stuck.value == ev.TROUBLE_STUCK_BUTTON
    assert bench.state == patterns.ALARM
    bench.wait_for(lambda: bench.shown[-1].faults == 1, 2, "the trouble shown")
    bench.release()
    bench.wait_event(ev.SYSTEM_TROUBLE, ev.RESTORE, zone=ev.ZONE_BUTTON)
    assert bench.state == patterns.ALARM  # the trouble clears, the alarm does not


def test_tamper_open_and_close(bench: Bench) -> None:
    bench.set_switch("tamper", True)
    bench.wait_event(ev.TAMPER, ev.NEW, zone=ev.ZONE_TAMPER)
    assert bench.state == patterns.IDLE  # tamper is reported, it does not sound the siren
    bench.set_switch("tamper", False)
    bench.wait_event(ev.TAMPER, ev.RESTORE, zone=ev.ZONE_TAMPER)


def test_siren_cuts_off_and_strobe_goes_on(bench: Bench) -> None:
    t = press_and_wait(bench)
    # Anchored on the siren coming on: the boot's own "siren off" may be read after the press.
    siren_on = bench.wait_output("siren", True, after=t)
    siren_off = bench.wait_output("siren", False, after=siren_on, timeout=8)
    assert siren_off - siren_on >= 4.9  # siren_cutoff_s = 5 in the test config
    bench.wait_output("strobe", True, after=siren_off + 0.01, timeout=2)
    assert bench.state == patterns.ALARM
    bench.wait_for(lambda: bench.shown[-1].siren is False, 2, "the siren shown off")
    assert bench.is_on("alarm_line")


def test_press_after_cutoff_sounds_siren_again(bench: Bench) -> None:
    t = press_and_wait(bench)
    bench.release()
    siren_on = bench.wait_output("siren", True, after=t)
    siren_off = bench.wait_output("siren", False, after=siren_on, timeout=8)
    t2 = press_and_wait(bench)
    assert bench.wait_output("siren", True, after=max(t2, siren_off))


def test_only_the_key_switch_resets(bench: Bench) -> None:
    t = press_and_wait(bench)
    bench.release()
    # neither the siren cut-off timer nor more time clears the latch
    siren_on = bench.wait_output("siren", True, after=t)
    siren_off = bench.wait_output("siren", False, after=siren_on, timeout=8)
    bench.wait_output("strobe", True, after=siren_off + 0.5, timeout=2)
    assert bench.state == patterns.ALARM
    # a power cut does not clear it either: the board raises it again at boot
    mark = len(bench.shown)
    bench.restart()
    bench.wait_boot(2)
    t_boot = bench.boots[-1][0]
    bench.wait_output("strobe", True, after=t_boot)
    bench.wait_output("siren", True, after=t_boot)
    bench.wait_state(patterns.ALARM, since=mark)
    assert len(bench.events(ev.PANIC)) == 1  # restoring the latch is not a new alarm
    # the key switch does
    since = len(bench.shown)
    t_key = time.monotonic()
    bench.turn_key()
    reset = bench.wait_event(ev.PANIC_RESET, zone=ev.ZONE_KEY_SWITCH)
    assert reset.qualifier == ev.NEW
    bench.wait_state(patterns.IDLE, since=since)
    for device in ("siren", "strobe", "alarm_line"):
        bench.wait_output(device, False, after=t_key)
        bench.wait_for(lambda device=device: not bench.is_on(device), 2, f"{device} to stay off")


def test_key_switch_at_idle_runs_the_test_pattern(bench: Bench) -> None:
    since = len(bench.shown)
    bench.turn_key()
    bench.wait_event(ev.MANUAL_TEST, ev.NEW, zone=ev.ZONE_KEY_SWITCH)
    testing = bench.wait_for(lambda: next((s for s in bench.shown[since:] if s.testing), None), 3, "test pattern")
    assert bench.wait_output("siren", True, after=testing.t - 0.05)
    done = bench.wait_for(
        lambda: next((s for s in bench.shown[since:] if not s.testing and s.t > testing.t), None),
        4,
        "end of test pattern",
    )
    assert done.state == patterns.IDLE
    bench.wait_for(lambda: not bench.is_on("siren") and not bench.is_on("strobe"), 2, "test outputs off")
