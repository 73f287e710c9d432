"""What :class:`~edge.mqtt.client.MqttLink` needs to reach a broker: :class:`LinkSettings`.

``DeviceConfig.mqtt`` (firmware_config/device.py) is what a device is *told*; these are the
resolved values the link runs with (client id defaulted, password file read) plus the link's
tuning knobs, whose defaults suit a device: ``LinkSettings.from_config(cfg.mqtt, cfg.device_id)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edge.mqtt.contract import DEFAULT_TOPIC_PREFIX, check_topic_prefix

if TYPE_CHECKING:
    from firmware_config.device import MqttSettings as DeviceMqttSettings

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class LinkSettingsError(ValueError):
    """The MQTT settings cannot be used (the message names the field or file)."""


class LinkSettings(BaseModel):
    """How the link reaches its broker, resolved (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        description="broker URL: mqtt://HOST[:PORT] (default port 1883) or mqtts://HOST[:PORT] "
        "(TLS, default port 8883)"
    )
    client_id: str = Field(min_length=1, max_length=128, description="MQTT client id")
    username: str | None = Field(None, description="MQTT username (per-device credentials)")
    password: SecretStr | None = Field(None, description="MQTT password")
    ca_file: Path | None = Field(
        None, description="CA certificate(s) the broker's certificate must chain to (mqtts://; "
        "null: the system CAs)"
    )  # fmt: skip
    cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="client private key (null: inside cert_file)")
    keepalive_s: int = Field(60, ge=5, le=65535, description="MQTT keep-alive interval")
    topic_prefix: str = Field(DEFAULT_TOPIC_PREFIX, description="first topic levels")
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP/TLS connect and CONNACK wait")
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(30.0, gt=0, description="reconnect delay cap (doubles up to)")
    max_inflight: int = Field(
        16, ge=1, le=1000, description="QoS 1 messages sent but not yet acknowledged"
    )

    @classmethod
    def from_config(cls, mqtt: DeviceMqttSettings, device_id: str, **tuning: Any) -> LinkSettings:
        """Resolve ``DeviceConfig.mqtt`` (reads its password_file); ``tuning`` overrides the
        link's knobs (``reconnect_max_s=…``)."""
        tls = mqtt.tls
        return cls(
            url=mqtt.url,
            client_id=mqtt.client_id or device_id,
            username=mqtt.username,
            password=mqtt.password_value(),
            ca_file=tls.ca_file if tls else None,
            cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None,
            keepalive_s=mqtt.keepalive_s,
            topic_prefix=mqtt.topic_prefix,
            **tuning,
        )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"scheme must be mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
            raise ValueError(
                f"{url!r}: give only scheme, host and port (credentials go in username/password)"
            )
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in {url!r}: {exc}") from None
        return url

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        check_topic_prefix(prefix)
        return prefix

    @model_validator(mode="after")
    def _check_combinations(self) -> LinkSettings:
        tls_files = (self.ca_file, self.cert_file, self.key_file)
        if any(f is not None for f in tls_files) and not self.use_tls:
            raise ValueError("TLS files are set but the url is mqtt://: use mqtts://")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set but cert_file is not")
        if self.password is not None and not self.username:
            raise ValueError("a password needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked by the validator
        return host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"
