"""The simulated bench's command line: ``python -m hw_sim COMMAND [ARGS]``::

    python -m hw_sim sim [--board B] [--config F] [--script KEYS]   the post live (hw_sim.console)
    python -m hw_sim boards check FILE...                          check board files (tools.boards)
    python -m hw_sim boards check-config FILE [--board B]          check a config against a board
    python -m hw_sim build BOARD [--out DIR]                       a board's flash image (tools.build)
    python -m hw_sim press-test [--board B] [--config F]           press once, print the latency, reset

``press-test`` exits 0 when the press raised the alarm (strobe, siren, alarm
state and a panic event) and the key switch reset it (idle, panic-reset event,
strobe and siren off); 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from alarmpost import events as ev
from alarmpost.patterns import ALARM, IDLE
from hw_sim import console
from hw_sim.bench import Bench, BenchError
from hw_sim.paths import MissingTool
from tools import boards, build
from tools.boards import SettingsError

HOLD_S = 0.2  # how long the press-test holds the button: a quick, firm press


def _parse_press_test(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m hw_sim press-test",
        description="Press the button once on the bench, print the press-to-alarm latency, reset with the key.",
    )
    parser.add_argument("--board", default="sim", help="board name or board file (default: sim)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="config JSON for the post (default: firmware's)")
    parser.add_argument("--seed", type=int, help="seed for the button's contact bounce")
    return parser.parse_args(argv)


def raise_alarm(bench: Bench) -> float:
    """Press and hold the button; return the latency in seconds until strobe and siren were both on."""
    shown, logged = len(bench.shown), len(bench.logged)
    pressed = bench.press()
    strobe = bench.wait_output("strobe", True, after=pressed)
    siren = bench.wait_output("siren", True, after=pressed)
    bench.wait_state(ALARM, since=shown)
    bench.wait_event(ev.PANIC, ev.NEW, since=logged, zone=ev.ZONE_BUTTON)
    print(f"press -> strobe on  {(strobe - pressed) * 1000:7.2f} ms")
    print(f"press -> siren on   {(siren - pressed) * 1000:7.2f} ms")
    print(f"press -> both on    {(max(strobe, siren) - pressed) * 1000:7.2f} ms   (alarm raised)")
    return max(strobe, siren) - pressed


def reset_alarm(bench: Bench) -> None:
    """Release the button, turn the key and wait until the post is idle, dark and quiet."""
    time.sleep(HOLD_S)  # the person is still pressing; the hold is the input, not a wait for the board
    bench.release()
    shown, logged = len(bench.shown), len(bench.logged)
    turned = time.monotonic()
    bench.turn_key()
    bench.wait_state(IDLE, since=shown)
    bench.wait_event(ev.PANIC_RESET, ev.NEW, since=logged, zone=ev.ZONE_KEY_SWITCH)
    bench.wait_for(lambda: not bench.is_on("strobe") and not bench.is_on("siren"), 2.0, "strobe and siren off")
    print(f"key turn -> idle    {(bench.shown[-1].t - turned) * 1000:7.2f} ms   (alarm reset)")


def press_test(argv: list[str]) -> int:
    args = _parse_press_test(argv)
    try:
        bench = Bench(board=args.board, config=console.load_config(args.config), seed=args.seed)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        bench.start()
        bench.wait_boot(1)
        raise_alarm(bench)
        reset_alarm(bench)
    except (BenchError, MissingTool, SettingsError, subprocess.CalledProcessError, OSError) as exc:
        print(f"press-test FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
    print("press-test passed")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "sim": console.main,
    "boards": boards.main,
    "build": build.main,
    "press-test": press_test,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = (__doc__ or "").strip()
    if not args or args[0] in ("-h", "--help"):
        print(usage, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"python -m hw_sim: unknown command {args[0]!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main())
