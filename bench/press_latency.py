"""Press latency: bouncing presses and injected glitches on the sim board at its heap limit.

Each cycle injects a 1 ms glitch on the button, then presses it with contact
bounce, measures the time from the first edge to both strobe and siren being
on (from the bench's timeline), releases, and resets with the key switch.  A
glitch that raised an alarm shows as an alarm before the press; a press that
raised none is missed.  The firmware's live heap is sampled while the alarm is
latched.  ``heap_limit`` is the board's heap for the firmware; the process gets
``simulator_heap`` bytes more for the simulated ``machine`` module, which a real
board has built in, and ``heap_peak`` does not count them.

    python bench/press_latency.py [--presses 200] [--seed 1]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from functools import partial

from alarmpost import events as ev
from hw_sim.bench import Bench, BenchError, simulator_heap


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(presses: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    latencies: list[float] = []
    missed = false = 0
    heap_peak = 0
    with Bench(seed=seed) as bench:
        bench.wait_boot(1)
        for _ in range(presses):
            since_events = len(bench.logged)
            since_inputs = len(bench.inputs_seen)
            t_glitch = bench.glitch(1.0)
            gap = rng.uniform(0.010, 0.030)  # the next press comes 10-30 ms after the spike
            while time.monotonic() < t_glitch + gap:
                time.sleep(0)
            t_press = bench.press()
            try:
                bench.wait_event(ev.PANIC, ev.NEW, since=since_events, timeout=2)
            except BenchError:
                missed += 1
                continue
            first = next(x for x in bench.logged[since_events:] if x.event.code == ev.PANIC)
            line = bench.wait_output("alarm_line", True, after=t_glitch)
            if first.event.value != ev.PRESS_FIRST or line < t_press:
                false += 1  # the glitch latched an alarm before the press
            bench.wait_output("siren", True, after=t_press)
            # the strobe may already be lit by a trouble flash when the press comes
            strobe: float = bench.wait_for(partial(bench.timeline.on_since, "strobe", t_press), 2, "strobe on")
            siren = bench.timeline.on_since("siren", t_press)
            assert siren is not None
            latencies.append((max(strobe, siren) - t_press) * 1000)
            heap_peak = max(heap_peak, bench.heap_stats()[0])
            bench.release()
            bench.wait_input("button", False, since=since_inputs)
            bench.turn_key(hold_s=0.08)
            bench.wait_event(ev.PANIC_RESET, since=since_events)
        # a burst of glitches on an idle post must raise nothing
        since_events = len(bench.logged)
        for _ in range(presses):
            bench.glitch(rng.uniform(0.2, 1.5))
            t = time.monotonic()
            while time.monotonic() < t + 0.005:
                time.sleep(0)
        probe = bench.press()
        bench.wait_event(ev.PANIC, since=since_events)
        if bench.events(ev.PANIC)[-1].value != ev.PRESS_FIRST or bench.wait_output("alarm_line", True, after=t) < probe:
            false += 1
    return {
        "benchmark": "press_latency",
        "presses": len(latencies) + missed,
        "glitches": 2 * presses,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "min_ms": round(min(latencies), 2),
        "missed": missed,
        "false": false,
        "heap_limit": bench.heap,
        "heap_peak": heap_peak,
        "simulator_heap": simulator_heap(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run(args.presses, args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
