"""The MQTT contract, version 1 (DESIGN.md): a device's topics and its status message.

Subscribers build on these names and fields: change them only with a new contract version.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from edge.mqtt.outbox import Outbox

DEFAULT_TOPIC_PREFIX = "sitehawk/v1"
#: Site, device and alert ids become topic levels: letters, digits, ``.``, ``_``, ``-``.
TOPIC_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

StatusState = Literal["online", "offline", "stopped"]


def check_topic_prefix(prefix: str) -> None:
    """Raise ValueError unless ``prefix`` is usable as the first levels of every topic."""
    levels = prefix.split("/")
    if not prefix or any(not level for level in levels) or any(c in prefix for c in "+#\0$"):
        raise ValueError(
            f"topic prefix {prefix!r} must be non-empty levels joined by '/', "
            "without + # $ or a leading/trailing '/'"
        )


def check_topic_id(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one topic level, else raise ValueError naming ``what``."""
    if not TOPIC_ID_PATTERN.match(value):
        raise ValueError(
            f"{what} {value!r} cannot be a topic level: use 1-64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Topics:
    """The topics of one device, exactly as in DESIGN.md's MQTT contract (version 1)."""

    prefix: str
    site_id: str
    device_id: str

    def __post_init__(self) -> None:
        check_topic_prefix(self.prefix)
        check_topic_id(self.site_id, "site id")
        check_topic_id(self.device_id, "device id")

    @property
    def base(self) -> str:
        """``{prefix}/{site}/{device}``: everything this device publishes is under it."""
        return f"{self.prefix}/{self.site_id}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def alert(self) -> str:
        return f"{self.base}/alert"

    def snapshot(self, alert_id: str) -> str:
        return f"{self.base}/snapshot/{check_topic_id(alert_id, 'alert id')}"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def ota_cmd(self) -> str:
        return f"{self.base}/ota/cmd"

    @property
    def ota_state(self) -> str:
        return f"{self.base}/ota/state"


# ---------------------------------------------------------------------------------------------
# status messages
@dataclass
class StatusInfo:
    """What the status message says about the agent (besides its state and the counters)."""

    boot_seq: int
    agent_version: str
    models: dict[str, str] = field(default_factory=dict)  # name -> sha256


def rfc3339_utc(ts: float | None = None) -> str:
    """``2025-01-31T12:00:00.123Z`` for a Unix time (now by default)."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_payload(
    state: StatusState, info: StatusInfo, outbox: Outbox, ts: float | None = None
) -> bytes:
    """The status JSON of DESIGN.md (state, boot_seq, agent_version, models, ts) plus the
    outbox counters ``outbox_depth``, ``outbox_full`` and ``refused``."""
    return json.dumps(
        {
            "state": state,
            "boot_seq": info.boot_seq,
            "agent_version": info.agent_version,
            "models": dict(info.models),
            "ts": rfc3339_utc(ts),
            "outbox_depth": outbox.depth,
            "outbox_full": outbox.full,
            "refused": outbox.refused_count,
        },
        separators=(",", ":"),
    ).encode()
