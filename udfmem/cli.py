"""The ``udfmem`` command line (also ``python -m udfmem``): one function per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from . import _demo

    return _demo.run(sys.stdout, calls=args.calls)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``udfmem`` command."""
    parser = argparse.ArgumentParser(prog="udfmem", description="Memory telemetry for long-lived UDF workers.")
    parser.add_argument("--version", action="version", version=f"udfmem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a healthy and a leaky UDF in this process and show their snapshots")
    demo.add_argument("--calls", type=int, default=320, help="calls per UDF (default 320)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``udfmem`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
