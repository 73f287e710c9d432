"""Alerts, snapshots and status over MQTT 5: the durable outbox and the link that drains it.

* :mod:`edge.mqtt.contract`: the MQTT contract v1 — :class:`Topics`, the status message.
* :mod:`edge.mqtt.outbox`: :class:`Outbox` (SQLite, WAL; a message leaves only on a successful
  PUBACK) and :class:`StateStore` (the agent's persistent counters and open events).
* :mod:`edge.mqtt.settings`: :class:`LinkSettings`, resolved from ``DeviceConfig.mqtt``.
* :mod:`edge.mqtt.client`: :class:`MqttLink` (paho-mqtt 2.x), which publishes all of it.
"""

from edge.mqtt.client import MqttLink
from edge.mqtt.contract import StatusInfo, Topics, status_payload
from edge.mqtt.outbox import Outbox, OutboxError, OutboxMessage, RefusedMessage, StateStore
from edge.mqtt.settings import LinkSettings, LinkSettingsError

__all__ = [
    "LinkSettings",
    "LinkSettingsError",
    "MqttLink",
    "Outbox",
    "OutboxError",
    "OutboxMessage",
    "RefusedMessage",
    "StateStore",
    "StatusInfo",
    "Topics",
    "status_payload",
]
