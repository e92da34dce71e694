"""The ``udfmem`` command line (also ``python -m udfmem``): one module per subcommand.

Each subcommand is a :class:`Command`; :func:`main` parses the arguments, runs the chosen
command and returns its exit code (argparse itself exits 2 on a usage error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Protocol

from .. import __version__
from . import demo, diagnose, plot, report


class Command(Protocol):
    """One ``udfmem`` subcommand."""

    name: str
    """The subcommand's name on the command line."""
    help: str
    """One line for ``udfmem --help``."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the subcommand's arguments on its own parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Run with the parsed arguments; return the exit code."""


COMMANDS: tuple[Command, ...] = (diagnose.COMMAND, plot.COMMAND, report.COMMAND, demo.COMMAND)
"""Every subcommand, in ``--help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``udfmem`` command."""
    parser = argparse.ArgumentParser(prog="udfmem", description="Memory telemetry for long-lived UDF workers.")
    parser.add_argument("--version", action="version", version=f"udfmem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command_parser = sub.add_parser(command.name, help=command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``udfmem`` command; return its exit code.

    Output piped into a reader that stops early (``| head``) ends the command quietly,
    exit 1, instead of with a traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit: not into the closed pipe
        return 1
    return code
