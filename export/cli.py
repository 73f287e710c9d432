"""`sitehawk-export`: export trained models with manifests; check parity with the edge backends."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from export import __version__
from firmware_config.cli_common import build_root_parser, run_cli

PROG = "sitehawk-export"

#: Modules that add subcommands: each has ``register(subparsers)`` (heavy imports inside handlers).
SUBCOMMAND_MODULES: tuple[str, ...] = ("export.detector_cli", "export.vlm_cli")


def build_parser() -> argparse.ArgumentParser:
    """The parser; each subcommand sets `handler` (args -> exit code) with `set_defaults`."""
    return build_root_parser(
        PROG,
        "Export trained SiteHawk models (ONNX, TensorRT, GGUF) and verify them.",
        __version__,
        [importlib.import_module(name).register for name in SUBCOMMAND_MODULES],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run `sitehawk-export`; returns the process exit code."""
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
