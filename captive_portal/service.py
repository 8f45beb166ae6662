"""The portal service: the firewall ruleset, the HTTP server, content and statistics from and to the centre.

At start it loads the generated nftables ruleset (which empties the set of accepted
phones: after a restart everyone accepts again, and the access log closes the sessions
a crash left open), purges the access log, and opens the portal.  Then, in one asyncio
loop: the sweeper logs off sessions the kernel has ended, the access log is purged
daily, and, with the uplink enabled, statistics go to the centre every
``access_log.stats_interval_s`` while content bundles arrive on the post's retained
``content`` topic.  The MQTT client runs on its own thread (paho's); what it receives is
checked there and only a verified bundle replaces the content.

    python -m captive_portal --config /etc/alarmpost/portal.toml
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from captive_portal import netconf
from captive_portal.accesslog import AccessLog, next_purge_delay
from captive_portal.config import Config
from captive_portal.content import BundleError, ContentStore, load_public_key
from captive_portal.firewall import Firewall, NeighbourTable
from captive_portal.server import Portal, serve
from captive_portal.stats import Stats, StatsError
from edge_daemon.contract import Topics
from edge_daemon.uplink import post_client, publish_properties

log = logging.getLogger("alarmpost.portal")


class CentreLink:
    """The portal's own MQTT connection, under its own account: content in, statistics out."""

    def __init__(self, config: Config, content: ContentStore, stats: Stats) -> None:
        settings = config.uplink
        self.topics = Topics(settings.site, config.board.name)
        self.content = content
        self.stats = stats
        password = Path(settings.password_file).read_text().strip() if settings.password_file else None
        self.client = post_client(settings, self.topics, password, service="portal")
        self.client.reconnect_delay_set(int(settings.reconnect_min_s) or 1, int(settings.reconnect_max_s))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self._pending: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.bundles_refused = 0
        self._host, self._port, self._keepalive = settings.host, settings.port, settings.keepalive_s

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, self._keepalive)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_stats(self) -> None:
        """Send the statistics since the last acknowledged report (QoS 1; counted once, on PUBACK)."""
        snapshot = self.stats.snapshot(time.time())
        info = self.client.publish(
            self.topics.of("portal"), json.dumps(snapshot), qos=1, properties=publish_properties("application/json")
        )
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self._pending[info.mid] = snapshot

    def _on_connect(self, client: mqtt.Client, _: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            log.error("the centre's broker refused the portal: %s", reason)
            return
        self.connected.set()
        client.subscribe(self.topics.of("content"), qos=1)

    def _on_message(self, client: mqtt.Client, _: Any, message: mqtt.MQTTMessage) -> None:
        try:
            bundle = self.content.offer(message.payload)
        except BundleError as exc:
            self.bundles_refused += 1
            log.error("content bundle refused: %s", exc)
            return
        self.stats.content_version = bundle.version
        log.info("content bundle %s version %d in use", bundle.id, bundle.version)

    def _on_publish(self, client: mqtt.Client, _: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._lock:
            snapshot = self._pending.pop(mid, None)
        if snapshot is not None and not reason.is_failure:
            self.stats.mark_published(snapshot)


class PortalService:
    """Everything the portal runs, built from one config."""

    def __init__(self, config: Config, firewall: Any = None, mac_lookup: Any = None) -> None:
        self.config = config
        self.firewall = firewall or Firewall(config.network)
        key_file = config.content.centre_key_file
        public_key = load_public_key(Path(key_file)) if key_file else None
        self.content = ContentStore(Path(config.content.cache_dir), public_key, config.content.max_bundle_kb * 1024)
        self.access_log = AccessLog(
            Path(config.access_log.path), config.access_log.retention_days, post=config.board.name
        )
        # a day of statistics is a local day: in China a UTC day would change during the morning drop-off
        local_offset_h = time.localtime().tm_gmtoff // 3600
        self.stats = _open_stats(Path(config.content.cache_dir) / "portal-stats.json", local_offset_h)
        self.stats.content_version = self.content.bundle.version
        self.portal = Portal(
            config, self.firewall, self.content, self.access_log, self.stats, mac_lookup or NeighbourTable()
        )
        self.centre = CentreLink(config, self.content, self.stats) if config.uplink.enabled else None
        self.stopping = asyncio.Event()

    async def run(self, on_ready: Any = None) -> None:
        # a phone's malformed request is answered with a 400 that says why; it needs no traceback
        # in the log (which would also keep the phone's address)
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        self.firewall.load(netconf.render_nft(self.config, wan_networks=self._wan_networks()))
        self.access_log.close_all(reason="restart")
        self.access_log.purge()
        runners = [await serve(self.portal, self.config.lan.address, self.config.portal.port)]
        context = self._tls_context()
        if context is not None:
            runners.append(await serve(self.portal, self.config.lan.address, self.config.portal.https_port, context))
        if self.centre is not None:
            self.centre.start()
        tasks = [
            asyncio.create_task(self.portal.run_sweeper()),
            asyncio.create_task(self._purge_daily()),
            asyncio.create_task(self._report_stats()),
        ]
        log.info("portal ready at %s (API %s)", self.config.portal_url, self.config.api_url)
        if on_ready is not None:
            on_ready(self)
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for runner in runners:
                await runner.cleanup()
            if self.centre is not None:
                self.centre.stop()
            # nobody stays online while the portal is not keeping the log
            self.firewall.revoke_all()
            self.access_log.close_all(reason="restart")
            self.access_log.close()
            self.stats.close()

    def _wan_networks(self) -> list[str]:
        """The WAN interface's own networks, kept from the phones (a school's public addresses)."""
        interface = self.config.wan.interface
        found = netconf.wan_networks(interface)
        if found:
            log.info("phones are kept from the networks on %s: %s", interface, ", ".join(found))
        else:
            log.warning(
                "%s has no IPv4 network yet: phones are kept from the private ranges and wan.blocked_networks"
                " only; restart the portal once it has its address",
                interface,
            )
        return found

    def _tls_context(self) -> ssl.SSLContext | None:
        portal = self.config.portal
        if not portal.tls_cert_file:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(portal.tls_cert_file, portal.tls_key_file)
        return context

    async def _purge_daily(self) -> None:
        while True:
            await asyncio.sleep(next_purge_delay(time.time()))
            try:
                removed = self.access_log.purge()
            except OSError as exc:
                log.error("access log purge failed: %s", exc)
            else:
                log.info("access log purged: %d sessions past retention deleted", removed)

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.access_log.stats_interval_s)
            if self.centre is not None:
                self.centre.publish_stats()


def _open_stats(path: Path, day_offset_h: int) -> Stats:
    """The statistics, or fresh ones if the file is damaged: counts never stop the portal."""
    try:
        return Stats(path, day_offset_h=day_offset_h)
    except StatsError as exc:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        log.error("statistics file unusable, moved to %s; counting from zero: %s", aside, exc)
        path.replace(aside)
        return Stats(path, day_offset_h=day_offset_h)


async def run_service(service: PortalService) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stopping.set)
    await service.run()
