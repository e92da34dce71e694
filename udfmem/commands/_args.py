"""Argument types and the one-line error shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .._text import printable


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low`` (a bad one is a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def error(command: str, message: str) -> int:
    """Say ``message`` on one stderr line, prefixed ``udfmem COMMAND:``, control characters escaped; exit code 2."""
    print(f"udfmem {command}: {printable(message)}", file=sys.stderr)
    return 2


def add_log_inputs(parser: argparse.ArgumentParser) -> None:
    """The log paths and ``--udf`` of ``diagnose`` and ``plot``."""
    parser.add_argument(
        "paths", nargs="+", help="log files, directories (searched recursively), .gz files, or - for stdin"
    )
    parser.add_argument("--udf", metavar="NAME", help="only this UDF's workers")


def add_allow_unreadable(parser: argparse.ArgumentParser) -> None:
    """``--allow-unreadable`` of ``diagnose`` and ``report``: inputs that cannot be read are named, not failed on."""
    parser.add_argument(
        "--allow-unreadable",
        action="store_true",
        help="inputs that cannot be read are still named on stderr but change neither the exit code "
        "nor the gate's verdict (a gate with nothing at all to judge still fails)",
    )
