"""The device configuration (schema ``sitehawk.device/1``): what one SiteHawk device runs.

A config file (YAML or TOML) names the device and its site, its cameras (a virtual site, an RTSP
stream or an ONVIF PTZ camera), models, policy, hazard rules, ground-plane zones, the VLM, MQTT
and the outbox. :func:`load_device_config` validates all of it at once and reports every problem
as one ``file:field.path: problem`` line; a bad file never yields a config. Relative paths in a
file are resolved against the file's folder (and written back relative to it by
:meth:`DeviceConfig.to_yaml`). ``sitehawk-fleet validate`` and ``schema`` are the commands.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import urllib.parse
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from firmware_config.camera import CameraMountSpec
from firmware_config.config_files import ConfigFileError, format_problems, read_mapping
from firmware_config.fields import (
    CONFIG_DIR,
    ConfigPath,
    ExistingFile,
    HttpUrl,
    Id,
    Polygon,
    RtspUrl,
    Secret,
    TimeWindow,
    problem,
    raise_problems,
    read_secret,
    shorten,
    url_problem,
)

__all__ = [
    "CameraConfig",
    "DeviceConfig",
    "DeviceConfigError",
    "HazardRule",
    "HazardRules",
    "ModelsConfig",
    "MqttSettings",
    "OnvifSource",
    "OutboxConfig",
    "PolicyConfig",
    "PresetConfig",
    "RtspSource",
    "TlsFiles",
    "VirtualSource",
    "VlmConfig",
    "WhileMachineMoving",
    "ZoneConfig",
    "ZoneSchedule",
    "device_config_json_schema",
    "device_config_schema_text",
    "load_device_config",
]

DEVICE_SCHEMA: Literal["sitehawk.device/1"] = "sitehawk.device/1"
#: The generated JSON Schema, shipped as package data (`sitehawk-fleet schema` rewrites it).
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "device.v1.json"

HAZARD_TYPES = ("no_helmet", "no_vest", "zone_intrusion", "fire_smoke")
HazardType = Literal["no_helmet", "no_vest", "zone_intrusion", "fire_smoke"]
Severity = Literal["low", "medium", "high", "critical"]
#: Mirrors the keys of `edge.policy.POLICIES` (firmware_config cannot import edge; a test in
#: tests/edge keeps them equal).
POLICY_NAMES = ("static_wide", "patrol", "random", "greedy", "learned")
PolicyName = Literal["static_wide", "patrol", "random", "greedy", "learned"]
MIN_OUTBOX_BYTES = 1 << 20


class DeviceConfigError(ConfigFileError):
    """A device config that cannot be used; one ``file:field: problem`` line per problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------ cameras
class VirtualSource(_Strict):
    """A camera on the built-in virtual site (the simulator), from a seed or a site file."""

    seed: int | None = Field(None, ge=0, description="Generate the site from this seed")
    site_file: ExistingFile | None = Field(
        None, description="Or load this site YAML (from `sitehawk-edge site generate`)"
    )
    duration_s: float | None = Field(
        None,
        gt=0,
        description="With seed: site time the generated site covers (null: 600); "
        "a site file carries its own",
    )

    @model_validator(mode="after")
    def _one_site(self) -> VirtualSource:
        problems = []
        if (self.seed is None) == (self.site_file is None):
            got = "both" if self.seed is not None else "neither"
            problems.append(problem((), f"set seed or site_file (got {got})"))
        elif self.site_file is not None and self.duration_s is not None:
            message = "only with seed: a site file carries its own duration"
            problems.append(problem(("duration_s",), message, self.duration_s))
        raise_problems("VirtualSource", problems)
        return self


class RtspSource(_Strict):
    """A video stream without PTZ control (the policy cannot steer it)."""

    url: RtspUrl = Field(
        description="rtsp:// or rtsps:// URL; credentials may go in it (rtsp://user:pass@host/…)"
    )


def _credential_problems(settings: OnvifSource | MqttSettings) -> list[InitErrorDetails]:
    problems = []
    if settings.password is not None and settings.password_file is not None:
        message = "set either password or password_file, not both"
        problems.append(problem(("password_file",), message))
    has_password = settings.password is not None or settings.password_file is not None
    if has_password and not settings.username:
        problems.append(problem(("username",), "required when a password is set"))
    return problems


class OnvifSource(_Strict):
    """An ONVIF Profile S/T PTZ camera: PTZ control over ONVIF, video over RTSP."""

    url: HttpUrl = Field(
        description="Device service URL, e.g. http://192.168.1.64/onvif/device_service"
    )
    username: str | None = Field(None, description="ONVIF user (null: the camera needs none)")
    password: Secret | None = Field(None, description="ONVIF password (or use password_file)")
    password_file: ExistingFile | None = Field(
        None, description="File holding the ONVIF password (one line): keeps it out of the config"
    )
    profile_token: str | None = Field(
        None, description="Media profile to use (null: the first profile with PTZ)"
    )
    stream_url: RtspUrl | None = Field(
        None,
        description="RTSP URL of the video (null: ask the camera with GetStreamUri); the ONVIF "
        "credentials are used for it unless the URL carries its own",
    )

    def password_value(self) -> str | None:
        """The password, read from password_file when that is how it is given."""
        return read_secret(self.password, self.password_file)

    @model_validator(mode="after")
    def _credentials(self) -> OnvifSource:
        raise_problems("OnvifSource", _credential_problems(self))
        return self


class PresetConfig(_Strict):
    """A named PTZ position (a patrol stop, or "home")."""

    name: Id = Field(description="Preset name")
    pan_deg: float = Field(description="Pan, degrees from the mount heading (right = positive)")
    tilt_deg: float = Field(description="Tilt, degrees (negative = down)")
    zoom: float = Field(1.0, ge=1.0, description="Optical zoom factor (1 = widest)")


class CameraConfig(_Strict):
    """One camera: its source (exactly one of virtual, rtsp, onvif), mount and presets."""

    id: Id = Field("cam0", description="Camera id, used in alerts (camera_id)")
    virtual: VirtualSource | None = Field(None, description="Source: the virtual site")
    rtsp: RtspSource | None = Field(None, description="Source: an RTSP stream (no PTZ control)")
    onvif: OnvifSource | None = Field(None, description="Source: an ONVIF PTZ camera")
    mount: CameraMountSpec | None = Field(
        None,
        description="Where the camera hangs and its PTZ limits; required for rtsp and onvif "
        "(null for virtual: the site's own); mount.id defaults to the camera id",
    )
    work_areas: list[Polygon] = Field(
        default_factory=list,
        description="Ground polygons where people work (site metres): what the policy covers; "
        "required for onvif (empty for virtual: the site's own)",
    )
    presets: list[PresetConfig] = Field(
        default_factory=list, description="Named PTZ positions, e.g. for a patrol tour"
    )
    frame_rate_hz: float = Field(
        10.0, gt=0, le=60, description="Frames per second the agent processes"
    )

    @property
    def source(self) -> VirtualSource | RtspSource | OnvifSource:
        """The one configured source."""
        source = self.virtual or self.rtsp or self.onvif
        assert source is not None, "validated: exactly one source"
        return source

    @property
    def source_kind(self) -> Literal["virtual", "rtsp", "onvif"]:
        """Which source is configured."""
        if self.virtual is not None:
            return "virtual"
        return "rtsp" if self.rtsp is not None else "onvif"

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        problems = []
        sources = [n for n in ("virtual", "rtsp", "onvif") if getattr(self, n) is not None]
        if len(sources) != 1:
            got = " and ".join(sources) if sources else "none"
            message = f"exactly one source is required: virtual, rtsp or onvif (got {got})"
            problems.append(problem((), message))
        if self.mount is None and sources and sources[0] != "virtual":
            message = f"required for an {sources[0]} camera: position, height_m, heading_deg"
            problems.append(problem(("mount",), message))
        if not self.work_areas and sources == ["onvif"]:
            message = "required for an onvif camera: the ground polygons the policy must cover"
            problems.append(problem(("work_areas",), message))
        if self.mount is not None:
            if "id" not in self.mount.model_fields_set:
                self.mount = self.mount.model_copy(update={"id": self.id})
            elif self.mount.id != self.id:
                message = f"{self.mount.id!r} differs from the camera id {self.id!r}: leave it out"
                problems.append(problem(("mount", "id"), message, self.mount.id))
        first: dict[str, int] = {}
        for i, preset in enumerate(self.presets):
            if preset.name in first:
                message = f"duplicate preset {preset.name!r} (also presets.{first[preset.name]})"
                problems.append(problem(("presets", i, "name"), message, preset.name))
            first.setdefault(preset.name, i)
            if self.mount is not None:
                problems += _preset_problems(i, preset, self.mount)
        raise_problems("CameraConfig", problems)
        return self


def _preset_problems(
    i: int, preset: PresetConfig, mount: CameraMountSpec
) -> list[InitErrorDetails]:
    lim = mount.limits
    checks = (
        ("pan_deg", preset.pan_deg, lim.pan_min_deg, lim.pan_max_deg),
        ("tilt_deg", preset.tilt_deg, lim.tilt_min_deg, lim.tilt_max_deg),
        ("zoom", preset.zoom, 1.0, lim.zoom_max),
    )
    return [
        problem(("presets", i, name), f"{value:g} is outside the mount's limits {lo:g}..{hi:g}")
        for name, value, lo, hi in checks
        if not lo <= value <= hi
    ]


# ------------------------------------------------------------------------------ models, policy
class ModelsConfig(_Strict):
    """Model files; each has its manifest beside it (`detector.onnx` → `detector.manifest.json`)."""

    detector: ConfigPath | None = Field(
        None,
        description="Detector (ONNX, or a TensorRT engine); null: simulated perception, "
        "which only works on a virtual camera",
    )
    policy: ConfigPath | None = Field(
        None, description="Learned PTZ policy (ONNX); required by policy.name 'learned'"
    )
    vlm: ConfigPath | None = Field(
        None, description="VLM (GGUF; its manifest names the projector); for vlm.backend llamacpp"
    )


class PolicyConfig(_Strict):
    """Which PTZ policy steers the camera."""

    name: PolicyName = Field("patrol", description="One of " + ", ".join(POLICY_NAMES))
    control_hz: float = Field(
        5.0, gt=0, le=60, description="PTZ decisions per second (at most the frame rate)"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the policy (its settings)"
    )


# ------------------------------------------------------------------------------ hazards
class HazardRule(_Strict):
    """When a hazard is raised and cleared, and how severe it is."""

    enabled: bool = Field(True, description="Raise alerts for this hazard")
    min_confidence: float = Field(
        0.6, ge=0.0, le=1.0, description="Observations below this confidence are ignored"
    )
    dwell_s: float = Field(2.0, ge=0.0, description="Seen this long before an alert is raised")
    cooldown_s: float = Field(
        30.0, gt=0.0, description="Unseen this long before the alert is cleared"
    )
    severity: Severity = Field("medium", description="Alert severity: low, medium, high, critical")
    vlm_check: bool = Field(
        True,
        description="Ask the VLM (when vlm.backend is set) before raising; only a confident 'no' "
        "suppresses the alert: a timeout or failure never holds it back",
    )


# Per-type defaults as subclasses, so a partly given rule keeps its own type's defaults and the
# JSON Schema shows them. The numbers are edge/alerts/rules.py's DEFAULT_HAZARD_RULES.
class NoHelmetRule(HazardRule):
    """A person whose head is seen bare."""


class NoVestRule(HazardRule):
    """A person seen without a hi-vis vest."""

    severity: Severity = Field("low", description="Alert severity: low, medium, high, critical")


class ZoneIntrusionRule(HazardRule):
    """A person inside an active zone (on the ground plane)."""

    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Person detections below this confidence are ignored"
    )
    dwell_s: float = Field(1.0, ge=0.0, description="Seen this long before an alert is raised")
    severity: Severity = Field("high", description="Alert severity (a zone's own overrides it)")
    vlm_check: bool = Field(
        False, description="Ask the VLM before raising (zones are geometry: off by default)"
    )


class FireSmokeRule(HazardRule):
    """Fire or smoke anywhere in view."""

    cooldown_s: float = Field(
        60.0, gt=0.0, description="Unseen this long before the alert is cleared"
    )
    severity: Severity = Field(
        "critical", description="Alert severity: low, medium, high, critical"
    )


class HazardRules(_Strict):
    """One rule per hazard type; a rule or a setting left out keeps its defaults."""

    no_helmet: NoHelmetRule = Field(default_factory=NoHelmetRule, description="Bare heads")
    no_vest: NoVestRule = Field(default_factory=NoVestRule, description="Missing hi-vis vests")
    zone_intrusion: ZoneIntrusionRule = Field(
        default_factory=ZoneIntrusionRule, description="People inside active zones"
    )
    fire_smoke: FireSmokeRule = Field(default_factory=FireSmokeRule, description="Fire or smoke")

    def rule(self, hazard: HazardType) -> HazardRule:
        """The rule for one hazard type."""
        rule: HazardRule = getattr(self, hazard)
        return rule


# ------------------------------------------------------------------------------ zones
class ZoneSchedule(_Strict):
    """Active during daily time windows, in the site's local time (`timezone`)."""

    schedule: list[TimeWindow] = Field(
        min_length=1,
        description='Windows ["HH:MM", "HH:MM"]; an end before the start runs past midnight',
    )

    def contains(self, local_time: dt.time) -> bool:
        """Whether a local time of day falls in one of the windows (start inclusive)."""
        now = f"{local_time.hour:02d}:{local_time.minute:02d}"
        return any(
            start <= now < end if start < end else (now >= start or now < end)
            for start, end in self.schedule
        )


class WhileMachineMoving(_Strict):
    """Active while a machine tracked inside the zone is moving."""

    while_machine_moving: Literal[True] = Field(description="Always true")


_ACTIVE_FORMS = '"always", {schedule: [["HH:MM", "HH:MM"], ...]} or {while_machine_moving: true}'


def _zone_active(value: Any, info: ValidationInfo) -> Any:
    """Pick the form by its key, so errors point into it instead of listing every union branch."""
    if value == "always" or isinstance(value, (ZoneSchedule, WhileMachineMoving)):
        return value
    if isinstance(value, dict):
        keys = [k for k in ("schedule", "while_machine_moving") if k in value]
        if len(keys) == 2:
            raise ValueError("set schedule or while_machine_moving, not both")
        if keys:
            form = ZoneSchedule if keys == ["schedule"] else WhileMachineMoving
            return form.model_validate(value, context=info.context)
    raise ValueError(f"must be {_ACTIVE_FORMS} (got {shorten(value)})")


ZoneActive = Annotated[
    Literal["always"] | ZoneSchedule | WhileMachineMoving, BeforeValidator(_zone_active)
]


class ZoneConfig(_Strict):
    """An exclusion zone on the ground plane; a person inside it while it is active intrudes."""

    id: Id = Field(description="Zone id, used in alerts")
    polygon: Polygon = Field(
        description="Outline [[x, y], …] in site metres (not pixels): at least 3 points in order"
    )
    active: ZoneActive = Field("always", description=f"When the zone is active: {_ACTIVE_FORMS}")
    severity: Severity | None = Field(
        None, description="Alert severity in this zone (null: hazards.zone_intrusion's)"
    )

    @property
    def activity(self) -> Literal["always", "schedule", "while_machine_moving"]:
        """Which form ``active`` takes."""
        if isinstance(self.active, ZoneSchedule):
            return "schedule"
        return "while_machine_moving" if isinstance(self.active, WhileMachineMoving) else "always"

    @property
    def schedule(self) -> list[tuple[str, str]]:
        """The schedule's windows as (start, end) "HH:MM" pairs (empty unless scheduled)."""
        if not isinstance(self.active, ZoneSchedule):
            return []
        return [(start, end) for start, end in self.active.schedule]


# ------------------------------------------------------------------------------ VLM, MQTT, outbox
class VlmConfig(_Strict):
    """The vision-language model that double-checks a hazard before its alert goes out."""

    backend: Literal["none", "llamacpp", "openai"] = Field(
        "none",
        description="none: no VLM check; llamacpp: models.vlm in-process; openai: an "
        "OpenAI-compatible server at url",
    )
    url: HttpUrl | None = Field(
        None, description="openai: the server's base URL, e.g. http://127.0.0.1:8000/v1"
    )
    model: str | None = Field(
        None, description="openai: model name ('auto' lets the expert router choose)"
    )
    timeout_s: float = Field(
        5.0, gt=0, description="Per question; on a timeout the alert goes out unconfirmed"
    )
    max_queue: int = Field(
        4, ge=1, description="Questions waiting at most; beyond it alerts go out unconfirmed"
    )
    max_wait_s: float = Field(
        3.0,
        ge=0,
        description="How long a hazard waits for a frame the VLM can judge (sharp, whole, big "
        "enough) before its alert goes out unasked",
    )
    look: bool = Field(
        True,
        description="While a hazard waits for a frame the VLM can judge, steer the camera to it "
        "(centred, zoomed to the question's framing) instead of following the policy",
    )

    @model_validator(mode="after")
    def _backend(self) -> VlmConfig:
        if self.backend == "openai" and self.url is None:
            raise_problems("VlmConfig", [problem(("url",), "required by backend 'openai'")])
        return self


class TlsFiles(_Strict):
    """TLS files for mqtts:// (PEM)."""

    ca_file: ExistingFile | None = Field(
        None, description="CA certificate(s) to trust (null: the system's CA store)"
    )
    cert_file: ExistingFile | None = Field(None, description="Client certificate (mutual TLS)")
    key_file: ExistingFile | None = Field(
        None, description="Client private key (null: it is inside cert_file)"
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsFiles:
        if self.key_file is not None and self.cert_file is None:
            raise_problems("TlsFiles", [problem(("cert_file",), "required with key_file")])
        return self


def _mqtt_url(url: str) -> str:
    message = url_problem(url, ("mqtt", "mqtts"), port_required=True)
    parts = urllib.parse.urlsplit(url)
    if message is None and (parts.username is not None or parts.password is not None):
        message = "put the credentials in username and password, not in the URL"
    if message is None and (parts.path not in ("", "/") or parts.query or parts.fragment):
        message = f"{url!r}: expected only {parts.scheme}://HOST:PORT (no path or query)"
    if message:
        raise ValueError(message)
    return url


class MqttSettings(_Strict):
    """Where alerts, status and telemetry go (topics: DESIGN.md, MQTT contract v1)."""

    url: str = Field(description="mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS")
    tls: TlsFiles | None = Field(
        None, description="TLS files (mqtts:// only; null: the system CA store, no client cert)"
    )
    username: str | None = Field(None, description="Broker user name (null: anonymous)")
    password: Secret | None = Field(None, description="Broker password (or use password_file)")
    password_file: ExistingFile | None = Field(
        None, description="File holding the broker password (one line)"
    )
    client_id: str | None = Field(
        None, min_length=1, max_length=128, description="MQTT client id (null: the device_id)"
    )
    keepalive_s: int = Field(60, ge=5, le=65535, description="MQTT keep-alive interval")
    topic_prefix: str = Field(
        "sitehawk/v1",
        description="Topics are {topic_prefix}/{site_id}/{device_id}/…; subscribers expect "
        "the default",
    )

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return urllib.parse.urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The broker's port."""
        return urllib.parse.urlsplit(self.url).port or 0

    @property
    def use_tls(self) -> bool:
        """Whether the connection uses TLS (mqtts://)."""
        return urllib.parse.urlsplit(self.url).scheme.lower() == "mqtts"

    def password_value(self) -> str | None:
        """The password, read from password_file when that is how it is given."""
        return read_secret(self.password, self.password_file)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _mqtt_url(url)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not prefix or any(not level for level in prefix.split("/")):
            raise ValueError(f"{prefix!r}: levels must not be empty (no leading, trailing or //)")
        if any(c in prefix for c in "+#\0") or prefix.startswith("$"):
            raise ValueError(f"{prefix!r}: no wildcards (+, #) and no leading $")
        return prefix

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        problems = _credential_problems(self)
        if self.tls is not None and not self.use_tls:
            message = "TLS files are set but the url is mqtt://: use mqtts://"
            problems.append(problem(("tls",), message))
        raise_problems("MqttSettings", problems)
        return self


class OutboxConfig(_Strict):
    """The disk-backed outbox (SQLite) that alerts, snapshots and status leave only on PUBACK."""

    path: ConfigPath | None = Field(
        None, description="Outbox database; must survive restarts (null: the agent's default)"
    )
    max_messages: int = Field(10_000, ge=1, description="Messages kept before snapshots give way")
    max_bytes: ByteSize = Field(
        ByteSize(256 * MIN_OUTBOX_BYTES),
        description="Bytes kept before snapshots give way (268435456 or '256 MiB'); alerts are "
        "never dropped",
    )

    @field_validator("max_bytes")
    @classmethod
    def _max_bytes(cls, value: ByteSize) -> ByteSize:
        if value < MIN_OUTBOX_BYTES:
            raise ValueError(f"{int(value)} bytes is too small: at least 1 MiB (1048576)")
        return value


# ------------------------------------------------------------------------------ the device
class DeviceConfig(_Strict):
    """Everything one SiteHawk device is told: cameras, models, rules, zones, MQTT, outbox."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    schema_version: Literal["sitehawk.device/1"] = Field(
        DEVICE_SCHEMA, description="Config format and version"
    )
    device_id: Id = Field(description="This device's id: an MQTT topic level, [A-Za-z0-9_-]")
    site_id: Id = Field(description="The site's id: an MQTT topic level, [A-Za-z0-9_-]")
    timezone: str = Field(
        "UTC", description="IANA time zone of the site (e.g. Europe/Berlin), for zone schedules"
    )
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras; one agent loop each")
    policy: PolicyConfig = Field(
        default_factory=PolicyConfig, validate_default=True, description="The PTZ policy"
    )
    hazards: HazardRules = Field(default_factory=HazardRules, description="Hazard rules")
    zones: list[ZoneConfig] = Field(
        default_factory=list, description="Exclusion zones on the ground plane"
    )
    vlm: VlmConfig = Field(default_factory=VlmConfig, description="The VLM check")
    # After cameras, policy and vlm: its validator checks the models they need.
    models: ModelsConfig = Field(
        default_factory=ModelsConfig, validate_default=True, description="Model files"
    )
    mqtt: MqttSettings | None = Field(
        None, description="The broker (null: alerts are only written locally)"
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="The durable outbox")
    telemetry_interval_s: float = Field(
        5.0, gt=0, le=3600, description="Seconds between telemetry messages"
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            message = f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
            raise ValueError(message) from None
        return name

    @field_validator("cameras", "zones")
    @classmethod
    def _unique_ids(cls, items: list[Any], info: ValidationInfo) -> list[Any]:
        first: dict[str, int] = {}
        problems = []
        for i, item in enumerate(items):
            if item.id in first:
                message = f"duplicate id {item.id!r} (also {info.field_name}.{first[item.id]})"
                problems.append(problem((i, "id"), message, item.id))
            first.setdefault(item.id, i)
        raise_problems("DeviceConfig", problems)
        return items

    @field_validator("policy")
    @classmethod
    def _control_rate(cls, policy: PolicyConfig, info: ValidationInfo) -> PolicyConfig:
        slower = [c for c in info.data.get("cameras", []) if c.frame_rate_hz < policy.control_hz]
        if slower:
            message = (
                f"{policy.control_hz:g} Hz is faster than the frame rate of camera "
                f"{slower[0].id!r} ({slower[0].frame_rate_hz:g} Hz): a policy decides once per "
                "frame at most"
            )
            raise_problems("PolicyConfig", [problem(("control_hz",), message, policy.control_hz)])
        return policy

    @field_validator("models")
    @classmethod
    def _models_needed(cls, models: ModelsConfig, info: ValidationInfo) -> ModelsConfig:
        # A field validator (not a model one) so this is reported even when other fields fail.
        problems = []
        policy, vlm = info.data.get("policy"), info.data.get("vlm")
        if policy is not None and policy.name == "learned" and models.policy is None:
            problems.append(problem(("policy",), "required by policy.name 'learned'"))
        if vlm is not None and vlm.backend == "llamacpp" and models.vlm is None:
            problems.append(problem(("vlm",), "required by vlm.backend 'llamacpp'"))
        real = [c for c in info.data.get("cameras", []) if c.source_kind != "virtual"]
        if real and models.detector is None:
            message = (
                f"required for camera {real[0].id!r} ({real[0].source_kind}): simulated "
                "perception only works on a virtual camera"
            )
            problems.append(problem(("detector",), message))
        raise_problems("ModelsConfig", problems)
        return models

    @model_validator(mode="after")
    def _defaults(self) -> DeviceConfig:
        if self.mqtt is not None and self.mqtt.client_id is None:
            self.mqtt.client_id = self.device_id
        return self

    def to_yaml(self, *, relative_to: str | Path | None = None, header: str = "") -> str:
        """YAML text (defaults written out, nulls left out); paths relative to ``relative_to``.

        Secrets are written in full: this is the file a device is given.
        """
        context = {CONFIG_DIR: Path(os.path.abspath(relative_to))} if relative_to else None
        data = self.model_dump(mode="json", exclude_none=True, context=context)
        comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
        text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        return comment + text


class _Dumper(yaml.SafeDumper):
    """Writes lists of plain values on one line: points read as [x, y], windows as [a, b]."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    flat = all(not isinstance(item, (list, dict)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


# ------------------------------------------------------------------------------ files, schema
def load_device_config(path: str | Path) -> DeviceConfig:
    """Read and validate a YAML/TOML device config; DeviceConfigError lists every problem."""
    path = Path(path)
    raw = read_mapping(path, DeviceConfigError)
    context = {CONFIG_DIR: Path(os.path.abspath(path)).parent}
    try:
        return DeviceConfig.model_validate(raw, context=context)
    except ValidationError as exc:
        problems = format_problems(path, exc, device_config_json_schema())
        raise DeviceConfigError(path, problems) from None


@functools.lru_cache(maxsize=1)
def _schema_json() -> str:
    return json.dumps(DeviceConfig.model_json_schema(), sort_keys=True)


def device_config_json_schema() -> dict[str, Any]:
    """The JSON Schema of DeviceConfig (a fresh copy)."""
    schema: dict[str, Any] = json.loads(_schema_json())
    return schema


def device_config_schema_text() -> str:
    """The schema file's exact text: indented, sorted keys, UTF-8, a newline at the end."""
    schema = device_config_json_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
