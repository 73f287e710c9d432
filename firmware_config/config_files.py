"""Config files: read YAML or TOML, and turn validation errors into ``file:field: problem`` lines.

Used by every file a device is given (the device config now; manifests and bundles later), so
that all of them report problems the same way: one line per problem, naming the file, the
field path (``cameras.0.onvif.url``) and what is wrong, with the allowed values or the closest
known field name where that helps.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from firmware_config.fields import PROBLEM_TYPE, shorten

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

CONFIG_SUFFIXES = (".yaml", ".yml", ".toml")
#: Fields whose values never appear in messages.
SECRET_FIELDS = frozenset({"password"})


class ConfigFileError(ValueError):
    """A file that cannot be used; ``problems`` holds one ``file:field: problem`` line each."""

    def __init__(self, path: str | Path, problems: list[str]):
        super().__init__("\n".join(problems))
        self.path = Path(path)
        self.problems = problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            seen = key in first_line
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {first_line[key] + 1})",
                key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_mapping(path: Path, error: type[ConfigFileError] = ConfigFileError) -> dict[str, Any]:
    """The top-level mapping of a .yaml/.yml/.toml file; any problem raises ``error``."""

    def fail(message: str) -> ConfigFileError:
        return error(path, [f"{path}: {message}"])

    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise fail(f"unsupported file type {suffix or '(none)'!r}: use .yaml, .yml or .toml")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a folder, not a file") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 text (byte {exc.start})") from None
    if suffix == ".toml":
        try:
            raw: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise fail(f"not valid TOML: {exc}") from None
    else:
        try:
            raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise fail(f"not valid YAML{where}: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise fail(f"not valid YAML: {exc}") from None
    if raw is None:
        raise fail("the file is empty")
    if not isinstance(raw, dict):
        raise fail(f"expected a mapping (field: value) at the top level, got {type(raw).__name__}")
    return raw


def format_problems(
    path: str | Path, exc: ValidationError, schema: dict[str, Any] | None = None
) -> list[str]:
    """One ``file:field.path: problem`` line per validation error.

    With the model's JSON ``schema``, an unknown field is answered with the allowed names and
    the closest one ("did you mean 'password'?").
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"{path}:{loc}: {describe_error(err, schema)}")
    return lines


def describe_error(err: Any, schema: dict[str, Any] | None = None) -> str:
    """The problem part of one pydantic error (an item of ``ValidationError.errors()``)."""
    kind, loc, value = err["type"], err["loc"], err.get("input")
    if kind in ("value_error", "assertion_error"):
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "extra_forbidden":
        return _unknown_field(loc, schema)
    message = str(err["msg"])
    secret = any(part in SECRET_FIELDS for part in loc)
    if (
        kind not in (PROBLEM_TYPE, "missing")
        and isinstance(value, (str, int, float))
        and not secret
    ):
        message += f" (got {shorten(value)})"
    return message


def _unknown_field(loc: tuple[Any, ...], schema: dict[str, Any] | None) -> str:
    name = str(loc[-1]) if loc else ""
    message = f"unknown field {name!r}"
    allowed = allowed_fields(schema, loc[:-1]) if schema else []
    if not allowed:
        return message
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" (allowed: {', '.join(allowed)})"


def allowed_fields(schema: dict[str, Any], loc: tuple[Any, ...]) -> list[str]:
    """Field names a JSON Schema allows at ``loc`` (every object branch of a union counts)."""
    defs = schema.get("$defs", {})

    def branches(node: dict[str, Any]) -> list[dict[str, Any]]:
        if "$ref" in node:
            node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        found = [node] if "properties" in node or "items" in node else []
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, []):
                found += branches(branch)
        return found

    def children(node: dict[str, Any], part: Any) -> list[dict[str, Any]]:
        out = []
        for obj in branches(node):
            if isinstance(part, int) and isinstance(obj.get("items"), dict):
                out.append(obj["items"])
            elif isinstance(part, str) and part in obj.get("properties", {}):
                out.append(obj["properties"][part])
        return out

    nodes = [schema]
    for part in loc:
        nodes = [child for node in nodes for child in children(node, part)]
    names: list[str] = []
    for node in nodes:
        for obj in branches(node):
            names += [n for n in obj.get("properties", {}) if n not in names]
    return names
