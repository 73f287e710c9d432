"""Validated field types for config models: ids, times of day, paths, secrets, URLs, polygons.

Each type validates itself and fails with a message that says what to write instead. Paths are
resolved against the folder given in the validation context under :data:`CONFIG_DIR` (the
config file's folder) and written back relative to it when the same key is in the
serialisation context.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Validation/serialisation-context key: the folder relative paths are resolved against.
CONFIG_DIR = "config_dir"
#: Error type of problems raised with :func:`problem` (their text is final: shown as is).
PROBLEM_TYPE = "config_problem"

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def problem(loc: tuple[str | int, ...], message: str, value: Any = None) -> InitErrorDetails:
    """One error at ``loc`` (relative to the model that raises it)."""
    # "{problem}" keeps braces in the message from being read as a template.
    error = PydanticCustomError(PROBLEM_TYPE, "{problem}", {"problem": message})
    return InitErrorDetails(type=error, loc=loc, input=value)


def raise_problems(title: str, problems: list[InitErrorDetails]) -> None:
    """Raise cross-field problems at their own fields; pydantic prefixes the model's location."""
    if problems:
        raise ValidationError.from_exception_data(title, problems)


def shorten(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------ ids, times
def _check_id(value: Any) -> Any:
    if isinstance(value, str) and value and not re.fullmatch(ID_PATTERN, value):
        bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_-"))})
        raise ValueError(
            f"{shorten(value)} is not a valid id: ids become MQTT topic levels, so use only "
            f"letters, digits, '_' and '-' (not {', '.join(repr(c) for c in bad)})"
        )
    return value


#: An id that can be an MQTT topic level: no '/', '+', '#', spaces or other punctuation.
Id = Annotated[
    str, Field(min_length=1, max_length=64, pattern=ID_PATTERN), BeforeValidator(_check_id)
]


def _time_of_day(value: Any) -> Any:
    if isinstance(value, dt.time):  # TOML's local time (07:30:00)
        if value.second or value.microsecond:
            raise ValueError(f'{value.isoformat()} has seconds: use "HH:MM"')
        return f"{value.hour:02d}:{value.minute:02d}"
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 17:30 as the base-60 number 1050.
        hh, mm = divmod(value, 60)
        raise ValueError(
            f"got the number {value}: YAML reads an unquoted {hh}:{mm:02d} as a base-60 number; "
            f'quote it: "{hh:02d}:{mm:02d}"'
        )
    if not isinstance(value, str) or not re.fullmatch(TIME_PATTERN, value):
        raise ValueError(
            f'{shorten(value)} is not a time of day: use "HH:MM", 24-hour, e.g. "07:30"'
        )
    return value


#: "HH:MM", 24-hour; TOML times (07:30:00) are accepted, YAML's base-60 surprise is explained.
TimeOfDay = Annotated[str, Field(pattern=TIME_PATTERN), BeforeValidator(_time_of_day)]


def _window(value: list[str]) -> list[str]:
    if value[0] == value[1]:
        raise ValueError(f"the window starts and ends at {value[0]}: it would be empty")
    return value


#: [start, end]; an end before the start runs past midnight.
TimeWindow = Annotated[
    list[TimeOfDay],
    Field(min_length=2, max_length=2, description='["HH:MM", "HH:MM"]: start and end'),
    AfterValidator(_window),
]


# ------------------------------------------------------------------------------ paths, secrets
def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    if isinstance(context, dict) and context.get(CONFIG_DIR) is not None:
        return Path(context[CONFIG_DIR])
    return None


def _resolve(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    base = _base_dir(info)
    if base is not None and not value.is_absolute():
        value = Path(os.path.normpath(base / value))
    return value


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = _resolve(value, info)
    hint = ""
    if not value.expanduser().is_absolute() and _base_dir(info) is not None:
        hint = " (relative paths are resolved against the config file's folder)"
    if not path.exists():
        raise ValueError(f"no such file: {path}{hint}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {path}: permission denied")
    return path


def _serialize_path(value: Path, info: SerializationInfo) -> str:
    base = info.context.get(CONFIG_DIR) if isinstance(info.context, dict) else None
    if base is not None and value.is_absolute() and Path(base) in value.parents:
        return value.relative_to(base).as_posix()  # inside the config's folder: keep it movable
    return str(value)


_path_out = PlainSerializer(_serialize_path, return_type=str, when_used="json")
#: A path; a relative one is resolved against the config file's folder.
ConfigPath = Annotated[Path, AfterValidator(_resolve), _path_out]
#: A file that must exist and be readable when the config is loaded (secrets, TLS files).
ExistingFile = Annotated[Path, AfterValidator(_existing_file), _path_out]
#: Masked in repr and logs, written in full to files (provisioning writes configs with secrets).
Secret = Annotated[
    SecretStr,
    PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json"),
]


def read_secret(password: SecretStr | None, password_file: Path | None) -> str | None:
    """The password, read from ``password_file`` (one line) when that is how it is given."""
    if password is not None:
        return password.get_secret_value()
    if password_file is not None:
        return password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return None


# ------------------------------------------------------------------------------ URLs
def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (URLs end up in error messages and logs)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def url_problem(url: str, schemes: tuple[str, ...], *, port_required: bool = False) -> str | None:
    """Why ``url`` is not a ``scheme://host[:port]…`` URL of one of ``schemes``, or None."""
    shown = repr(redact_url(url))
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in schemes:
        expected = " or ".join(f"{s}://" for s in schemes)
        got = f"{parts.scheme}://" if parts.scheme else "none"
        return f"{shown}: the scheme must be {expected} (got {got})"
    if not parts.hostname:
        return f"{shown} has no host: expected {parts.scheme}://HOST{':PORT' * port_required}"
    try:
        port = parts.port
    except ValueError:
        return f"{shown}: the port must be a number from 1 to 65535"
    if port == 0 or (port is None and port_required):
        return f"{shown} has no port: expected {parts.scheme}://{parts.hostname}:PORT"
    return None


def _url_validator(*schemes: str) -> Callable[[str], str]:
    def check(url: str) -> str:
        message = url_problem(url, schemes)
        if message:
            raise ValueError(message)
        return url

    return check


RtspUrl = Annotated[str, AfterValidator(_url_validator("rtsp", "rtsps"))]
HttpUrl = Annotated[str, AfterValidator(_url_validator("http", "https"))]


# ------------------------------------------------------------------------------ polygons
def _cross(o: list[float], a: list[float], b: list[float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _within_box(a: list[float], b: list[float], c: list[float], eps: float = 1e-9) -> bool:
    return all(min(a[k], b[k]) - eps <= c[k] <= max(a[k], b[k]) + eps for k in (0, 1))


def segments_meet(p1: list[float], p2: list[float], q1: list[float], q2: list[float]) -> bool:
    """Whether segments p1-p2 and q1-q2 cross or touch."""
    eps = 1e-12
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if (d1 * d2 < 0 and abs(d1) > eps and abs(d2) > eps) and (
        d3 * d4 < 0 and abs(d3) > eps and abs(d4) > eps
    ):
        return True
    return (
        (abs(d1) <= eps and _within_box(q1, q2, p1))
        or (abs(d2) <= eps and _within_box(q1, q2, p2))
        or (abs(d3) <= eps and _within_box(p1, p2, q1))
        or (abs(d4) <= eps and _within_box(p1, p2, q2))
    )


def polygon_problem(points: list[list[float]]) -> str | None:
    """Why ``points`` is not a simple polygon (≥ 3 distinct points, no crossing), or None."""
    n = len(points)
    if n < 3:
        return f"a polygon needs at least 3 points, got {n}"
    for i in range(n):
        if points[i] == points[(i + 1) % n]:
            return f"points {i} and {(i + 1) % n} are the same point"
    if all(abs(_cross(points[0], points[1], p)) <= 1e-12 for p in points[2:]):
        return "the points lie on one line: the polygon has no area"
    for i in range(n):  # adjacent edges folding back onto each other
        a, b, c = points[i - 1], points[i], points[(i + 1) % n]
        dot = (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1])
        if abs(_cross(a, b, c)) <= 1e-12 and dot < 0:
            return f"the outline doubles back on itself at point {i}"
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if segments_meet(points[i], points[i + 1], points[j], points[(j + 1) % n]):
                return (
                    f"the outline crosses itself: edge {i}-{i + 1} meets edge "
                    f"{j}-{(j + 1) % n} (list the points in order around the outline)"
                )
    return None


def _polygon(points: list[list[float]]) -> list[list[float]]:
    if len(points) >= 4 and points[0] == points[-1]:
        points = points[:-1]  # a closed ring (GeoJSON style): the repeated point is dropped
    message = polygon_problem(points)
    if message:
        raise ValueError(message)
    return points


Coordinate = Annotated[float, Field(allow_inf_nan=False)]
Point = Annotated[
    list[Coordinate], Field(min_length=2, max_length=2, description="[x, y] in site metres")
]
#: A simple polygon in site metres: ≥ 3 distinct points in order, not crossing itself.
Polygon = Annotated[list[Point], Field(json_schema_extra={"minItems": 3}), AfterValidator(_polygon)]
