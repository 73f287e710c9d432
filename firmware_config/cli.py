"""`sitehawk-fleet`: provision devices, build signed bundles, stage rootfs overlays, push.

Commands (each registers itself with one ``_add_*`` function listed in ``COMMANDS``):

* ``validate FILE …``: check device configs; every problem as one ``file:field: problem`` line.
* ``schema``: write (or ``--check``) the device config's JSON Schema.

This module imports only the standard library at import time (pydantic loads in the command).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from firmware_config import __version__
from firmware_config.cli_common import build_root_parser, run_cli

PROG = "sitehawk-fleet"
#: Where `schema` writes by default: the copy shipped in the package (firmware_config.device
#: has the same path as SCHEMA_PATH; importing it here would load pydantic for `--help`).
DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "device.v1.json"


def _add_validate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "validate",
        help="check device config files (YAML or TOML)",
        description="Validate device config files (schema sitehawk.device/1). Prints `FILE: ok`, "
        "or one `file:field: problem` line per problem; exits 1 if any file has a problem.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".yaml, .yml or .toml")
    p.set_defaults(handler=_cmd_validate)


def _add_schema(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "schema",
        help="write the device config's JSON Schema",
        description="Generate the JSON Schema of the device config (sitehawk.device/1).",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_SCHEMA_PATH,
        help="output file (default: the copy shipped in the package, "
        "firmware_config/schemas/device.v1.json)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the file differs from the generated schema",
    )
    p.set_defaults(handler=_cmd_schema)


#: Every subcommand's registration function, in `--help` order.
COMMANDS: tuple[Callable[[Any], None], ...] = (_add_validate, _add_schema)


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `handler` (args -> exit code) with `set_defaults`."""
    return build_root_parser(
        PROG,
        "Provision SiteHawk devices, build signed bundles and push updates.",
        __version__,
        COMMANDS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sitehawk-fleet`; returns the process exit code."""
    return run_cli(build_parser(), argv)


def _cmd_validate(args: argparse.Namespace) -> int:
    from firmware_config.device import DeviceConfigError, load_device_config

    num_bad = 0
    for path in args.files:
        try:
            load_device_config(path)
        except DeviceConfigError as exc:
            num_bad += 1
            for line in exc.problems:
                print(line)
        else:
            print(f"{path}: ok")
    return 1 if num_bad else 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from firmware_config.device import device_config_schema_text

    text = device_config_schema_text()
    out: Path = args.out
    if args.check:
        try:
            current = out.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"{out}: missing: run `{PROG} schema --out {out}`", file=sys.stderr)
            return 1
        if current != text:
            print(f"{out}: out of date: run `{PROG} schema --out {out}`", file=sys.stderr)
            return 1
        print(f"{out}: up to date")
        return 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"{PROG}: error: {out}: cannot write: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
