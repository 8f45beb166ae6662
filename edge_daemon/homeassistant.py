"""Home Assistant MQTT discovery: the post shows up as a device with its state and two buttons.

Off unless ``uplink.homeassistant = true``.  On every connection the daemon
publishes, retained, one device discovery config (Home Assistant 2024.11 and
later) at ``<discovery_prefix>/device/<site>/<post>/config``, so the broker's ACL
can grant it to each post by its own username (``pattern write
homeassistant/device/%u/config``, see ``edge_daemon/mosquitto/acl``).  It holds:

* sensors: alarm state, faults, events waiting for the broker;
* binary sensors: alarm latched (safety), serial link (connectivity);
* buttons: *Self-test* and *Refresh status*, which publish plain ``self_test`` or
  ``status`` to the post's ``requests`` topic.

There are deliberately no acknowledge, silence or reset buttons: those commands
must be signed with the post's key (:mod:`edge_daemon.auth`), which Home
Assistant cannot do, and only the monitoring centre may send them.

The entities read the post's retained ``state`` and ``availability``, so they are
right as soon as Home Assistant subscribes.  Home Assistant's discovery ids allow
only ``A-Z a-z 0-9 _ -``: a post whose site or post id holds a ``.`` is not announced.

Example::

    Discovery(uplink, "homeassistant", "0.1.0").config()[0]
    # 'homeassistant/device/school-12/gate-north/config'
"""

from __future__ import annotations

import logging
import re
from typing import Any

from alarmpost.patterns import LATCHED
from edge_daemon import contract
from edge_daemon.uplink import Uplink

log = logging.getLogger("edge_daemon.homeassistant")

DISCOVERY_ID = re.compile(r"[A-Za-z0-9_-]+")


class Discovery:
    def __init__(self, uplink: Uplink, prefix: str, version: str) -> None:
        self.uplink = uplink
        self.prefix = prefix
        self.version = version
        topics = uplink.topics
        self.node = f"alarmpost_{topics.site}_{topics.post}"

    def _components(self) -> dict[str, dict[str, Any]]:
        requests = self.uplink.topics.requests
        active = "[" + ", ".join(f"'{s}'" for s in LATCHED) + "]"
        components: dict[str, dict[str, Any]] = {
            "alarm": {
                "p": "sensor",
                "name": "Alarm state",
                "value_template": "{{ value_json.alarm }}",
                "device_class": "enum",
                "options": list(contract.ALARM_STATES),
                "icon": "mdi:alarm-light",
            },
            "latched": {
                "p": "binary_sensor",
                "name": "Alarm",
                "value_template": "{{ 'ON' if value_json.alarm in " + active + " else 'OFF' }}",
                "device_class": "safety",
            },
            "link": {
                "p": "binary_sensor",
                "name": "Board link",
                "value_template": "{{ 'ON' if value_json.link == 'up' else 'OFF' }}",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
            },
            "faults": {
                "p": "sensor",
                "name": "Faults",
                "value_template": "{{ value_json.faults if value_json.faults is not none else 'unknown' }}",
                "entity_category": "diagnostic",
            },
            "unconfirmed": {
                "p": "sensor",
                "name": "Events not yet confirmed by the centre",
                "value_template": "{{ value_json.events.unconfirmed }}",
                "entity_category": "diagnostic",
            },
            "self_test": {"p": "button", "name": "Self-test", "command_topic": requests, "payload_press": "self_test"},
            "status": {"p": "button", "name": "Refresh status", "command_topic": requests, "payload_press": "status"},
        }
        for key, component in components.items():
            component["unique_id"] = f"{self.node}_{key}"
        return components

    def config(self) -> tuple[str, dict[str, Any]]:
        """(topic, device discovery config) of the post."""
        topics = self.uplink.topics
        payload = {
            "dev": {
                "ids": [self.node],
                "name": f"Alarm post {topics.site}/{topics.post}",
                "mf": "alarm-post project",
                "mdl": "one-button alarm post",
                "sw": self.version,
            },
            "o": {"name": "alarmpost-edge", "sw": self.version},
            "state_topic": topics.state,
            "availability_topic": topics.availability,
            "availability_template": "{{ 'online' if value == 'online' else 'offline' }}",
            "qos": 1,
            "cmps": self._components(),
        }
        return f"{self.prefix}/device/{topics.site}/{topics.post}/config", payload

    def announce(self) -> None:
        """Publish the device's config, retained (called on each connection)."""
        topics = self.uplink.topics
        if not (DISCOVERY_ID.fullmatch(topics.site) and DISCOVERY_ID.fullmatch(topics.post)):
            log.warning("not announced to Home Assistant: its ids allow only A-Z a-z 0-9 _ -")
            return
        self.uplink.publish_retained(*self.config())
