"""From per-worker series to what ``udfmem diagnose`` reports: worker verdicts and the fleet.

Plain records in (series keyed by host, pid, worker tag and UDF, and what each worker's online
detector said), frozen results out; :meth:`Diagnosis.to_dict` is the ``--json`` contract (keys
absent when unknown, never invented). One ordering, worst first (:func:`severity`), sorts the
workers, the UDFs and the summary.
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
NOT_READ = "not-read"
"""The ``what`` of the ``udfmem.warning`` in which a UDF with no setup event says the fields it cannot read."""
LIFETIME_NOTE = (
    "peaks not judged: they are the process's lifetime peaks (the kernel's peak could not be reset here), "
    "not window peaks"
)
"""A worker's note when its snapshots' peaks were lifetime peaks (``peak_is_lifetime``)."""


@dataclasses.dataclass(frozen=True)
class Online:
    """What a worker's online detector said (its ``udfmem.suspect`` events), as its logs tell.

    ``pattern`` to ``calls_to_limit`` are its last word (the latest event); ``growing`` is
    the latest ``growing`` it said (what grew on the UDF object or in its module, the best
    clue to the fix), from the last word or an earlier event, ``growing_since_call`` that
    event's ``since_call``.
    """

    pattern: str
    since_call: int
    slope_mb_per_100_calls: float | None = None
    calls_to_limit: int | None = None
    growing: str | None = None
    growing_since_call: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The worker's ``online`` object in ``--json``: the last word (keys absent when unknown)."""
        out: dict[str, Any] = {"pattern": self.pattern, "since_call": self.since_call}
        if self.slope_mb_per_100_calls is not None:
            out["slope_mb_per_100_calls"] = self.slope_mb_per_100_calls
        if self.calls_to_limit is not None:
            out["calls_to_limit"] = self.calls_to_limit
        return out


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
    online: Online | None = None  # what its online detector said, when its logs carry udfmem.suspect

    @property
    def not_read(self) -> str | None:
        """The fields the worker said it cannot read, and why (its first setup event's ``not_read``), if it said."""
        return self.series.not_read

    @property
    def notes(self) -> tuple[str, ...]:
        """What the verdict could not use, said once per worker: lifetime peaks, fields the worker could not read."""
        out = []
        if self.series.lifetime_peaks:
            out.append(LIFETIME_NOTE)
        if self.series.not_read is not None:
            out.append(f"fields not read: {self.series.not_read}")
        return tuple(out)

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
            "since_call": v.since_call,
            "calls_to_limit": v.calls_to_limit,
            "trims": self.trims,
            "fix": v.fix,
            "evidence": v.evidence,
            "growing": None if self.online is None else self.online.growing,
            "online": None if self.online is None else self.online.to_dict(),
            "not_read": self.not_read,
            "notes": list(self.notes) or None,
        }
        return {k: value for k, value in out.items() if value is not None}


def worker_result(key: tuple[str, int, str, str], series: Series, online: Online | None = None) -> WorkerResult:
    """Judge one series and collect its figures (and what its online detector said)."""
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
        online,
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
    """Every worker's verdict, sorted worst first (:func:`severity`).

    ``udf`` is the UDF asked for (``--udf``), if any; ``other_udfs`` the UDFs with snapshots
    it left out, sorted by name, each with its workers (counted up to a cap, see
    :data:`udfmem.commands._logs.IDENTITIES`).
    """

    workers: tuple[WorkerResult, ...]
    lines: Lines
    udf: str | None = None
    other_udfs: tuple[tuple[str, int], ...] = ()

    def by_udf(self) -> dict[str, list[WorkerResult]]:
        """The workers per UDF, worst first: the UDFs in the order of their worst worker."""
        out: dict[str, list[WorkerResult]] = {}
        for w in self.workers:  # already worst first
            out.setdefault(w.udf, []).append(w)
        return out

    def summary(self) -> dict[str, dict[str, int]]:
        """Per UDF (worst first, as :meth:`by_udf`), how many workers show each pattern."""
        return {
            udf: dict(Counter(w.verdict.pattern for w in workers).most_common())
            for udf, workers in self.by_udf().items()
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object; ``unreadable`` (``[{"path", "reason"}]``) only when an input could not be read.

        ``other_udfs`` (``{udf: workers}``) only when ``--udf`` left UDFs with snapshots out.
        """
        lines: dict[str, int] = {"read": self.lines.read, "events": self.lines.events, "skipped": self.lines.skipped}
        out: dict[str, Any] = {
            "version": VERSION,
            "workers": [w.to_dict() for w in self.workers],
            "summary": self.summary(),
            "lines": lines,
        }
        if self.other_udfs:
            out["other_udfs"] = dict(self.other_udfs)
        if self.lines.unreadable_inputs:
            out["unreadable"] = [{"path": path, "reason": reason} for path, reason in self.lines.unreadable_inputs]
        return out

    def matching(self, wanted: set[str]) -> list[WorkerResult]:
        """The workers whose pattern (or ``also``) is in ``wanted``."""
        return [w for w in self.workers if w.verdict.pattern in wanted or w.verdict.also in wanted]


def severity(w: WorkerResult) -> tuple[int, float, float, int]:
    """The one worst-first sort key of workers (and, by their worst worker, of UDFs).

    Growth first (heap, Arrow or untracked alike): the fewest calls to the limit first,
    then (no limit known) the steepest slope; then the other problems (retention, peaks)
    by the pattern order, steepest first; then ``insufficient-data``; ``healthy`` last.
    """
    v = w.verdict
    if v.pattern in P.GROWTH:
        order = 0
    elif v.pattern == P.INSUFFICIENT_DATA:
        order = 2
    elif v.pattern == P.HEALTHY:
        order = 3
    else:
        order = 1
    return (
        order,
        float(v.calls_to_limit if v.calls_to_limit is not None else 1e18),
        -(v.slope_mb_per_100_calls or 0.0),
        P.PATTERNS.index(v.pattern) if v.pattern in P.PATTERNS else len(P.PATTERNS),
    )


def diagnose(
    series: Mapping[tuple[str, int, str, str], Series],
    lines: Lines,
    online: Mapping[tuple[str, int, str, str], Online] | None = None,
    udf: str | None = None,
    other_udfs: Mapping[str, int] | None = None,
) -> Diagnosis:
    """Judge every series (with what its online detector said, from ``online``), worst first."""
    said = online or {}
    results = [worker_result(key, s, said.get(key)) for key, s in series.items() if s.points]
    results.sort(key=lambda w: (*severity(w), w.udf, w.host, w.pid, w.worker))
    others = tuple(sorted((other_udfs or {}).items()))
    return Diagnosis(tuple(results), lines, udf, others)
