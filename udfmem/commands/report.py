"""``udfmem report``: summarize the memray files udfmem wrote (``UDFMEM_MEMRAY_DIR``).

This module finds the files, has each read into plain records for
:mod:`udfmem.analysis.profile` in a restartable child (``_profile_reader``), renders
memray's leaks flame graph on request and hands the summaries to a reporter. Leak sizes
are exact because udfmem opens its trackers with Python allocator tracing
(``trace_python_allocators=True``); without it, pymalloc's arenas hide frees.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable

from .._text import printable
from ..analysis import patterns, profile
from ..analysis.profile import ProfileSummary
from ..reporters import json as json_reporter
from ..reporters import markdown, text
from . import _files as _inputs
from . import _profile_reader
from ._args import add_allow_unreadable, at_least, error
from ._profile_reader import closed_properly as closed_properly  # where scripts have found it
from ._profile_reader import read_sidecar as read_sidecar
from ._profile_reader import summarize_here as summarize_here
from ._profile_reader import why


def find_files(paths: Iterable[str]) -> tuple[list[str], list[_inputs.LogError]]:
    """The memray files named by ``paths`` and what could not be read (:func:`udfmem.commands._files.find_logs`).

    Files are kept as given (refused before reading if not a regular file of a real
    filesystem); directories are searched for ``*.bin``: a directory that cannot be listed
    or a broken link is named as unreadable, a FIFO or device (which would hang the
    reader) as skipped.
    """
    return _inputs.find_logs(paths, suffix=".bin")


def summarize_file(path: str, top: int = 5) -> ProfileSummary:
    """Read one memray file written by udfmem in a child process and summarize it.

    Raises :class:`~udfmem.commands._profile_reader.ReadFailed` with a one-line reason
    when it cannot be read: memray's, or that its native reader crashed (signal N) or
    took too long. One child, started at the first call and restarted after a crash,
    reads every file of this process (``_profile_reader``).
    """
    global _reader
    if _reader is None:
        _reader = _profile_reader.ProfileReader()
        atexit.register(_reader.close)
    return _reader.read(path, top)


_reader: _profile_reader.ProfileReader | None = None


def flamegraph(path: str) -> str:
    """Render memray's leaks flame graph next to ``path``; return the HTML's path (raises on failure).

    ``p.bin`` gives ``p.html``. memray writes into a private directory made beside it
    (mode 0700: nobody else can plant a link there), then the file is renamed over the
    name: a link planted at ``p.html`` is replaced, never written through.
    """
    out = path[: -len(".bin")] + ".html" if path.endswith(".bin") else path + ".html"
    private = tempfile.mkdtemp(prefix=".udfmem-flamegraph-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        rendered = os.path.join(private, "flamegraph.html")
        subprocess.run(
            _profile_reader.python_argv("memray", "flamegraph", "--leaks", "-o", rendered, os.path.abspath(path)),
            check=True,
            capture_output=True,
            text=True,
            cwd=private,
        )
        os.replace(rendered, out)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return out


def _error(message: str) -> None:
    error("report", message)


def notes(s: ProfileSummary) -> list[str]:
    """What the one-time split (:mod:`udfmem.analysis.profile`) found in ``s``, or why it could not look."""
    out: list[str] = []
    path = printable(s.path)
    if s.one_time_leaked_mb > 0:
        out.append(
            f"note: {path}: {s.one_time_leaked_mb} MiB left by the first calls only, never later "
            "(one-time: a BLAS buffer, a lazily built table); not per-call retention"
        )
    if s.verdict == patterns.PER_CALL and 0 < s.call_snapshots < profile.MIN_CALL_SNAPSHOTS:
        out.append(
            f"note: {path}: the calls span {s.call_snapshots} memory snapshot{'s' * (s.call_snapshots != 1)} "
            "only: one-time buffers cannot be told from per-call growth (run more calls)"
        )
    return out


class ReportCommand:
    """``udfmem report PATH... [--json] [--top N] [--flamegraph] [--summary-md FILE] [--fail-on-per-call]``."""

    name = "report"
    help = "summarize memray files written with UDFMEM_MEMRAY_DIR"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Paths, output choices and ``--fail-on-per-call``."""
        parser.add_argument("paths", nargs="+", help="memray .bin files or directories holding them")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--top", type=at_least(0), default=5, help="leaking stacks to show per file (default 5)")
        parser.add_argument(
            "--flamegraph", action="store_true", help="render memray's leaks flame graph next to each file"
        )
        parser.add_argument("--summary-md", metavar="FILE", help="also write a Markdown summary (for CI artifacts)")
        parser.add_argument(
            "--fail-on-per-call",
            dest="fail_on",
            action="store_true",
            help="exit 1 when a file shows per-call retention, is incomplete or cannot be read, "
            "or when no profile was found",
        )
        parser.add_argument(
            "--allow-incomplete",
            action="store_true",
            help="with --fail-on-per-call: do not fail on incomplete profiles (a killed worker's)",
        )
        add_allow_unreadable(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Report every readable profile and name every input that cannot be read.

        Without ``--fail-on-per-call``: 0, or 2 when an input could not be read, none was
        found, or an output failed. With it, the gate: 1 on per-call retention, on an input
        that could not be read (unless ``--allow-unreadable``), on an incomplete profile
        (unless ``--allow-incomplete``), or when no profile could be read at all; else 0,
        or 2 on an output failure.
        """
        files, problems = find_files(args.paths)
        for problem in problems:
            _error(f"note: {problem}" if problem.note else str(problem))
        unreadable = sum(not problem.note for problem in problems)
        if not files:
            if not unreadable:
                _error("no memray .bin files found")
            return 1 if args.fail_on else 2  # nothing to judge: a gate never passes it
        summaries: list[ProfileSummary] = []
        failed = False
        for path in files:
            try:
                _inputs.check_file(path)  # a FIFO, device or /proc file would block memray's reader
                summaries.append(summarize_file(path, top=args.top))
            except _inputs.LogError as exc:
                _error(str(exc))
                unreadable += 1
                continue
            except Exception as exc:  # one unreadable file must not hide the others
                _error(f"cannot read {path}: {why(exc)}")
                unreadable += 1
                continue
            if not summaries[-1].complete:
                _error(f"note: {path} is an incomplete profile (its tracker never closed: killed?); no verdict")
            for note in notes(summaries[-1]):
                _error(note)
        if args.flamegraph:
            rendered: list[ProfileSummary] = []
            for s in summaries:
                try:
                    rendered.append(dataclasses.replace(s, flamegraph=flamegraph(s.path)))
                except (subprocess.SubprocessError, OSError) as exc:
                    _error(f"flame graph failed for {s.path}: {why(exc)}")
                    failed = True
                    rendered.append(s)
            summaries = rendered
        if args.summary_md:
            try:
                with open(args.summary_md, "w", encoding="utf-8") as f:
                    f.write(markdown.render(summaries))
            except OSError as exc:
                _error(f"cannot write {args.summary_md}: {why(exc)}")
                failed = True
        print(json_reporter.render(summaries) if args.json else text.render(summaries))
        unread = 0 if args.allow_unreadable else unreadable
        if args.fail_on:  # a CI gate must not pass a profile it could not judge
            if any(s.verdict == patterns.PER_CALL for s in summaries):
                return 1
            if not summaries:
                _error("--fail-on-per-call: no profile could be read")
                return 1
            if unread:
                _error(f"--fail-on-per-call: {unread} input{'s' * (unread != 1)} could not be read")
                return 1
            if not args.allow_incomplete and any(not s.complete for s in summaries):
                return 1
        return 2 if failed or unread else 0


COMMAND = ReportCommand()
"""The ``report`` subcommand."""
