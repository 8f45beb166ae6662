"""The gate WiFi in ``make sim``: the real portal service on loopback, for a person's browser.

The portal runs as on the Pi (``captive_portal.service``: the server, the access log, the
statistics and the content from the centre), with two stand-ins a machine without root
needs: the firewall is :class:`hw_sim.portal_sim.MemoryFirewall`, and a loopback address
stands for a phone (:func:`hw_sim.portal_sim.loopback_mac`).  At start the sim's centre
signs a content bundle with its own content key and publishes it, retained, so the splash
page shows the centre's notice above the built-in safety tips.

Open the address it prints (``http://gate-wifi.localhost:PORT/``; browsers resolve
``*.localhost`` to this machine) to see the splash page, accept, and watch the session.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from captive_portal.config import check_data
from captive_portal.content import generate_keypair, load_private_key, sign_bundle
from captive_portal.service import PortalService
from hw_sim.mosquitto import free_port
from hw_sim.portal_sim import MemoryFirewall, loopback_mac
from hw_sim.sim_centre import SITE, SimCentre

HOSTNAME = "gate-wifi.localhost"


def demo_bundle(version: int) -> dict[str, Any]:
    """The sim centre's bundle: one pinned notice, shown above the built-in tips."""
    return {
        "id": "sim-notice",
        "version": version,
        "issued": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "items": [
            {
                "id": "sim-notice",
                "priority": 100,
                "pinned": True,
                "valid_from": None,
                "valid_until": None,
                "title": {"zh": "模拟台通知：本页来自监控中心", "en": "Notice from the sim's centre"},
                "body": {
                    "zh": ["这条通知由模拟监控中心签名并通过MQTT发布。"],
                    "en": ["The sim's monitoring centre signed this notice and published it over MQTT."],
                },
                "image": None,
            }
        ],
    }


class SimPortal:
    """The portal service in a thread of its own, serving loopback."""

    def __init__(self, folder: Path, centre: SimCentre) -> None:
        self.folder = folder
        self.centre = centre
        self.port = free_port("127.0.0.1")
        self.service: PortalService | None = None
        self.problem = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOSTNAME}:{self.port}/"

    def start(self, post: str) -> None:
        """Start the portal for ``post`` and publish the centre's bundle to it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        private, public = self.folder / "content.key", self.folder / "content.pub"
        if not private.exists():
            generate_keypair(private, public)
        config = check_data(self._settings(post, public), "the sim's portal config")
        self.service = PortalService(config, firewall=MemoryFirewall(config.network), mac_lookup=loopback_mac)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="sim-portal", daemon=True)
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError(f"the portal did not start: {self.problem or 'no answer in 15 s'}")
        if self.problem:
            raise RuntimeError(f"the portal did not start: {self.problem}")
        if self.centre.centre is not None:
            payload = sign_bundle(demo_bundle(1), load_private_key(private))
            self.centre.centre.publish_content(SITE, post, payload)

    def _settings(self, post: str, public: Path) -> dict[str, Any]:
        return {
            "wifi": {"mode": "external"},
            "lan": {
                "interface": "lo",
                "address": "127.0.0.1",
                "prefix": 16,
                "dhcp_start": "127.0.0.10",
                "dhcp_end": "127.0.255.250",
            },
            "portal": {"hostname": HOSTNAME, "port": self.port, "session_s": 300, "venue_name_en": "Sim school"},
            "content": {"centre_key_file": str(public), "cache_dir": str(self.folder / "cache")},
            "access_log": {"path": str(self.folder / "access.db"), "stats_interval_s": 30},
            "board": {"name": post},
            # the daemon's broker and settings, but no command key: the portal never holds one
            "uplink": {k: v for k, v in self.centre.uplink_settings().items() if k != "command_key_file"},
            "log": {"level": "warning"},
        }

    def _serve(self, ready: threading.Event) -> None:
        assert self.service is not None
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.service.run(on_ready=lambda _: ready.set()))
        except Exception as exc:  # shown on the console, not a crash of the sim
            self.problem = f"{type(exc).__name__}: {exc}"
        finally:
            ready.set()
            self._loop.close()

    def stop(self) -> None:
        if self.service is not None and self._loop is not None and self._thread is not None:
            if self._thread.is_alive():
                self._loop.call_soon_threadsafe(self.service.stopping.set)
                self._thread.join(10)

    def facts(self) -> dict[str, str]:
        if self.service is None:
            return {"gate wifi": "not started"}
        if self.problem:
            return {"gate wifi": f"stopped: {self.problem}"}
        online = len(self.service.portal.sessions)
        return {"gate wifi": f"{self.url} ({online} online, content v{self.service.content.bundle.version})"}
