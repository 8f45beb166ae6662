"""Supply monitoring on the bench: AC loss and low battery, with restores."""

from __future__ import annotations

from alarmpost import events as ev
from alarmpost import patterns
from hw_sim.bench import Bench


def test_ac_loss_low_battery_and_restores(bench: Bench) -> None:
    bench.set_supply(12.6)  # mains gone: running on the battery
    ac = bench.wait_event(ev.AC_LOSS, ev.NEW, zone=ev.ZONE_SUPPLY)
    assert 1250 <= ac.value <= 1270  # centivolts as measured
    bench.set_supply(11.0)
    bench.wait_event(ev.LOW_BATTERY, ev.NEW, zone=ev.ZONE_SUPPLY)
    bench.wait_for(lambda: bench.shown[-1].faults == 2, 2, "two faults shown")
    assert bench.state == patterns.IDLE
    since = len(bench.logged)
    bench.set_supply(13.8)
    bench.wait_event(ev.LOW_BATTERY, ev.RESTORE, since=since)
    bench.wait_event(ev.AC_LOSS, ev.RESTORE, since=since)
    bench.wait_for(lambda: bench.shown[-1].faults == 0, 2, "no faults shown")


def test_alarm_works_on_battery(bench: Bench) -> None:
    bench.set_supply(11.2)
    bench.wait_event(ev.LOW_BATTERY, ev.NEW)
    t = bench.press()
    bench.wait_output("siren", True, after=t)
    bench.wait_output("strobe", True, after=t)
