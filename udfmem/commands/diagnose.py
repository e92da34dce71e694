"""``udfmem diagnose``: worker logs in, one verdict per worker and a fleet line out.

Reading is :mod:`udfmem.commands._logs` (files, directories, ``.gz``, stdin, any prefix, either
format), judging is :mod:`udfmem.analysis.verdict`, rendering is
:mod:`udfmem.reporters.diagnosis`. Every readable input is read and reported; each one
that cannot be read is named on one stderr line (:mod:`udfmem.commands._files`).

Exit codes: without ``--fail-on``, 0, or 2 when an input could not be read (after
printing what could); 2 also for usage errors (one line, no traceback). With ``--fail-on``
the gate decides: 1 when a worker shows one of the named patterns, when an input could
not be read, or when no snapshot was found at all (a wrong path, a wrong ``--udf``: a CI
gate never passes what it could not judge); else 0. ``--allow-unreadable`` keeps naming
unreadable inputs but lets neither the gate nor the exit code depend on them.
"""

from __future__ import annotations

import argparse

from .._text import printable
from ..analysis import patterns
from ..analysis.diagnosis import Diagnosis, Lines, diagnose
from ..reporters import diagnosis as reporter
from . import _files as _inputs
from . import _logs as _logread
from ._args import add_allow_unreadable, add_log_inputs, error


def patterns_list(text: str) -> set[str]:
    """An argparse type: comma-separated pattern names of the vocabulary (a bad one is a usage error)."""
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(patterns.PATTERNS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown pattern {', '.join(unknown) or repr(text)}; choose from {', '.join(patterns.PATTERNS)}"
        )
    return names


def load(paths: list[str], udf: str | None = None, command: str = "diagnose") -> Diagnosis:
    """Read and judge every readable log under ``paths``.

    Each input that cannot be read is named on one stderr line (``udfmem COMMAND: cannot
    read PATH: REASON``) and listed in the result's ``lines.unreadable_inputs``; what a
    directory held that is not a log, and a compressed file cut off, get a note line.
    """
    problems: list[_inputs.LogError] = []
    reader = _logread.read_logs(paths, udf, problems)
    for problem in problems:
        error(command, f"note: {problem}" if problem.note else str(problem))
    for path in reader.cut:
        error(command, f"note: {printable(path)} ends early (compressed file cut off); read up to there")
    unreadable = tuple((p.path, p.reason) for p in problems if not p.note)
    lines = Lines(reader.read, reader.events, reader.skipped, reader.other_schema, reader.unreadable, unreadable)
    return diagnose(reader.series, lines, reader.online, udf, reader.other_udfs)


class DiagnoseCommand:
    """``udfmem diagnose PATH... [--json] [--udf NAME] [--fail-on PATTERN,...] [--allow-unreadable]``."""

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
            help=f"exit 1 when a worker shows one of these patterns ({', '.join(patterns.PATTERNS)}), "
            "when an input cannot be read, or when no snapshot was found",
        )
        add_allow_unreadable(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Print the diagnosis of what could be read; the exit code of the module docstring."""
        result = load(args.paths, args.udf)
        print(reporter.as_json(result) if args.json else reporter.text(result))
        unread = 0 if args.allow_unreadable else len(result.lines.unreadable_inputs)
        if args.fail_on:
            if not result.workers:
                error("diagnose", "--fail-on: no udfmem snapshots to judge")
                return 1
            if unread:
                error("diagnose", f"--fail-on: {unread} input{'s' * (unread != 1)} could not be read")
                return 1
            return 1 if result.matching(args.fail_on) else 0
        return 2 if unread else 0


COMMAND = DiagnoseCommand()
"""The ``diagnose`` subcommand."""
