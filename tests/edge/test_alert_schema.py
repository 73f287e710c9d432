"""alert.v1.json: DESIGN.md's alert contract, shipped in the package, with field-named errors."""

from __future__ import annotations

import copy
import typing
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import edge
from edge.alerts.schema import (
    ALERT_SCHEMA_NAME,
    AlertMessage,
    AlertValidationError,
    alert_problems,
    format_utc,
    load_alert_schema,
    validate_alert,
)

#: The fields DESIGN.md's alert table lists (the contract subscribers build on).
DESIGN_FIELDS = {
    "schema",
    "alert_id",
    "state",
    "seq",
    "site_id",
    "device_id",
    "camera_id",
    "hazard",
    "severity",
    "confidence",
    "first_seen",
    "ts",
    "location",
    "evidence",
    "vlm",
    "models",
    "agent_version",
}
ALERT_ID = "3f2b8c1e-9a4d-4e2f-8b1a-2c3d4e5f6a7b"
NESTED_REQUIRED = {
    "location": ["pan_deg", "tilt_deg", "zoom", "bbox", "ground_xy_m"],
    "evidence": ["snapshot_topic", "snapshot_sha256", "width", "height"],
    "vlm": ["question", "answer", "confirmed", "latency_ms", "error"],
}


def _valid() -> dict[str, Any]:
    return {
        "schema": "sitehawk.alert/1",
        "alert_id": ALERT_ID,
        "state": "raised",
        "seq": 17,
        "site_id": "site-a",
        "device_id": "jetson-01",
        "camera_id": "cam0",
        "hazard": "no_helmet",
        "severity": "medium",
        "confidence": 0.91,
        "first_seen": "2025-06-01T08:30:00.125Z",
        "ts": "2025-06-01T08:30:02Z",
        "location": {
            "pan_deg": -12.5,
            "tilt_deg": -8.25,
            "zoom": 6.0,
            "bbox": [0.41, 0.2, 0.52, 0.81],
            "ground_xy_m": [12.3, 45.6],
        },
        "evidence": {
            "snapshot_topic": f"sitehawk/v1/site-a/jetson-01/snapshot/{ALERT_ID}",
            "snapshot_sha256": "a" * 64,
            "width": 1280,
            "height": 720,
        },
        "vlm": {
            "question": "Is the worker in the box wearing a helmet?",
            "answer": "no",
            "confirmed": True,
            "latency_ms": 412.0,
            "error": None,
        },
        "models": {"detector": "0" * 64, "vlm": "f" * 64},
        "agent_version": "0.1.0",
    }


def _fields_of(message: Any) -> list[str]:
    with pytest.raises(AlertValidationError) as info:
        validate_alert(message)
    assert isinstance(info.value, ValueError)
    return info.value.fields


# ------------------------------------------------------------------ the file and the contract
def test_schema_ships_as_package_data_and_is_a_valid_draft_2020_12_schema() -> None:
    assert (Path(edge.__file__).parent / "schemas" / "__init__.py").is_file()  # found as a package
    text = resources.files("edge.schemas").joinpath("alert.v1.json").read_text()
    schema = load_alert_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert '"additionalProperties": false' in text
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == ALERT_SCHEMA_NAME == "sitehawk.alert/1"


def test_schema_requires_exactly_the_design_fields_and_forbids_others() -> None:
    schema = load_alert_schema()
    assert set(schema["required"]) == set(schema["properties"]) == DESIGN_FIELDS
    assert schema["additionalProperties"] is False
    for name, required in NESTED_REQUIRED.items():
        sub = schema["properties"][name]
        assert sub["required"] == required and sub["additionalProperties"] is False, name
    assert set(typing.get_type_hints(AlertMessage)) == DESIGN_FIELDS


def test_load_returns_a_fresh_copy() -> None:
    load_alert_schema()["required"].clear()
    assert load_alert_schema()["required"]


# ------------------------------------------------------------------ valid messages
def test_valid_example_passes() -> None:
    validate_alert(_valid())
    assert alert_problems(_valid()) == []


def test_nullable_fields_accept_null() -> None:
    msg = _valid()
    msg["vlm"] = None
    msg["location"]["ground_xy_m"] = None
    msg["models"] = {}
    msg["state"] = "cleared"
    validate_alert(msg)
    unanswered = _valid()
    unanswered["vlm"].update(answer=None, confirmed=None, latency_ms=None, error="timeout")
    validate_alert(unanswered)


# ------------------------------------------------------------------ invalid messages
@pytest.mark.parametrize("field", sorted(DESIGN_FIELDS))
def test_missing_required_field_is_named(field: str) -> None:
    msg = _valid()
    del msg[field]
    assert _fields_of(msg) == [field]


@pytest.mark.parametrize(
    ("parent", "field"), [(p, f) for p, fields in NESTED_REQUIRED.items() for f in fields]
)
def test_missing_nested_field_is_named(parent: str, field: str) -> None:
    msg = _valid()
    del msg[parent][field]
    assert _fields_of(msg) == [f"{parent}.{field}"]


@pytest.mark.parametrize("where", [None, "location", "evidence", "vlm"])
def test_extra_field_is_named(where: str | None) -> None:
    msg = _valid()
    (msg if where is None else msg[where])["colour"] = "red"
    expected = "colour" if where is None else f"{where}.colour"
    assert _fields_of(msg) == [expected]
    with pytest.raises(ValueError, match=expected.replace(".", r"\.")):
        validate_alert(msg)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("schema",), "sitehawk.alert/2"),
        (("state",), "open"),
        (("hazard",), "no_gloves"),
        (("severity",), "urgent"),
        (("vlm", "error"), "crashed"),
    ],
)
def test_bad_enum_is_named(path: tuple[str, ...], value: str) -> None:
    msg = _valid()
    target = msg
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _fields_of(msg) == [".".join(path)]


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid",
        "3f2b8c1e9a4d4e2f8b1a2c3d4e5f6a7b",  # no hyphens
        "3f2b8c1e-9a4d-4e2f-8b1a-2c3d4e5f6a7",  # one digit short
        "{3f2b8c1e-9a4d-4e2f-8b1a-2c3d4e5f6a7b}",
    ],
)
def test_bad_uuid_is_named(value: str) -> None:
    msg = _valid()
    msg["alert_id"] = value
    assert _fields_of(msg) == ["alert_id"]


@pytest.mark.parametrize("field", ["first_seen", "ts"])
@pytest.mark.parametrize(
    "value",
    [
        "2025-06-01 08:30:00Z",  # space instead of T
        "2025-06-01T08:30:00",  # no timezone
        "2025-06-01T08:30:00+02:00",  # not UTC
        "2025-06-01T08:30:00+00:00",  # UTC, but the contract says 'Z'
        "2025-02-30T08:30:00Z",  # no such day
        "2025-06-01T25:30:00Z",
        "yesterday",
    ],
)
def test_bad_timestamp_is_named(field: str, value: str) -> None:
    msg = _valid()
    msg[field] = value
    assert _fields_of(msg) == [field]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("seq",), 0),
        (("seq",), 1.5),
        (("confidence",), 1.2),
        (("confidence",), -0.1),
        (("location", "bbox"), [0.1, 0.2, 0.3]),
        (("location", "bbox", 2), 1.5),
        (("location", "ground_xy_m"), [1.0]),
        (("location", "zoom"), 0.5),
        (("evidence", "snapshot_sha256"), "A" * 64),
        (("evidence", "snapshot_sha256"), "abc"),
        (("evidence", "width"), 0),
        (("vlm", "confirmed"), "yes"),
        (("models", "detector"), "not-a-hash"),
        (("site_id",), ""),
    ],
)
def test_bad_value_is_named(path: tuple[Any, ...], value: Any) -> None:
    msg = copy.deepcopy(_valid())
    target: Any = msg
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    expected = ""
    for part in path:
        expected += f"[{part}]" if isinstance(part, int) else (f".{part}" if expected else part)
    assert _fields_of(msg) == [expected]


def test_every_problem_is_reported_one_per_line() -> None:
    msg = _valid()
    del msg["seq"]
    msg["state"] = "open"
    msg["location"]["bbox"] = "everywhere"
    with pytest.raises(AlertValidationError) as info:
        validate_alert(msg)
    assert sorted(info.value.fields) == ["location.bbox", "seq", "state"]
    assert len(str(info.value).splitlines()) == 4  # heading + one line per problem


def test_non_object_message_is_rejected() -> None:
    assert _fields_of(["not", "an", "object"]) == ["(message)"]


# ------------------------------------------------------------------ timestamps we write
def test_format_utc_writes_the_contract_form() -> None:
    t = datetime(2025, 6, 1, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_utc(t) == "2025-06-01T08:30:00.123Z"
    msg = _valid()
    msg["ts"] = format_utc(t)
    validate_alert(msg)
    with pytest.raises(ValueError, match="timezone"):
        format_utc(datetime(2025, 6, 1, 8, 30))
