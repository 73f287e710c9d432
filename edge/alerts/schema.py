"""The alert message contract (``sitehawk.alert/1``): its JSON Schema and a validator.

The schema ships inside the package (``edge/schemas/alert.v1.json``) so any subscriber can check
messages with the file the device was built with. :func:`validate_alert` raises
:class:`AlertValidationError` whose message names every field at fault, one line each.

Formats are checked here without optional packages: ``date-time`` must be RFC 3339 in UTC with
a ``Z`` suffix (the schema's ``pattern`` says so too, for validators that skip formats) and
``uuid`` must be a canonical hyphenated UUID.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Literal, TypedDict

from jsonschema import Draft202012Validator, FormatChecker, ValidationError

ALERT_SCHEMA_NAME = "sitehawk.alert/1"
ALERT_SCHEMA_FILE = "alert.v1.json"

Hazard = Literal["no_helmet", "no_vest", "zone_intrusion", "fire_smoke"]
Severity = Literal["low", "medium", "high", "critical"]
HAZARD_TYPES: tuple[Hazard, ...] = ("no_helmet", "no_vest", "zone_intrusion", "fire_smoke")
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

_RFC3339_UTC = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$")


class AlertLocation(TypedDict):
    pan_deg: float
    tilt_deg: float
    zoom: float
    bbox: list[float]
    ground_xy_m: list[float] | None


class AlertEvidence(TypedDict):
    snapshot_topic: str
    snapshot_sha256: str
    width: int
    height: int


class VlmCheck(TypedDict):
    question: str
    answer: str | None
    confirmed: bool | None
    latency_ms: float | None
    error: Literal["timeout", "unavailable"] | None


class AlertMessage(TypedDict):
    """The alert message as a typed dict (keys exactly as in alert.v1.json)."""

    schema: str
    alert_id: str
    state: Literal["raised", "cleared"]
    seq: int
    site_id: str
    device_id: str
    camera_id: str
    hazard: Hazard
    severity: Severity
    confidence: float
    first_seen: str
    ts: str
    location: AlertLocation
    evidence: AlertEvidence
    vlm: VlmCheck | None
    models: dict[str, str]
    agent_version: str


class AlertValidationError(ValueError):
    """An alert message that breaks ``alert.v1.json``; ``fields`` lists the dotted paths."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        self.fields = [field for field, _ in problems]
        lines = "\n".join(f"  {field}: {problem}" for field, problem in problems)
        super().__init__(f"alert message does not match {ALERT_SCHEMA_FILE}:\n{lines}")


def format_utc(t: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a ``Z`` suffix; ``t`` must be timezone-aware."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"timestamp {t!r} has no timezone; pass an aware datetime (UTC)")
    text = t.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _is_rfc3339_utc(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the "type" keyword reports non-strings
    match = _RFC3339_UTC.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        # leap seconds (:60) are legal RFC 3339 but not datetime; accept them as :59
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    return second <= 60


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(_is_rfc3339_utc)
    checker.checks("uuid")(_is_uuid)
    return checker


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("edge.schemas").joinpath(ALERT_SCHEMA_FILE).read_text(encoding="utf-8")


def load_alert_schema() -> dict[str, Any]:
    """The alert JSON Schema as a fresh dict (read from the installed package)."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = load_alert_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_format_checker())


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(message)"


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    """Turn one jsonschema error into (field, problem) pairs that name the field itself."""
    base = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in error.validator_value if name not in instance]
        return [(_dotted([*base, name]), "required field is missing") for name in missing]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(name for name in instance if name not in known)
        if extra and error.schema.get("additionalProperties") is False:
            return [
                (_dotted([*base, name]), "unexpected field (not in the schema)") for name in extra
            ]
    if error.validator == "format":
        return [(_dotted(base), f"{instance!r} is not a valid {error.validator_value}")]
    if error.validator == "pattern" and error.schema.get("format") == "date-time":
        return [(_dotted(base), f"{instance!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z)")]
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return [(_dotted(base), f"{instance!r} is not one of {allowed}")]
    return [(_dotted(base), error.message)]


def alert_problems(message: Any) -> list[tuple[str, str]]:
    """Every (field, problem) pair of ``message`` against alert.v1.json; empty when valid."""
    errors = sorted(
        _validator().iter_errors(message), key=lambda e: list(map(str, e.absolute_path))
    )
    # a bad uuid or timestamp breaks both its "format" and its "pattern": report it once
    format_paths = {tuple(e.absolute_path) for e in errors if e.validator == "format"}
    problems: list[tuple[str, str]] = []
    for error in errors:
        if error.validator == "pattern" and tuple(error.absolute_path) in format_paths:
            continue
        for problem in _problems(error):
            if problem not in problems:
                problems.append(problem)
    return problems


def validate_alert(message: Any) -> None:
    """Raise :class:`AlertValidationError` (a ``ValueError``) unless ``message`` is valid."""
    problems = alert_problems(message)
    if problems:
        raise AlertValidationError(problems)
