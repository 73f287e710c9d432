"""`sitehawk-fleet`: provision devices, build signed bundles, stage rootfs overlays, push."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from firmware_config import __version__

PROG = "sitehawk-fleet"


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `handler` (args -> exit code) with `set_defaults`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Provision SiteHawk devices, build signed bundles and push updates.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sitehawk-fleet`; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    return int(handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
