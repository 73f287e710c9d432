"""`sitehawk-export`: export trained models with manifests; check parity with the edge backends."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from export import __version__

PROG = "sitehawk-export"


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `handler` (args -> exit code) with `set_defaults`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export trained SiteHawk models (ONNX, TensorRT, GGUF) and verify them.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sitehawk-export`; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    return int(handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
