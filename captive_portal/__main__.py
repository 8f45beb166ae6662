"""``python -m captive_portal --config /etc/alarmpost/portal.toml``: run the gate WiFi's portal.

A config with a bad key or value is refused before anything starts: the errors, each
naming its key, go to stderr and the exit status is 2.  The portal needs CAP_NET_ADMIN
(it loads the nftables ruleset and adds accepted phones to it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from captive_portal.config import ConfigError, load_config
from captive_portal.firewall import FirewallError
from edge_daemon import logs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m captive_portal", description="The gate WiFi's captive portal.")
    parser.add_argument("--config", type=Path, required=True, help="the portal's TOML config")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"portal not started: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log.level, config.log.format)
    from captive_portal.service import PortalService, run_service

    try:
        asyncio.run(run_service(PortalService(config)))
    except (FirewallError, OSError) as exc:
        print(f"portal stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
