"""The skeleton every ``sitehawk-*`` command line shares: root parser, dispatch, clean errors.

Each CLI lists its subcommands as ``_add_*(subparsers)`` functions; each subcommand sets
``handler`` (args → exit code) with ``set_defaults``. Bad input raises :class:`CommandError` (or
an exception type the CLI names), which prints one ``prog: error: …`` line and exits 2 — no
traceback for a user's mistake. Standard library only: ``--help`` stays instant on a device.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class CommandError(Exception):
    """A command failed on bad input; the CLI prints the message and exits ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def build_root_parser(
    prog: str, description: str, version: str, commands: Iterable[Callable[[Any], None]]
) -> argparse.ArgumentParser:
    """The root parser with ``--version`` and one subparser per ``commands`` entry."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {version}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for add in commands:
        add(subparsers)
    return parser


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    *,
    user_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Parse ``argv``, run the chosen handler, turn user errors into exit code 2.

    Without a command the help is printed (exit 0). ``user_errors`` are exception types that mean
    bad input for this CLI (besides :class:`CommandError`).
    """
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args))
    except CommandError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except user_errors as exc:
        command = getattr(args, "command", None)
        where = f"{parser.prog} {command}" if command else parser.prog
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
