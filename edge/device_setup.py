"""From a :class:`~firmware_config.device.DeviceConfig` to what the agent's parts take.

The device configuration (``firmware_config``) and the agent's parts (``edge.alerts``,
``edge.policy``) keep their own small types; this module maps one onto the other, field by field:

* ``hazards.<type>`` → :class:`~edge.alerts.rules.HazardRuleSpec` (``vlm_check`` →
  ``require_vlm``: it asks the VLM, it never requires its answer);
* ``zones`` → :class:`~edge.alerts.rules.ZoneSpec` (``activity`` → ``active``, ``schedule``);
* a camera's mount, work areas and ``policy.control_hz`` → :class:`~edge.policy.base.PolicyContext`;
* ``models`` → name → sha256 of each model file (a missing file is an error naming it);
* ``outbox.path`` → the outbox database (null: :func:`default_outbox_path`).

The default outbox lives in the user's state directory, one per device:
``$XDG_STATE_HOME/sitehawk/<device_id>/outbox.sqlite3`` (``~/.local/state/…`` without
``XDG_STATE_HOME``). It must survive restarts — it holds the queued messages, the alert ``seq``
counter and the open hazard events — so it is never inside a per-run folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.agent import AgentSettings
from edge.alerts.rules import HazardRuleSpec, ZoneSpec
from edge.alerts.schema import HAZARD_TYPES
from edge.mqtt.contract import DEFAULT_TOPIC_PREFIX
from edge.policy.base import PolicyContext
from firmware_config.camera import CameraMountSpec
from firmware_config.device import CameraConfig, DeviceConfig
from firmware_config.manifest import sha256_of

OUTBOX_FILE_NAME = "outbox.sqlite3"


class ModelFileError(ValueError):
    """A configured model file cannot be read; the message names the field and the file."""


def rule_specs(config: DeviceConfig) -> dict[str, HazardRuleSpec]:
    """One :class:`HazardRuleSpec` per hazard type, from ``config.hazards``."""
    out: dict[str, HazardRuleSpec] = {}
    for hazard in HAZARD_TYPES:
        rule = config.hazards.rule(hazard)
        out[hazard] = HazardRuleSpec(
            **rule.model_dump(exclude={"vlm_check"}), require_vlm=rule.vlm_check
        )
    return out


def zone_specs(config: DeviceConfig) -> list[ZoneSpec]:
    """The configured zones as :class:`ZoneSpec` (ground polygons in site metres)."""
    return [
        ZoneSpec(
            zone.id,
            tuple((float(x), float(y)) for x, y in zone.polygon),
            zone.activity,
            tuple(zone.schedule),
            zone.severity,
        )
        for zone in config.zones
    ]


def policy_context(
    config: DeviceConfig,
    camera: CameraConfig,
    mount: CameraMountSpec,
    work_areas: list[list[list[float]]] | None = None,
) -> PolicyContext:
    """What the policy of ``camera`` is told: its mount, work areas and control rate.

    ``mount`` and ``work_areas`` are passed in because a virtual camera takes its site's own
    when the config leaves them out.
    """
    areas = [[list(map(float, p)) for p in area] for area in camera.work_areas] or list(
        work_areas or []
    )
    return PolicyContext(camera=mount, work_areas=areas, control_hz=config.policy.control_hz)


def model_digests(
    config: DeviceConfig, names: tuple[str, ...] = ("policy", "vlm")
) -> dict[str, str]:
    """name → sha256 of the configured model files among ``names`` (detectors report their own).

    Raises :class:`ModelFileError` naming ``models.<name>`` and the file when one is missing.
    """
    out: dict[str, str] = {}
    for name in names:
        path = getattr(config.models, name)
        if path is None:
            continue
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"models.{name}: {path}: no such model file")
        out[name] = sha256_of(path)
    return out


def state_home() -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state``."""
    value = os.environ.get("XDG_STATE_HOME", "").strip()
    return Path(value) if value else Path.home() / ".local" / "state"


def default_outbox_path(device_id: str) -> Path:
    """``<state home>/sitehawk/<device_id>/outbox.sqlite3``: per device, survives restarts."""
    return state_home() / "sitehawk" / device_id / OUTBOX_FILE_NAME


def outbox_path(config: DeviceConfig) -> Path:
    """The configured outbox database, or the device's default."""
    if config.outbox.path is not None:
        return Path(config.outbox.path)
    return default_outbox_path(config.device_id)


def agent_settings(
    config: DeviceConfig,
    *,
    alert_log: Path | None = None,
    models: dict[str, str] | None = None,
) -> AgentSettings:
    """The agent-wide settings of a device config."""
    return AgentSettings(
        site_id=config.site_id,
        device_id=config.device_id,
        rules=rule_specs(config),
        zones=zone_specs(config),
        timezone=config.timezone,
        topic_prefix=config.mqtt.topic_prefix if config.mqtt is not None else DEFAULT_TOPIC_PREFIX,
        telemetry_interval_s=config.telemetry_interval_s,
        models=dict(models or {}),
        alert_log=alert_log,
        vlm_max_wait_s=config.vlm.max_wait_s,
        vlm_look=config.vlm.look,
    )
