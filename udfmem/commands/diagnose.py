"""``udfmem diagnose``: worker logs in, one verdict per worker and a fleet line out.

Reading is :mod:`udfmem._logread` (files, directories, ``.gz``, stdin, any prefix, either
format), judging is :mod:`udfmem.analysis.verdict`, rendering is
:mod:`udfmem.reporters.diagnosis`. Exit 0; 1 with ``--fail-on`` when a worker shows one
of the named patterns; 2 for usage errors and unreadable paths (one line, no traceback).
"""

from __future__ import annotations

import argparse
import sys

from .. import _inputs, _logread
from ..analysis import patterns
from ..analysis.diagnosis import Diagnosis, Lines, diagnose
from ..reporters import diagnosis as reporter
from ._args import add_log_inputs, error


def patterns_list(text: str) -> set[str]:
    """An argparse type: comma-separated pattern names of the vocabulary (a bad one is a usage error)."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(patterns.PATTERNS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown pattern {', '.join(unknown) or repr(text)}; choose from {', '.join(patterns.PATTERNS)}"
        )
    return names


def load(paths: list[str], udf: str | None = None) -> Diagnosis:
    """Read and judge the logs under ``paths`` (raises :class:`udfmem._inputs.LogError`)."""
    reader = _logread.read_logs(paths, udf)
    for path in reader.cut:
        print(f"udfmem: note: {path} ends early (compressed file cut off); read up to there", file=sys.stderr)
    lines = Lines(reader.read, reader.events, reader.skipped, reader.other_schema, reader.unreadable)
    return diagnose(reader.series, lines)


class DiagnoseCommand:
    """``udfmem diagnose PATH... [--json] [--udf NAME] [--fail-on PATTERN,...]``."""

    name = "diagnose"
    help = "name the memory pattern of each worker from its logs, with the first fix"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Paths, ``--json``, ``--udf`` and ``--fail-on``."""
        add_log_inputs(parser)
        parser.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
        parser.add_argument(
            "--fail-on",
            type=patterns_list,
            metavar="PATTERN,...",
            help=f"exit 1 when a worker shows one of these patterns ({', '.join(patterns.PATTERNS)})",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Print the diagnosis; exit 1 when ``--fail-on`` matches, 2 on unreadable paths."""
        try:
            result = load(args.paths, args.udf)
        except _inputs.LogError as exc:
            return error("diagnose", str(exc))
        print(reporter.as_json(result) if args.json else reporter.text(result))
        if args.fail_on and result.matching(args.fail_on):
            return 1
        return 0


COMMAND = DiagnoseCommand()
"""The ``diagnose`` subcommand."""
