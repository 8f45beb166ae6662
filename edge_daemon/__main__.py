"""``python -m edge_daemon --config /etc/alarmpost/edge.toml``: run the edge daemon.

A config with a bad key or value is refused before anything starts: the errors,
each naming its key, go to stderr and the exit status is 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from edge_daemon import logs
from edge_daemon.config import ConfigError, load_config
from edge_daemon.service import serve
from edge_daemon.store import StoreError

GIL_SWITCH_S = 0.001


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_daemon", description="The alarm post's edge daemon.")
    parser.add_argument("--config", type=Path, required=True, help="the daemon's TOML config")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"edge daemon not started: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log.level, config.log.format)
    # The camera's and the network's threads take turns with the event loop that stores alarms:
    # hand the interpreter lock over every 1 ms (default 5 ms) so the loop never waits long for it.
    sys.setswitchinterval(GIL_SWITCH_S)
    try:
        asyncio.run(serve(config))
    except (StoreError, OSError) as exc:
        print(f"edge daemon stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
