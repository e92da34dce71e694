"""The online detector: each worker judges its own series as it goes (``udfmem.suspect``).

The binding hands every ``udfmem.snapshot`` event to a :class:`Detector`, which keeps a
bounded series (``MAX_POINTS``, decimated like ``udfmem diagnose``'s) and judges it with
the same rule (:func:`udfmem.analysis.verdict.judge`): the same series gives the same
pattern online and offline. The detector reads the event itself: the series is handed the
event and builds its point (:func:`udfmem.events.point.of_snapshot`) only if it keeps it.
Judging costs ~0.1-0.2 ms, so it is not done at every snapshot: a snapshot costs O(1) — a
few comparisons of its memory block with the one of the last judgement — and a judgement
comes when something moved (a measure rose ``TRIGGER_MIB`` since the last one, a
peak or freed-but-held memory is large) or ``RECHECK_EVERY`` snapshots passed, within
a time budget (``SHARE`` of the wall time). A judgement's cost is its CPU time (a
preempted judgement does not silence the detector) plus the wall time its inspection spent
off the CPU (blocked in a call, or preempted).

It speaks when its verdict starts or changes, when the slope changes by
``SLOPE_CHANGE`` or every ``REPEAT_EVERY`` snapshots while a problem persists, and once
with ``pattern=healthy`` when one ends (a cache that filled and stopped). When a growth
pattern is judged, the UDF object's attributes and its module's containers are measured
(:mod:`udfmem.probes.inspect`: no Python code of yours, 1 ms of wall time) and compared with the
previous inspection (the first one is taken at the second snapshot, after setup):
``growing`` names what grew.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from typing import Any

from ..analysis import patterns as P
from ..analysis.series import Series
from ..analysis.verdict import Verdict, judge
from ..events.point import of_snapshot
from ..events.schema import Memory, Snapshot, Suspect
from ..probes import inspect as _inspect
from ..probes.budget import Budget

MAX_POINTS = 64
"""Points the detector keeps (then every other one, evenly)."""
RECHECK_EVERY = 16
"""Snapshots after which the detector judges again even if nothing moved."""
TRIGGER_MIB = 4.0
"""A measure (RSS, malloc in-use, Arrow) risen this much since the last judgement brings the next one."""
TRIGGER_BLOCKS = 50_000
"""Python object blocks risen this much since the last judgement bring the next one."""
REPEAT_EVERY = 64
"""Snapshots after which a persisting problem is said again."""
SLOPE_CHANGE = 0.5
"""A persisting growth whose slope changed by this share of the last said one is said again."""
SHARE = 0.02
"""Judging (with its inspection) takes at most this share of the wall time."""

Target = Callable[[], tuple[Any, types.ModuleType | None]]
"""Gives the UDF object (or None) and its module, for the attribute inspection."""


class Detector:
    """One UDF's online verdicts in one process. Never raises into the snapshot (the binding guards it)."""

    def __init__(self, target: Target, clock: Callable[[], float] = time.monotonic) -> None:
        """``target`` gives the UDF object and its module; ``clock`` is the wall time the judging budget shares."""
        self.series = Series(max_points=MAX_POINTS)
        self._target = target
        self._blocked = 0.0  # seconds the inspections spent off this thread's CPU
        self._judge = Budget(self._judge_now, share=SHARE, clock=clock, cost_clock=self._cost)
        self._last: Memory | None = None  # the memory block of the last judgement
        self._since_judged = 0
        self.said = P.HEALTHY  # the pattern last said (healthy until a problem is)
        self._said_slope: float | None = None
        self._since_call = 0
        self._since_said = 0
        self._measures: _inspect.Measures | None = None
        self._grown: str | None = None
        self.slope: float | None = None  # MiB/100 calls of the growth last judged (0.0: none); None before

    def trimmed(self, released_mb: float) -> None:
        """A trim happened: later points start a new segment (the binding calls this for each ``udfmem.trim``)."""
        self.series.add_trim(released_mb)

    def _due(self, m: Memory) -> bool:
        """O(1): whether the snapshot of memory block ``m`` should bring a judgement."""
        if self.series.snapshots < P.MIN_POINTS + P.WARMUP_MIN:
            return False  # nothing can be judged yet: keep the time budget for when it can
        last = self._last
        if last is None or self._since_judged >= RECHECK_EVERY:
            return True
        rss, peak = m.rss_mb, m.peak_rss_mb
        private = m.rss_anon_mb if m.rss_anon_mb is not None else rss  # as the Point reads it
        then = last.rss_anon_mb if last.rss_anon_mb is not None else last.rss_mb
        for now, before in ((private, then), (m.heap_in_use_mb, last.heap_in_use_mb)):
            if now is not None and before is not None and now - before >= TRIGGER_MIB:
                return True
        if m.arrow_live_mb - last.arrow_live_mb >= TRIGGER_MIB:
            return True
        blocks, blocks_then = m.py_blocks, last.py_blocks
        if blocks is not None and blocks_then is not None and blocks - blocks_then >= TRIGGER_BLOCKS:
            return True
        if peak is not None and rss is not None and peak - rss >= P.PEAK_MIN_MIB:
            return True
        free = m.heap_free_mb
        return free is not None and free >= P.RETENTION_MIN_MIB and self.said == P.HEALTHY

    def _cost(self) -> float:
        """The judgement budget's clock: this thread's CPU time plus the inspections' time off the CPU."""
        return time.thread_time() + self._blocked

    def _measure(self) -> _inspect.Measures | None:
        """Inspect the UDF object and its module; the wall time beyond CPU time counts in ``_blocked``."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            instance, module = self._target()
            return _inspect.inspect(instance, module) if (instance is not None or module is not None) else None
        finally:
            self._blocked += max(0.0, (time.perf_counter() - wall) - (time.thread_time() - cpu))

    def _judge_now(self) -> tuple[Verdict, str | None]:
        """Judge the series; on a growth pattern, say what grew since the previous inspection."""
        verdict = judge(self.series)
        grown = None
        if verdict.pattern in P.GROWTH:
            measures = self._measure()
            if measures is not None:
                if self._measures is not None:
                    grown = _inspect.growing(self._measures, measures)
                self._measures = measures
        return verdict, grown

    def observe(self, snapshot: Snapshot) -> Suspect | None:
        """Feed one snapshot event; the ``udfmem.suspect`` event to emit, if any."""
        series, memory = self.series, snapshot.memory
        series.add_line(snapshot.call, memory.peak_rss_mb, snapshot, series.segment, of_snapshot)
        self._since_judged += 1
        self._since_said += 1
        if series.snapshots == P.WARMUP_MIN:  # the baseline of the attribute inspection, after setup
            self._measures = self._measure()
        if snapshot.final or not self._due(memory):
            return None
        judged = self._judge()
        if judged is None:  # over the time budget: the next snapshot tries again
            return None
        self._last, self._since_judged = memory, 0
        verdict, grown = judged
        if verdict.pattern != P.INSUFFICIENT_DATA:
            self.slope = verdict.slope_mb_per_100_calls or 0.0
        if grown is not None:
            self._grown = grown
        return self._say(verdict, snapshot.call)

    def _say(self, v: Verdict, call: int) -> Suspect | None:
        """The event for verdict ``v`` at ``call``, if it is news (module docstring)."""
        if v.pattern == P.INSUFFICIENT_DATA:
            return None
        if v.pattern == P.HEALTHY:
            if self.said == P.HEALTHY:
                return None
            self.said, self._said_slope, self._grown = P.HEALTHY, None, None
            self._since_said = 0
            return Suspect(P.HEALTHY, call, evidence=v.evidence, fix=v.fix)
        slope = v.slope_mb_per_100_calls
        if v.pattern != self.said:
            self._since_call = call
        elif not (
            self._since_said >= REPEAT_EVERY
            or (
                slope is not None
                and self._said_slope
                and abs(slope - self._said_slope) > SLOPE_CHANGE * abs(self._said_slope)
            )
        ):
            return None
        self.said, self._said_slope, self._since_said = v.pattern, slope, 0
        growing = self._grown if v.pattern in P.GROWTH else None
        return Suspect(v.pattern, self._since_call, slope, v.calls_to_limit, growing, v.evidence, v.fix)
