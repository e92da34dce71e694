"""The online detector: each worker judges its own series as it goes (``udfmem.suspect``).

The binding hands every ``udfmem.snapshot`` event to a :class:`Detector`, which keeps a
bounded series (``MAX_POINTS``, decimated like ``udfmem diagnose``'s) and judges it with
the same rule (:func:`udfmem.analysis.verdict.judge`): the same series gives the same
pattern online and offline. The detector reads the event itself: the series is handed the
event and builds its point (:func:`udfmem.events.point.of_snapshot`) only if it keeps it.
Judging costs ~0.1-0.3 ms, so it is not done at every snapshot: a snapshot costs O(1) — a
few comparisons of its memory block with the one of the last judgement — and a judgement
comes when something moved (a measure rose ``TRIGGER_MIB`` since the last one, a peak or
freed-but-held memory is large), when a said growth flattens or speeds up (its measures
rose less than ``FLAT_SHARE`` of what its slope predicts since the last judgement, a
cache that filled, or ``SLOPE_CHANGE`` times it; a growth going on as said is no news),
while a change awaits confirmation, or when ``RECHECK_EVERY`` snapshots passed, within a
time budget (``SHARE`` of the wall time). A judgement's cost is its CPU time (a preempted
judgement does not silence the detector; a cyclic collection that runs inside it is the
user's garbage, not counted) plus the wall time its inspection spent off the CPU
(blocked in a call, or preempted).

**Hysteresis.** A pattern is said only once ``HOLD`` judgements in a row gave it, and
what was said is withdrawn (``pattern=healthy``, or another pattern) only the same way:
one judgement at the margin of the rule (a trim's step, a skipped probe, a noisy
sub-window, freed memory just over its floor) never makes an event, so a run makes one
event per change of what is true. A growth where healthy was said is the exception
(``HOLD_GROWTH``, one judgement): the rule's growth test is itself a test of persistence
(growth in each of 4 sub-windows, and over the whole span), and a confirmation would
cost a snapshot that short runs cannot spare (30 snapshots of a fast actor: the rule's
first judgement is at the 10th, a third of the run). The level patterns
(``allocator-retention``, ``peak-too-big``), withdrawals and changes, which a single
point can tip, are held. A judgement that differs from what is said brings the next one
at the next snapshot, so confirming costs ``HOLD - 1`` snapshots. One growth pattern said
as another (``heap-leak`` then ``untracked-growth``) is the same memory growing,
attributed anew: that is said only once the new one also held ``REATTRIBUTE_SPAN``
snapshots.

It speaks when its verdict starts or changes (confirmed), and once with
``pattern=healthy`` when a problem ends (a cache that filled and stopped); a problem that
persists is not said again, whatever its slope does (one event per change of what is
true; the slope, refined at each judgement, goes on in the metrics gauge).
``since_call`` is where the judged growth began (the verdict's onset) for a growth
pattern, else the call of the first judgement that gave the pattern. When a growth
pattern not yet said is judged, the UDF object's attributes and its module's containers
are measured (:mod:`udfmem.probes.inspect`: no Python code of yours, 1 ms of wall time)
and compared with the inspection of the previous growth event (the first one is taken
at the second snapshot, after setup): ``growing`` names what grew since.
"""

from __future__ import annotations

import contextlib
import gc
import threading
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
RECHECK_EVERY = 4
"""Snapshots after which the detector judges again even if nothing moved (a slow leak moves little per snapshot)."""
TRIGGER_MIB = 4.0
"""A measure (RSS, malloc in-use, Arrow) risen this much since the last judgement brings the next one."""
TRIGGER_BLOCKS = 50_000
"""Python object blocks risen this much since the last judgement bring the next one."""
FLAT_SHARE = 0.5
"""A said growth whose measures rose less than this share of what its slope predicts brings a judgement."""
HOLD = 2
"""Judgements in a row that must give a pattern (or its end) before it is said ..."""
REATTRIBUTE_SPAN = 8
"""Snapshots a growth said as another growth must hold (a lagging measure's blip is no new attribution)."""
HOLD_GROWTH = 1
"""... except a growth pattern where healthy was said: its rule already asks growth in each of 4 sub-windows."""
SLOPE_CHANGE = 2.0
"""A said growth whose measures rose this many times what its slope predicts (+ ``TRIGGER_MIB``) is judged."""
SHARE = 0.02
"""Judging (with its inspection) takes at most this share of the wall time."""

Target = Callable[[], tuple[Any, types.ModuleType | None]]
"""Gives the UDF object (or None) and its module, for the attribute inspection."""


class Detector:
    """One UDF's online verdicts in one process. Never raises into the snapshot (the binding guards it)."""

    def __init__(
        self,
        target: Target,
        clock: Callable[[], float] = time.monotonic,
        cost_clock: Callable[[], float] | None = None,
    ) -> None:
        """``target`` gives the UDF object and its module; ``clock`` is the wall time the judging budget shares.

        ``cost_clock`` measures a judgement's cost (default: this thread's CPU time plus the
        inspections' time off the CPU); tests pass one that stands still.
        """
        self.series = Series(max_points=MAX_POINTS)
        self._target = target
        self._blocked = 0.0  # seconds the inspections spent off this thread's CPU
        self._collected = 0.0  # CPU seconds cyclic collections took inside judgements (the user's garbage)
        self._gc_from: float | None = None
        self._judging: int | None = None  # the thread judging now
        cost = self._cost if cost_clock is None else cost_clock
        self._judge = Budget(self._judge_now, share=SHARE, clock=clock, cost_clock=cost)
        self._last: Memory | None = None  # the memory block of the last judgement
        self._last_call = 0  # ... and its call
        self._since_judged = 0
        self.said = P.HEALTHY  # the pattern last said (healthy until a problem is)
        self._said_slope: float | None = None
        self._since_call = 0
        self._pending: str | None = None  # a pattern judged but not yet held HOLD times
        self._pending_n = 0  # judgements in a row that gave it
        self._pending_call = 0  # the call of the first of them
        self._pending_at = 0  # ... and its snapshot count
        self._measures: _inspect.Measures | None = None  # the inspection ``growing`` compares with
        self._measured: _inspect.Measures | None = None  # the latest inspection
        self._grown: str | None = None
        self.slope: float | None = None  # MiB/100 calls of the growth said (0.0: none); None before a judgement

    def trimmed(self, released_mb: float) -> None:
        """A trim happened: later points start a new segment (the binding calls this for each ``udfmem.trim``)."""
        self.series.add_trim(released_mb)

    def _due(self, m: Memory, call: int) -> bool:
        """O(1): whether the snapshot of memory block ``m`` at ``call`` should bring a judgement."""
        if self.series.snapshots < P.MIN_POINTS + P.WARMUP_MIN:
            return False  # nothing can be judged yet: keep the time budget for when it can
        last = self._last
        if last is None or self._pending is not None or self._since_judged >= RECHECK_EVERY:
            return True
        rss, peak = m.rss_mb, None if m.peak_is_lifetime else m.peak_rss_mb  # a lifetime peak is no window's
        private = m.rss_anon_mb if m.rss_anon_mb is not None else rss  # as the Point reads it
        then = last.rss_anon_mb if last.rss_anon_mb is not None else last.rss_mb
        rose = m.arrow_live_mb - last.arrow_live_mb
        for now, before in ((private, then), (m.heap_in_use_mb, last.heap_in_use_mb)):
            if now is not None and before is not None and now - before > rose:
                rose = now - before
        said_slope = self._said_slope
        if self.said in P.GROWTH and said_slope:
            # a growth going on as said is no news (RECHECK_EVERY looks again); one that
            # flattens (a cache that filled) or speeds up is: judge while it is
            expected = said_slope * (call - self._last_call) / 100
            if rose < FLAT_SHARE * expected or rose >= SLOPE_CHANGE * expected + TRIGGER_MIB:
                return True
        else:
            if rose >= TRIGGER_MIB:
                return True
            blocks, blocks_then = m.py_blocks, last.py_blocks
            if blocks is not None and blocks_then is not None and blocks - blocks_then >= TRIGGER_BLOCKS:
                return True
        if peak is not None and rss is not None and peak - rss >= P.PEAK_MIN_MIB:
            return True
        free = m.heap_free_mb
        return free is not None and free >= P.RETENTION_MIN_MIB and self.said == P.HEALTHY

    def _cost(self) -> float:
        """The judgement budget's clock: this thread's CPU time plus the inspections' time off the CPU.

        Less the cyclic collections that ran inside a judgement: the interpreter runs one
        whenever allocations cross its threshold, and a collection of a big heap (40 ms at a
        few hundred thousand objects) is the user's garbage, not the judgement's cost; charged
        to it, it held the next judgement back for two seconds.
        """
        return time.thread_time() + self._blocked - self._collected

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` while judging: time the collections this thread runs."""
        if threading.get_ident() != self._judging:
            return
        if phase == "start":
            self._gc_from = time.thread_time()
        elif self._gc_from is not None:
            self._collected += time.thread_time() - self._gc_from
            self._gc_from = None

    def _measure(self) -> _inspect.Measures | None:
        """Inspect the UDF object and its module; the wall time beyond CPU time counts in ``_blocked``."""
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            instance, module = self._target()
            return _inspect.inspect(instance, module) if (instance is not None or module is not None) else None
        finally:
            self._blocked += max(0.0, (time.perf_counter() - wall) - (time.thread_time() - cpu))

    def _judge_now(self) -> tuple[Verdict, str | None]:
        """Judge the series; on a growth pattern not yet said, what grew since the last growth event's inspection."""
        self._judging, callback = threading.get_ident(), self._gc
        gc.callbacks.append(callback)
        try:
            verdict = judge(self.series)
            grown = None
            if verdict.pattern in P.GROWTH and verdict.pattern != self.said:  # news, maybe: name what grows
                measures = self._measure()
                if measures is not None:
                    if self._measures is not None:
                        grown = _inspect.growing(self._measures, measures)
                    if grown is None:  # nothing to compare (the baseline's inspection ran out of time): from here
                        self._measures = measures
                    else:
                        self._measured = measures  # the next baseline, once an event says this growth
            return verdict, grown
        finally:
            self._judging = None
            with contextlib.suppress(ValueError):  # someone cleared gc.callbacks meanwhile
                gc.callbacks.remove(callback)

    def observe(self, snapshot: Snapshot) -> Suspect | None:
        """Feed one snapshot event; the ``udfmem.suspect`` event to emit, if any."""
        series, memory = self.series, snapshot.memory
        peak = None if memory.peak_is_lifetime else memory.peak_rss_mb  # point.window_peak, inline
        series.add_line(snapshot.call, peak, snapshot, series.segment, of_snapshot)
        self._since_judged += 1
        if series.snapshots == P.WARMUP_MIN:  # the baseline of the attribute inspection, after setup
            self._measures = self._measure()
        if snapshot.final or not self._due(memory, snapshot.call):
            return None
        judged = self._judge()
        if judged is None:  # over the time budget: the next snapshot tries again
            return None
        self._last, self._last_call, self._since_judged = memory, snapshot.call, 0
        verdict, grown = judged
        if grown is not None:
            self._grown = grown
        if verdict.pattern == P.INSUFFICIENT_DATA:  # no word on anything: a change awaiting its hold starts over
            self._pending = None
            return None
        said = self._say(verdict, snapshot.call)
        if verdict.pattern == self.said:  # the slope follows what is said, not a judgement at the margin
            self.slope = verdict.slope_mb_per_100_calls or 0.0
        elif self.slope is None:
            self.slope = 0.0
        return said

    def _held(self, news: str, call: int, need: int = HOLD, span: int = 0) -> bool:
        """Count one more judgement giving ``news`` (a pattern); whether it held.

        Held: ``need`` judgements in a row, the first at least ``span`` snapshots ago.
        """
        if self._pending == news:
            self._pending_n += 1
        else:
            self._pending, self._pending_n, self._pending_call = news, 1, call
            self._pending_at = self.series.snapshots
        if self._pending_n < need or self.series.snapshots - self._pending_at < span:
            return False
        self._pending = None
        return True

    def _say(self, v: Verdict, call: int) -> Suspect | None:
        """The event for verdict ``v`` at ``call``, if it is news held ``HOLD`` judgements (module docstring)."""
        if v.pattern != self.said:
            # one growth said as another (heap-leak, then untracked-growth while RSS's floor lags a
            # filled cache) is the same memory growing: only a lasting new attribution is news
            growth = v.pattern in P.GROWTH
            need = HOLD_GROWTH if growth and self.said == P.HEALTHY else HOLD
            if not self._held(v.pattern, call, need, REATTRIBUTE_SPAN if growth and self.said in P.GROWTH else 0):
                return None
            first = self._pending_call
            if v.pattern == P.HEALTHY:
                self.said, self._said_slope, self._grown = P.HEALTHY, None, None
                return Suspect(P.HEALTHY, first, evidence=v.evidence, fix=v.fix)
            self._since_call = first
        else:
            # what is said holds: a change judged once is forgotten, and a problem that persists
            # is not said again (its slope, an early estimate refined, goes on in the gauge)
            self._pending, self._said_slope = None, v.slope_mb_per_100_calls
            return None
        self.said, self._said_slope = v.pattern, v.slope_mb_per_100_calls
        since = self._since_call
        if v.pattern in P.GROWTH and v.since_call is not None:
            since = v.since_call  # where the judged growth began (the rule's onset)
        growing = None
        if v.pattern in P.GROWTH:
            growing = self._grown
            if self._measured is not None:  # the next event names what grew after this one
                self._measures, self._measured = self._measured, None
        return Suspect(v.pattern, since, v.slope_mb_per_100_calls, v.calls_to_limit, growing, v.evidence, v.fix)
