"""The one place for leak thresholds and verdict names.

Three kinds of evidence answer the question, each with its own thresholds, all named
here:

- A memray profile (``udfmem report``) gives exact leaked bytes, attributed to the UDF's
  per-call methods, its setup, or neither (udfmem opens trackers with Python allocator
  tracing, so frees are not hidden by pymalloc). Exact numbers need only a small floor:
  ``MIN_RETAINED_MIB`` in all, of which at least ``PER_CALL_MIN_SHARE`` from the per-call
  methods for :data:`PER_CALL`, or at least ``SETUP_MIN_SHARE`` from setup for
  :data:`SETUP_ONLY`.
- A series of snapshots (``udfmem diagnose``, ``udfmem demo``) is noisy: allocator
  arenas, page granularity and one-off caches move RSS by megabytes. Its rule, with the
  thresholds below (``WARMUP_*`` to ``PEAK_SHARE``), is documented in
  :mod:`udfmem.analysis.verdict`; each pattern's first fix is in :data:`FIXES`.
- A unit check (:func:`udfmem.testing.check_growth`) reads exact live figures after a
  full collection at each sub-window's end: only ``CHECK_NOISE_BYTES`` of noise per
  window. It and the series share one growth rule (:mod:`udfmem.analysis.growth`:
  ``SUB_WINDOWS`` and ``PLATEAU_SHARE``).

Pattern names for the series classifier (``udfmem diagnose``, ``udfmem.suspect``,
``udfmem.testing``) are the contract's vocabulary, collected in :data:`PATTERNS`.
"""

from __future__ import annotations

MIB = 1024 * 1024
"""Bytes in a MiB."""
KIB = 1024
"""Bytes in a KiB (also KiB in a MiB)."""

# The pattern vocabulary (series verdicts; the README's pattern table).
HEALTHY = "healthy"
"""Growth during setup, then flat within noise."""
HEAP_LEAK = "heap-leak"
"""Objects kept alive: malloc in-use or Python object blocks grow with the calls."""
ARROW_LEAK = "arrow-leak"
"""Arrow buffers kept alive: ``arrow_live_mb`` grows with the calls, or zero-copy batches kept from Ray's
object store (its shared pages grow steadily with the calls)."""
UNTRACKED_GROWTH = "untracked-growth"
"""RSS grows but neither malloc, Python blocks nor Arrow explains it (a native allocator, mmap)."""
ALLOCATOR_RETENTION = "allocator-retention"
"""RSS high or rising while in-use stays flat and freed-but-held memory is large."""
PEAK_TOO_BIG = "peak-too-big"
"""One call's transient peak is the danger, not growth."""
INSUFFICIENT_DATA = "insufficient-data"
"""Too few snapshots after setup to judge."""
PATTERNS = (HEALTHY, HEAP_LEAK, ARROW_LEAK, UNTRACKED_GROWTH, ALLOCATOR_RETENTION, PEAK_TOO_BIG, INSUFFICIENT_DATA)
"""Every series pattern, in the contract's order."""
GROWTH = (HEAP_LEAK, ARROW_LEAK, UNTRACKED_GROWTH)
"""The patterns of memory that grows with the calls (they get a slope and calls to the limit)."""
FIXES = {
    HEALTHY: "nothing to fix; keep trim='auto' (the default) so freed memory goes back to the OS",
    HEAP_LEAK: "find what the UDF keeps across calls (a cache on self, a module-level list, closures "
    "over batches) and bound or clear it; UDFMEM_MEMRAY_DIR + `udfmem report` names the allocation site",
    ARROW_LEAK: "stop keeping Arrow arrays/tables/batches across calls (on self, in caches or closures); "
    "copy out only the values you need",
    UNTRACKED_GROWTH: "memory grows outside malloc, Python objects and Arrow (a native library's own "
    "allocator, mmap): profile with UDFMEM_MEMRAY_DIR and UDFMEM_MEMRAY_NATIVE=1, check that library's caches",
    ALLOCATOR_RETENTION: "freed memory is held by the allocator: keep trim='auto' (or trim=N) on, and "
    "under glibc (allocator=glibc) UDFMEM_ARENA_MAX=2 for a UDF that allocates from many threads",
    PEAK_TOO_BIG: "one call's transient is the danger: use smaller batches (batch_size=...) or process the "
    "batch in chunks inside the call",
    INSUFFICIENT_DATA: "run more calls, or lower every= (UDFMEM_EVERY) so there are enough snapshots after setup; "
    "where the evidence names a missing measure, keep the lines that carry it (rss_anon_mb, heap_*)",
}
"""The first fix to try, per pattern, in one line."""

# The series rule (udfmem.analysis.verdict documents how these combine).
WARMUP_MIN = 2
"""At least this many snapshots after setup are dropped as warm-up."""
WARMUP_SHARE = 0.1
"""At least this share of the snapshots is dropped as warm-up."""
MIN_POINTS = 8
"""Snapshots needed after the warm-up to judge a series."""
FLOOR_CHUNKS = 16
"""RSS is judged by its floor: the minimum of each of this many runs of snapshots."""
SUB_WINDOWS = 4
"""A measure grows only if it grew in every one of this many sub-windows (CPython's refleak rule)."""
PLATEAU_SHARE = 0.2
"""The last sub-window must still rise at this share of the overall slope (else a plateau: a filled cache)."""
WINDOW_MIN_SHARE = 0.1
"""In a series, each sub-window must rise at more than this share of the overall slope, not merely above 0.

Noise makes a flat sub-window's slope positive half the time; a leak's windows rise at
about its slope. (A unit check reads exact figures: its noise floor is bytes.)"""
CHECK_NOISE_BYTES = 16 * 1024
"""A unit check's sub-window grows only by more than this (page and arena granularity), whatever its sign."""
MIN_GROWTH_MIB = 16
"""RSS (and malloc's free figure) grows only if it grew at least this much over the judged calls ...

Page and arena granularity, a lazily filled pool or one more batch in flight move RSS by
a few MiB at any rate of calls; 16 MiB is above what the healthy runs of the scenario
corpus moved (8 MiB at most). There is no per-call floor: a row-wise UDF called 20,000
times keeping 2 KiB a call grows 40 MiB, and what grows is the worker, not a call.
"""
MIN_COUNTED_GROWTH_MIB = 4
"""What is counted in bytes, not pages (malloc in-use, Arrow live) grows only by this much at least ...

Those counts have no page or arena granularity: their noise is the batches in flight
(which the sub-window rule handles; up to 3.2 MiB across snapshots in the corpus's
4-thread healthy actor), so their floor only keeps that and a few MiB of caches out.
"""
COUNTED_GROWTH_SHARE = 0.01
"""... and by this share of the worker's private RSS where the judged calls began.

The corpus's 25 healthy workers moved these counts by 1.3% of private RSS at most (0.9
MiB); a leak of 16 KiB per call grows them 2% over 400 calls (and 40% over 10,000).
"""
GROWTH_SHARE = 0.05
"""... and at least this share of the worker's private RSS where the judged calls began (RSS, malloc's free figure).

Relative to the worker: a 10 GiB worker's noise is bigger than a 200 MiB one's, and
5% of a worker over a run is what a user would call growth (20 such runs double it).
"""
MIN_BLOCKS_GROWTH = 100_000
"""Python object blocks grow only if they grew by at least this many over the judged calls ..."""
BLOCKS_SHARE = GROWTH_SHARE
"""... and by at least this share of the live blocks where the judged calls began."""
MIN_WINDOW_READINGS = 1
"""A measure is judged by the sub-window rule only with this many readings in each sub-window.

Probes over their time budget are skipped (``heap_*``, ``py_blocks``), so a measure may
be missing from most snapshots. With fewer readings it is *unknown* (never "did not
grow"): its known readings can still agree with RSS (``EXPLAINED_SHARE``). One is
enough: a sub-window with one reading takes its slope from the previous one's last, and
malloc's and Arrow's counts are exact (a leak under trims grows malloc in-use in a line
while RSS's floor jumps twice: 16 readings in 60 must still say so). A reading that
disagrees with RSS is then caught by the agreement test, not read as "did not grow".
"""
AGREE_SPAN_SHARE = 0.5
"""An unknown measure's readings, to say it did *not* grow with RSS, must span this share of the judged calls."""
STEP_NOISE_SHARE = 0.1
"""The step test: a floor rise (or fall) counts once it exceeds this share of the floor's whole rise ..."""
STEP_WINDOWS = 3
"""... the floor must rise in at least this many of the ``SUB_WINDOWS`` sub-windows, never fall back ..."""
STEP_TAIL_GAPS = 2.0
"""... it must have risen over the last this-many typical gaps between its rises (else a plateau) ..."""
STEP_HALF_SHARE = 0.25
"""... and the floor must rise in the second half of the calls at least this share of its rise in the first.

A staircase of regular steps rises alike in both halves (one step apart at most; pinned
blocks that come at random still put one in four of their rises in the later half); a
floor that rises by bursts early and little later is a cache or an arena filling.
"""
ONSET_MIN_BEFORE = 3
"""A change point (a late onset) needs at least this many floor points of flat memory before it ..."""
ONSET_FLAT_SHARE = 0.25
"""... flat meaning a slope of at most this share of the slope after it."""
STEADY_SHARE = 0.5
"""Shared pages grew steadily (kept zero-copy batches: :data:`PINNED_MIN_POINTS`) if each sub-window rose at
this share of the pace.

A healthy reader maps the store's pages as it first touches them, in bursts that slow
down as the store reuses its memory (the corpus: +12 MiB, then +5, 0, 2); zero-copy
batches kept on ``self`` pin a batch's pages at every call (+25 MiB in each sub-window).
"""
PINNED_MIN_POINTS = 2 * MIN_POINTS
"""Steady shared pages are judged (``arrow-leak``: zero-copy batches kept) only over this many snapshots
after the warm-up.

Zero-copy batches kept from Ray's object store pin its shared pages (Arrow's pool never
counts them, private RSS stays flat). A healthy reader maps the store's pages at the same
pace while it first fills them (the corpus: its first ~100 calls, ~12 snapshots); over
twice the snapshots the series needs, its bursts have slowed down and fail the steady
test, while kept batches rise in every sub-window.
"""
STEADY_RISES_SHARE = 0.75
"""... and rise from at least this share of the snapshots to the next (a reader touches the store's pages in
bursts between flat runs, even while it still maps new ones; a batch pinned at each call rises at each)."""
EXPLAINED_SHARE = 0.5
"""RSS growth is explained by a measure (malloc's free figure: retention; malloc in-use read
too seldom for the sub-window rule: a heap leak) growing at least this share as fast."""
RETENTION_MIN_MIB = 64
"""Freed-but-held memory from which a flat series may be ``allocator-retention`` (the small absolute floor) ...

The same floor as ``trim="auto"``'s threshold (:mod:`udfmem.policies.trim`): below it an
automatic trim would not run, so the fix would change nothing.
"""
RETENTION_TRIMMED_FACTOR = 2
"""Where the worker trims (``udfmem.trim`` lines), the floor is this many times ``RETENTION_MIN_MIB`` ...

``trim="auto"`` lets freed-but-held memory rise to its threshold (64 MiB, or 10% of RSS)
before it trims, and a snapshot comes before its trim: retention at the threshold is the
policy working. A churning 8-thread UDF under ``trim="auto"`` holds 65 MiB at every
snapshot on a 99 MiB worker; only retention the trims cannot bring under twice the
threshold is the allocator's problem.
"""
RETENTION_SHARE = 0.25
"""... when it is also at least this share of private RSS ..."""
RETENTION_LIMIT_SHARE = 0.1
"""... or this share of a known memory limit ..."""
KEPT_DOWN_SHARE = 0.5
"""... unless the last sub-window's trims release at least this share of it (trims keep it down)."""
PEAK_LIMIT_SHARE = 0.9
"""A window peak above this share of a known memory limit is ``peak-too-big``."""
PEAK_MIN_MIB = 1024
"""Without a limit: a window peak this far above the usual RSS ..."""
PEAK_SHARE = 1.0
"""... and at least this multiple of the usual RSS above it is ``peak-too-big``."""
CGROUP_MIN_READINGS = MIN_POINTS
"""``calls_to_limit`` projects from the cgroup's growth (the headroom's decline) only over this many readings."""
CGROUP_FASTER_FACTOR = 1.1
"""... and only when the cgroup's working set grows this many times this worker's growth or more (a worker
alone under its limit sees the two paces differ by noise: its own stays the projection's)."""
CGROUP_SHARED_FACTOR = 1.5
"""The cgroup's working set growing this many times this worker's growth or more is said to be other
workers' too (N leaking workers under one limit: the kill comes ~N times sooner)."""

# The verdicts of a memray profile, as ``udfmem report`` prints them (users grep these).
PER_CALL = "per-call retention"
"""Memory kept across calls, allocated under the UDF's per-call methods: the stateful-UDF leak."""
INCOMPLETE = "incomplete profile"
"""The tracker never closed (the worker was killed, or still runs): what was still allocated
includes the call in progress, so no retention verdict is given."""
SETUP_ONLY = "setup only"
"""What is left was allocated by setup (the model and friends)."""
NOTHING = "nothing retained"
"""Less than ``MIN_RETAINED_MIB`` left in all."""
ELSEWHERE = "retained outside the UDF's methods"
"""Left, but mostly neither from the per-call methods nor from setup."""
PROFILE_VERDICTS = (PER_CALL, INCOMPLETE, SETUP_ONLY, NOTHING, ELSEWHERE)
"""Every profile verdict."""

MIN_RETAINED_MIB = 1
"""A profile retaining less than this in all retains nothing; per-call bytes must reach it too."""
PER_CALL_MIN_SHARE = 0.25
"""Share of the retained bytes from the per-call methods that makes a per-call verdict."""
SETUP_MIN_SHARE = 0.5
"""Share of the retained bytes from setup that makes a setup-only verdict."""


def profile_verdict(per_call: int, setup: int, leaked: int) -> str:
    """The verdict of a memray profile from its leaked bytes by origin (see the module docstring)."""
    floor = MIN_RETAINED_MIB * MIB
    if leaked < floor:
        return NOTHING
    if per_call >= floor and per_call >= PER_CALL_MIN_SHARE * leaked:
        return PER_CALL
    if setup >= SETUP_MIN_SHARE * leaked:
        return SETUP_ONLY
    return ELSEWHERE
