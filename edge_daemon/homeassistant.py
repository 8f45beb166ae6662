"""Home Assistant MQTT discovery: the post shows up as a device with its state and two buttons.

Off unless ``uplink.homeassistant = true``.  On every connection the daemon
publishes, retained, one discovery config per entity under
``<discovery_prefix>/<component>/alarmpost_<site>_<post>/<entity>/config``:

* sensors: alarm state, faults, events waiting for the broker;
* binary sensors: alarm latched (safety), serial link (connectivity);
* buttons: *Self-test* and *Refresh status*, which publish plain ``self_test`` or
  ``status`` to the post's ``requests`` topic.

There are deliberately no acknowledge, silence or reset buttons: those commands
must be signed with the post's key (:mod:`edge_daemon.auth`), which Home
Assistant cannot do, and only the monitoring centre may send them.

The entities read the post's retained ``state`` and ``availability``, so they are
right as soon as Home Assistant subscribes.  The broker's ACL must let the post
write ``<discovery_prefix>/+/alarmpost_<site>_<post>/#`` (see ``edge_daemon/mosquitto/acl``).

Example::

    Discovery(uplink, "homeassistant", "0.1.0").configs()[0][0]
    # 'homeassistant/sensor/alarmpost_school-12_gate-north/alarm/config'
"""

from __future__ import annotations

from typing import Any

from edge_daemon import contract
from edge_daemon.uplink import Uplink

ACTIVE_STATES = ("alarm", "acknowledged", "silenced")


class Discovery:
    def __init__(self, uplink: Uplink, prefix: str, version: str) -> None:
        self.uplink = uplink
        self.prefix = prefix
        self.version = version
        topics = uplink.topics
        self.node = f"alarmpost_{topics.site}_{topics.post}"

    def _device(self) -> dict[str, Any]:
        topics = self.uplink.topics
        return {
            "identifiers": [self.node],
            "name": f"Alarm post {topics.site}/{topics.post}",
            "manufacturer": "alarm-post project",
            "model": "one-button alarm post",
            "sw_version": self.version,
        }

    def _entity(self, component: str, key: str, name: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        topics = self.uplink.topics
        config = {
            "name": name,
            "unique_id": f"{self.node}_{key}",
            "object_id": f"{self.node}_{key}",
            "device": self._device(),
            "availability_topic": topics.availability,
            "availability_template": "{{ 'online' if value == 'online' else 'offline' }}",
            **fields,
        }
        return f"{self.prefix}/{component}/{self.node}/{key}/config", config

    def configs(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, config) of every entity."""
        state = self.uplink.topics.state
        requests = self.uplink.topics.requests
        active = "[" + ", ".join(f"'{s}'" for s in ACTIVE_STATES) + "]"
        return [
            self._entity(
                "sensor",
                "alarm",
                "Alarm state",
                state_topic=state,
                value_template="{{ value_json.alarm }}",
                device_class="enum",
                options=list(contract.ALARM_STATES),
                icon="mdi:alarm-light",
            ),
            self._entity(
                "binary_sensor",
                "latched",
                "Alarm",
                state_topic=state,
                value_template="{{ 'ON' if value_json.alarm in " + active + " else 'OFF' }}",
                device_class="safety",
            ),
            self._entity(
                "binary_sensor",
                "link",
                "Board link",
                state_topic=state,
                value_template="{{ 'ON' if value_json.link == 'up' else 'OFF' }}",
                device_class="connectivity",
                entity_category="diagnostic",
            ),
            self._entity(
                "sensor",
                "faults",
                "Faults",
                state_topic=state,
                value_template="{{ value_json.faults if value_json.faults is not none else 'unknown' }}",
                entity_category="diagnostic",
            ),
            self._entity(
                "sensor",
                "backlog",
                "Events waiting",
                state_topic=state,
                value_template="{{ value_json.events.backlog }}",
                entity_category="diagnostic",
            ),
            self._entity("button", "self_test", "Self-test", command_topic=requests, payload_press="self_test"),
            self._entity("button", "status", "Refresh status", command_topic=requests, payload_press="status"),
        ]

    def announce(self) -> None:
        """Publish every entity's config, retained (called on each connection)."""
        for topic, config in self.configs():
            self.uplink.publish_retained(topic, config)
