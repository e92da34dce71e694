"""From per-worker series to what ``udfmem diagnose`` reports: worker verdicts and the fleet.

Plain records in (series keyed by host, pid, worker tag and UDF), frozen results out;
:meth:`Diagnosis.to_dict` is the ``--json`` contract (keys absent when unknown, never
invented).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

from . import patterns as P
from .series import Series
from .verdict import Verdict, judge

VERSION = 1
"""The version of ``udfmem diagnose --json``."""


@dataclasses.dataclass(frozen=True)
class WorkerResult:
    """One series' figures and verdict."""

    host: str
    pid: int
    worker: str
    udf: str
    verdict: Verdict
    calls: int
    first_call: int | None
    last_call: int | None
    rss_first_mb: float | None
    rss_last_mb: float | None
    peak_max_mb: float | None
    trims: int
    series: Series = dataclasses.field(repr=False, compare=False)

    @property
    def oom_call(self) -> int | None:
        """The call at which the worker is projected to reach its limit, where known."""
        ctl = self.verdict.calls_to_limit
        return None if ctl is None or self.last_call is None else self.last_call + ctl

    def to_dict(self) -> dict[str, Any]:
        """The worker's object in ``--json`` (keys absent when unknown)."""
        v = self.verdict
        out: dict[str, Any] = {
            "host": self.host,
            "pid": self.pid,
            "worker": self.worker,
            "udf": self.udf,
            "pattern": v.pattern,
            "also": v.also,
            "calls": self.calls,
            "first_call": self.first_call,
            "last_call": self.last_call,
            "rss_first_mb": self.rss_first_mb,
            "rss_last_mb": self.rss_last_mb,
            "peak_max_mb": self.peak_max_mb,
            "slope_mb_per_100_calls": v.slope_mb_per_100_calls,
            "calls_to_limit": v.calls_to_limit,
            "trims": self.trims,
            "fix": v.fix,
            "evidence": v.evidence,
        }
        return {k: value for k, value in out.items() if value is not None}


def worker_result(key: tuple[str, int, str, str], series: Series) -> WorkerResult:
    """Judge one series and collect its figures."""
    host, pid, worker, udf = key
    pts = series.points
    working = [p for p in pts if not p.final]  # a final snapshot's memory is read after the release
    rss = [p.rss for p in working if p.rss is not None]
    peaks = [p.peak for p in working if p.peak is not None]
    return WorkerResult(
        host,
        pid,
        worker,
        udf,
        judge(series),
        pts[-1].call if pts else 0,
        pts[0].call if pts else None,
        pts[-1].call if pts else None,
        rss[0] if rss else None,
        rss[-1] if rss else None,
        max(peaks) if peaks else None,
        series.trims,
        series,
    )


@dataclasses.dataclass(frozen=True)
class Lines:
    """What the reader saw: lines, and the inputs it could not read at all (path, reason)."""

    read: int
    events: int
    skipped: int
    other_schema: int = 0
    unreadable: int = 0  # udfmem lines that could not be parsed
    unreadable_inputs: tuple[tuple[str, str], ...] = ()  # files and directories that could not be read


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """Every worker's verdict, sorted worst first (growth by projected OOM, then by slope)."""

    workers: tuple[WorkerResult, ...]
    lines: Lines

    def summary(self) -> dict[str, dict[str, int]]:
        """Per UDF, how many workers show each pattern."""
        out: dict[str, Counter[str]] = {}
        for w in self.workers:
            out.setdefault(w.udf, Counter())[w.verdict.pattern] += 1
        return {udf: dict(counts.most_common()) for udf, counts in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object; ``unreadable`` (``[{"path", "reason"}]``) only when an input could not be read."""
        lines: dict[str, int] = {"read": self.lines.read, "events": self.lines.events, "skipped": self.lines.skipped}
        out: dict[str, Any] = {
            "version": VERSION,
            "workers": [w.to_dict() for w in self.workers],
            "summary": self.summary(),
            "lines": lines,
        }
        if self.lines.unreadable_inputs:
            out["unreadable"] = [{"path": path, "reason": reason} for path, reason in self.lines.unreadable_inputs]
        return out

    def matching(self, wanted: set[str]) -> list[WorkerResult]:
        """The workers whose pattern (or ``also``) is in ``wanted``."""
        return [w for w in self.workers if w.verdict.pattern in wanted or w.verdict.also in wanted]


def _severity(w: WorkerResult) -> tuple[int, float, float]:
    """Sort key: growth first, the nearest projected OOM first, then the steepest slope."""
    v = w.verdict
    rank = P.PATTERNS.index(v.pattern)
    order = 0 if v.pattern in P.GROWTH else 1 if v.pattern != P.HEALTHY else 2
    return (
        order * 10 + rank,
        float(v.calls_to_limit if v.calls_to_limit is not None else 1e18),
        -(v.slope_mb_per_100_calls or 0.0),
    )


def diagnose(series: Mapping[tuple[str, int, str, str], Series], lines: Lines) -> Diagnosis:
    """Judge every series."""
    results = [worker_result(key, s) for key, s in series.items() if s.points]
    results.sort(key=lambda w: (*_severity(w), w.udf, w.host, w.pid))
    return Diagnosis(tuple(results), lines)
