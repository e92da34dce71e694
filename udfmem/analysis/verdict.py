"""One worker's series in, one named pattern out: the rule ``udfmem diagnose`` applies.

The rule (thresholds in :mod:`udfmem.analysis.patterns`):

1. **Warm-up.** The first ``WARMUP_SHARE`` of the snapshots (at least ``WARMUP_MIN``) are
   dropped for trends: caches, pools and lazy imports fill there. Peaks are not dropped
   (step 5). A ``final=true`` snapshot counts calls but its memory is not judged: at a UDF
   object's release it is read after the object let go of what it held. Fewer than
   ``MIN_POINTS`` left is ``insufficient-data`` (``peak-too-big`` when a peak is).
2. **Readings.** Each measure — private RSS, malloc in-use (mmapped chunks included), Arrow
   live, Python object blocks, malloc's freed-but-held — is judged on the snapshots that
   carry it: a probe skipped for its time budget is never evidence. A measure with fewer
   than ``MIN_WINDOW_READINGS`` readings in some sub-window is *unknown*, not "did not
   grow". RSS and malloc's free figure are first turned into floor series (the minimum
   of each of ``FLOOR_CHUNKS`` runs of snapshots): retention that regrows between trims
   is a sawtooth, whose floor is flat; the step test and the change point read every
   measure's floor.
3. **Growth** of a measure, over the judged calls or after its onset:

   - *how much*: its floor rose, and its slope projects over the judged calls, at least
     ``MIN_GROWTH_MIB`` and ``GROWTH_SHARE`` of the worker's private RSS where the judged
     calls began for RSS and malloc's free figure (pages, arenas);
     ``MIN_COUNTED_GROWTH_MIB`` and ``COUNTED_GROWTH_SHARE`` for what is counted in bytes
     (malloc in-use, Arrow live); ``MIN_BLOCKS_GROWTH`` and ``BLOCKS_SHARE`` of the live
     blocks for blocks. Relative to the worker, with no per-call floor: a row-wise UDF's
     2 KiB per call is a leak once it adds up to a share of the worker.
   - *a line*: a robust slope (Theil-Sen at half the span,
     :func:`~udfmem.analysis.series.lag_slope`: one spike cannot make a trend; a trim's
     step down sits in the floor, not in what is live) that rose in every one of
     ``SUB_WINDOWS`` sub-windows at ``WINDOW_MIN_SHARE`` of it at least (CPython's
     refleak rule: a leak grows in each window, noise does not) with a last sub-window
     still rising at ``PLATEAU_SHARE`` of the overall slope (the plateau rule: a cache
     that filled and stopped is not a leak);
   - *or steps*: a staircase (one step per pinned block) fails "every sub-window" by
     construction, so the floor also grows when it rose (by more than
     ``STEP_NOISE_SHARE`` of its whole rise) in at least ``STEP_WINDOWS`` sub-windows,
     never fell back by more than that, rose (by as much) over the last ``STEP_TAIL_GAPS``
     typical gaps between its rises and rose in the second half of the calls at least
     ``STEP_HALF_SHARE`` as much as in the first (the plateau rules for steps).
   - *Onset.* A leak that starts late is diluted by the flat calls before it: a change
     point is searched on the measure's floor (a hinge: flat, then rising, fitted by
     least squares at each floor point with at least ``ONSET_MIN_BEFORE`` before it);
     when the floor before it is flat (a slope at most ``ONSET_FLAT_SHARE`` of the slope
     after) and the calls after it hold ``MIN_POINTS`` snapshots that grow by the rule
     above, the measure grows *since* that call, with the slope after it
     (``Verdict.since_call``).
4. **Pattern**, the first that holds: Arrow live grows (and explains more than malloc) →
   ``arrow-leak``; malloc in-use or Python blocks grow, or RSS grows while malloc in-use,
   too seldom read for the sub-window rule, rose at ``EXPLAINED_SHARE`` of its slope (or
   the blocks rose at their thresholds) → ``heap-leak``; RSS grows with malloc's
   freed-but-held (its floor too) growing at ``EXPLAINED_SHARE`` of its slope →
   ``allocator-retention`` (``healthy`` when trims keep it down, below); RSS grows and
   malloc in-use is known not to → ``untracked-growth``. RSS growth alone is never a leak
   when it cannot be told from what is not the worker's: when malloc in-use is unknown
   (its readings span less than ``AGREE_SPAN_SHARE`` of the judged calls), or when the
   lines carry no private/shared split (``rss_anon_mb`` absent: older lines, platforms
   without statm: RSS then counts Ray's object store and mapped files, which a healthy
   worker maps as it reads), the verdict is ``insufficient-data`` with what is missing
   in the evidence — not ``healthy`` (memory did grow), not a growth pattern (nothing
   says whose growth it is). Then freed-but-held memory (malloc's free figure, corrected
   for trims by the memory not malloc's nor Arrow's) of at least ``RETENTION_MIN_MIB``
   (``RETENTION_TRIMMED_FACTOR`` times it where the worker trims) and ``RETENTION_SHARE``
   of private RSS (or ``RETENTION_LIMIT_SHARE`` of a known limit)
   → ``allocator-retention``, unless the trims of the last sub-window each release
   ``KEPT_DOWN_SHARE`` of it (the snapshot comes before its trim: trims that keep
   retention down mean healthy); then a peak → ``peak-too-big``; else ``healthy``. A
   second pattern that also holds is ``also`` (a heap leak with spikes). Shared pages
   (mapped files, Ray's object store) are judged only when they grow "steadily with the
   calls" (each sub-window's floor rose at ``STEADY_SHARE`` of the pace, and from
   ``STEADY_RISES_SHARE`` of the snapshots to the next) over ``PINNED_MIN_POINTS``
   snapshots: zero-copy batches kept from the object store → ``arrow-leak`` (after every
   private-memory pattern; a healthy reader maps the store's pages in bursts that slow
   down, and its first fill is as steady only over fewer snapshots); a file mapped as it
   is read grows them so too, which the evidence says. Other shared growth is named.
   Arrow batches that Arrow's pool allocated (a concatenation, a conversion) show as
   Arrow live, which is judged.
5. **Peaks** are judged on every snapshot, the warm-up's included (a calibration's
   transient would OOM a smaller worker whenever it happened): a window peak above
   ``PEAK_LIMIT_SHARE`` of a known limit, or ``PEAK_MIN_MIB`` and ``PEAK_SHARE`` above
   the usual RSS (the median after the warm-up).
6. **Severity.** With a known limit, ``calls_to_limit`` is the headroom at the last
   snapshot over the faster of two paces: the growth's slope, and the cgroup's — the
   decline per call of this worker of ``headroom_mb``, which is the limit minus the whole
   cgroup's working set (a robust slope over at least ``CGROUP_MIN_READINGS`` readings,
   within this worker's trims, after the growth's onset), the cgroup's only from
   ``CGROUP_FASTER_FACTOR`` times the growth's slope (below, the two differ by noise).
   The limit's source (a cgroup, Ray's monitor, the node) decides whose memory that is:
   the pod's workers, or everything on the node. With N leaking workers under one limit
   the kill comes ~N times sooner than one worker's slope says; the evidence says when
   the projection is from all the memory under the limit, and that other processes share
   the limit from ``CGROUP_SHARED_FACTOR`` times this worker's growth. ``slope_mb_per_100_calls`` stays this worker's.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

from . import patterns as P
from .series import Point, Series, lag_slope
from .trend import (
    FLOORED,
    GREW,
    MEASURES,
    UNKNOWN,
    Trend,
    agrees,
    change,
    floor_series,
    measure_trend,
    shared_pages,
    steady,
    sub_windows,
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The judgement of one series. Sizes MiB; slope MiB per 100 calls; None where unknown."""

    pattern: str
    fix: str
    evidence: str
    also: str | None = None
    slope_mb_per_100_calls: float | None = None
    calls_to_limit: int | None = None
    grew: tuple[str, ...] = ()  # the measures that grew: rss, heap, arrow, blocks, free
    since_call: int | None = None
    """The call where the judged growth began (the onset, else the first judged call); None unless growth."""


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _kept_down(series: Series, points: Sequence[Point], held: float) -> bool:
    """Whether trims in the last sub-window release at least ``KEPT_DOWN_SHARE`` of what is held.

    Snapshots come before a trim (``trim="auto"`` decides at the snapshot), so a worker
    whose trims keep retention down still shows it held at its snapshots.
    """
    first = sub_windows(points, P.SUB_WINDOWS)[-1][0].call
    released = [mb for call, mb in series.recent_trims if call >= first]
    return bool(released) and statistics.median(released) >= P.KEPT_DOWN_SHARE * held


def _retained(series: Series, points: Sequence[Point]) -> float | None:
    """Freed-but-held MiB over the last sub-window: malloc's free figure, capped by what is not live.

    glibc's free figure stays after a trim returned the pages, so it is capped by private
    RSS minus malloc in-use minus Arrow minus the same after setup (code, libraries).
    """
    last = sub_windows(points, P.SUB_WINDOWS)[-1]
    base = series.setup_gap if series.setup_gap is not None else 0.0
    held: list[float | None] = []
    for p in last:
        if p.free is None or p.private is None or p.heap is None:
            held.append(None)
        else:
            held.append(min(p.free, max(0.0, p.private - p.heap - (p.arrow or 0.0) - base)))
    return _median(held)


def _peak_too_big(points: Sequence[Point], usual: Sequence[Point]) -> tuple[bool, str]:
    """Whether some window's peak among ``points`` (the warm-up's too) is the danger; the evidence.

    The usual RSS is the median of ``usual`` (the snapshots after the warm-up).
    """
    worst: Point | None = None
    for p in points:
        if p.peak is not None and p.rss is not None and (worst is None or p.peak > worst.peak):  # type: ignore[operator]
            worst = p
    if worst is None or worst.peak is None or worst.rss is None:
        return False, ""
    base = _median([p.rss for p in usual]) or worst.rss
    lift = worst.peak - base
    text = f"peak {worst.peak:,.0f} MiB at call {worst.call:,} vs RSS ~{base:,.0f} MiB"
    if worst.limit:
        text += f", limit {worst.limit:,.0f} MiB"
        if worst.peak >= P.PEAK_LIMIT_SHARE * worst.limit:
            return True, text
    return lift >= P.PEAK_MIN_MIB and lift >= P.PEAK_SHARE * base, text


def cgroup_growth(points: Sequence[Point]) -> float | None:
    """The cgroup's working set's growth in MiB per call of this worker: the decline of ``headroom_mb``.

    ``headroom_mb`` is the limit minus the whole cgroup's working set, so its fall per call
    of this worker is every process's growth under the limit, seen at this worker's pace.
    A robust slope (:func:`~udfmem.analysis.series.lag_slope`) within this worker's trims;
    None with fewer than ``CGROUP_MIN_READINGS`` readings.
    """
    if sum(p.headroom is not None for p in points) < P.CGROUP_MIN_READINGS:
        return None
    slope = lag_slope(points, lambda p: p.headroom)
    return None if slope is None else -slope


def _pace(points: Sequence[Point], own: float) -> tuple[float, str]:
    """The pace to project ``calls_to_limit`` with (MiB per call): the faster of ``own`` and the cgroup's.

    Also the evidence's words when the cgroup's is the faster ("" when it is ``own``).
    ``points`` are the calls the growth is judged on (after its onset when it has one).
    """
    cgroup = cgroup_growth(points)
    if cgroup is None or cgroup <= 0 or cgroup < P.CGROUP_FASTER_FACTOR * own:
        return own, ""
    text = f"calls to the limit projected from all the memory under it, {cgroup * 100:+,.1f} MiB/100 calls"
    if own <= 0:
        return cgroup, text + " (this worker's own growth has no slope)"
    times = cgroup / own
    if times >= P.CGROUP_SHARED_FACTOR:
        return cgroup, f"{text}: it grows {times:,.1f}x this worker's, other processes share the limit"
    return cgroup, f"{text} ({times:,.1f}x this worker's)"


def _split_known(points: Sequence[Point]) -> bool:
    """Whether the lines carry private RSS apart from RSS (``rss_anon_mb``): private is RSS where they did not."""
    return any(p.private is not None and p.rss is not None and p.private != p.rss for p in points)


def judge(series: Series) -> Verdict:
    """The pattern of ``series`` by the rule in this module's docstring."""
    # a final snapshot at a UDF object's release reads memory after the object let go of it
    pts = [p for p in series.points if not p.final]
    skip = max(P.WARMUP_MIN, int(len(pts) * P.WARMUP_SHARE))
    points = pts[skip:]
    if len(points) < P.MIN_POINTS or points[-1].call - points[0].call < P.MIN_POINTS:
        peak, peak_text = _peak_too_big(pts, points or pts)
        if peak:
            return Verdict(P.PEAK_TOO_BIG, P.FIXES[P.PEAK_TOO_BIG], peak_text)
        return Verdict(
            P.INSUFFICIENT_DATA,
            P.FIXES[P.INSUFFICIENT_DATA],
            f"{len(points)} snapshots after the warm-up; {P.MIN_POINTS} needed",
        )
    base_private = next((v for p in floor_series(points, "rss") if (v := p.private) is not None), 0.0)
    share = P.GROWTH_SHARE * base_private
    base_blocks = next((p.blocks for p in points if p.blocks is not None), 0)
    trends: dict[str, Trend] = {}
    for name in MEASURES:
        if name == "blocks":
            trends[name] = measure_trend(points, name, max(P.MIN_BLOCKS_GROWTH, P.BLOCKS_SHARE * base_blocks))
        else:
            if name in FLOORED:
                trends[name] = measure_trend(points, name, max(P.MIN_GROWTH_MIB, share))
            else:  # counted in bytes: no page or arena noise
                counted = max(P.MIN_COUNTED_GROWTH_MIB, P.COUNTED_GROWTH_SHARE * base_private)
                trends[name] = measure_trend(points, name, counted)
    grows = {name: t.state == GREW for name, t in trends.items()}
    slopes = {name: t.slope for name, t in trends.items()}
    rss = trends["rss"]
    rss_slope = rss.slope
    heap_s, arrow_s = slopes["heap"] or 0.0, slopes["arrow"] or 0.0
    peak, peak_text = _peak_too_big(pts, points)
    retained = _retained(series, points)
    rss_last = points[-1].private
    limit = points[-1].limit
    kept_down = retained is not None and _kept_down(series, points, retained)
    retention = (
        retained is not None
        and retained >= P.RETENTION_MIN_MIB * (P.RETENTION_TRIMMED_FACTOR if series.trims else 1)
        and (
            rss_last is None
            or retained >= P.RETENTION_SHARE * rss_last
            or (limit is not None and retained >= P.RETENTION_LIMIT_SHARE * limit)
        )
        and not kept_down
    )
    # RSS growth that malloc's growing free figure explains is retention growing, not a leak
    held_growth = grows["rss"] and agrees(points, "free", rss) is True
    # malloc in-use short of its own rule (read too seldom, or just under the floor): its readings
    # rose with RSS (a heap leak), or not (untracked growth), or cannot say
    heap = trends["heap"]
    heap_agrees = agrees(points, "heap", rss) if grows["rss"] and heap.state != GREW else None
    # Arrow live short of its own rule (exact steps fail "every sub-window" where RSS's noise passes it)
    arrow_agrees = grows["rss"] and trends["arrow"].state != GREW and agrees(points, "arrow", rss) is True
    arrow_d, heap_d = change(points, MEASURES["arrow"]) or 0.0, change(points, MEASURES["heap"]) or 0.0
    # RSS grows by the whole rule and Python blocks rose with it: Python objects, even where
    # py_blocks was read too seldom (its time budget) for the sub-window rule of its own
    blocks_t = trends["blocks"]
    known = [p for p in points if p.blocks is not None and p.call >= (rss.since or 0)]
    blocks_min = max(P.MIN_BLOCKS_GROWTH, P.BLOCKS_SHARE * base_blocks)
    blocks_rose = (
        blocks_t.state == UNKNOWN
        and len(known) >= 2
        and (blocks_t.slope or 0.0) > 0
        and (known[-1].blocks or 0) - (known[0].blocks or 0) >= blocks_min
    )
    split = _split_known(points)
    # shared pages that grow steadily with the calls (zero-copy batches kept from Ray's object store
    # grow them so, and so does a file mapped as it is read): judged over PINNED_MIN_POINTS snapshots
    pinned = split and steady(points, shared_pages, max(P.MIN_GROWTH_MIB, share))
    kept_pages = pinned and len(points) >= P.PINNED_MIN_POINTS  # a reader's first fill is as steady: more points
    missing = ""
    since: int | None = None
    if grows["arrow"] and (not grows["heap"] or arrow_s >= heap_s):
        pattern, since = P.ARROW_LEAK, trends["arrow"].since
    elif arrow_agrees and not grows["heap"] and (not heap_agrees or arrow_d >= heap_d):
        pattern, since = P.ARROW_LEAK, rss.since
    elif grows["heap"]:
        pattern, since = P.HEAP_LEAK, heap.since
    elif grows["blocks"] and not grows["arrow"]:
        pattern, since = P.HEAP_LEAK, blocks_t.since
    elif grows["rss"] and (blocks_rose or heap_agrees):
        pattern, since = P.HEAP_LEAK, rss.since
    elif held_growth:  # retention growing: a problem once it is retention (not kept down, not under its floor)
        pattern = P.ALLOCATOR_RETENTION if retention else P.HEALTHY
    elif grows["rss"] and not split:
        pattern = P.INSUFFICIENT_DATA
        missing = (
            "insufficient evidence: RSS grew, but the lines carry no private/shared split (rss_anon_mb), "
            "so it may be shared pages (Ray's object store, mapped files), and no second measure "
            "(malloc in-use, Python blocks, Arrow) grew with it"
        )
    elif grows["rss"] and heap_agrees is None and heap.state == UNKNOWN:
        pattern = P.INSUFFICIENT_DATA
        missing = (
            f"insufficient evidence: RSS grew, but malloc in-use is unknown ({heap.readings} of {len(points)} "
            "snapshots after the warm-up carry heap_*): a heap leak or untracked growth cannot be told apart"
        )
    elif grows["rss"]:
        pattern, since = P.UNTRACKED_GROWTH, rss.since
    elif kept_pages:  # zero-copy batches kept: the object store's pages, which Arrow's pool never counts
        pattern, since = P.ARROW_LEAK, points[0].call
    elif retention:
        pattern = P.ALLOCATOR_RETENTION
    elif peak:
        pattern = P.PEAK_TOO_BIG
    else:
        pattern = P.HEALTHY
    if pattern == P.INSUFFICIENT_DATA and retention:
        pattern = P.ALLOCATOR_RETENTION
    elif pattern == P.INSUFFICIENT_DATA and peak:
        pattern = P.PEAK_TOO_BIG
    also = None
    if pattern != P.PEAK_TOO_BIG and peak:
        also = P.PEAK_TOO_BIG
    elif pattern in P.GROWTH and retention:
        also = P.ALLOCATOR_RETENTION

    grew = tuple(name for name in MEASURES if grows[name])
    slope = None
    ctl = None
    projected = ""  # the evidence's words when calls_to_limit is the cgroup's projection
    if pattern in P.GROWTH or (pattern == P.ALLOCATOR_RETENTION and grows["rss"]):
        per_call = rss_slope if rss_slope is not None and grows["rss"] else max(heap_s, arrow_s, 0.0)
        if pattern == P.ARROW_LEAK and not grows["rss"]:
            per_call = arrow_s
            if kept_pages and not grows["arrow"]:  # the pinned shared pages' pace
                per_call = max(0.0, lag_slope(points, shared_pages, False) or 0.0)
        slope = round(per_call * 100, 2)
        last = points[-1]
        headroom = last.headroom
        if headroom is None and last.limit is not None and last.rss is not None:
            headroom = last.limit - last.rss
        onset = [p for p in points if since is not None and p.call >= since]
        pace, projected = _pace(onset if len(onset) >= P.CGROUP_MIN_READINGS else points, per_call)
        if headroom is not None and pace > 0:
            ctl = max(0, int(headroom / pace))
        else:
            projected = ""
    evidence = _evidence(
        series, points, trends, retained, peak_text if (peak or also) else "", since, pinned, pattern == P.ARROW_LEAK
    )
    if missing:
        evidence += "; " + missing
    if projected:
        evidence += "; " + projected
    return Verdict(
        pattern,
        P.FIXES[pattern],
        evidence,
        also,
        slope,
        ctl,
        grew,
        since if pattern in P.GROWTH else None,
    )


def _evidence(
    series: Series,
    points: Sequence[Point],
    trends: dict[str, Trend],
    retained: float | None,
    peak_text: str,
    since: int | None,
    pinned: bool,
    judged: bool = False,
) -> str:
    """One line of the numbers the verdict rests on."""
    first, last = points[0].call, points[-1].call
    parts = [f"calls {first:,}-{last:,}"]
    if since is not None and since > first:
        parts.append(f"growth since call {since:,} (flat before)")
    labels = {"rss": "RSS", "heap": "malloc in-use", "arrow": "Arrow", "free": "malloc free"}
    for name, label in labels.items():
        t = trends[name]
        grew = t.state == GREW
        delta = change(points, MEASURES[name])
        if delta is None or (name in ("arrow", "free") and not grew and abs(delta) < 1):
            continue
        per100 = f" ({t.slope * 100:+,.1f}/100 calls)" if t.slope is not None and grew else ""
        steps = " in steps" if grew and t.steps else ""
        unknown = f" ({t.readings} readings: too few to judge alone)" if t.state == UNKNOWN else ""
        parts.append(f"{label} {delta:+,.0f} MiB{per100}{steps}{unknown}")
    shared = change(points, shared_pages)
    if shared is not None and pinned and judged and trends["arrow"].state != GREW:
        parts.append(
            f"shared pages {shared:+,.0f} MiB, steadily with the calls over {len(points)} snapshots: zero-copy "
            "batches kept from Ray's object store (Arrow's pool does not count them; a file mapped as it is read "
            "grows them so too)"
        )
    elif shared is not None and pinned:
        parts.append(
            f"shared pages {shared:+,.0f} MiB, steadily with the calls (not judged as growth: zero-copy batches "
            "kept from Ray's object store grow them so, which Arrow's pool does not count; so does a file mapped "
            "as it is read)"
        )
    elif shared is not None and shared >= P.MIN_GROWTH_MIB:
        parts.append(f"shared pages {shared:+,.0f} MiB (mapped files, Ray's object store: not judged as growth)")
    blocks = change(points, MEASURES["blocks"])
    if blocks is not None and (trends["blocks"].state == GREW or abs(blocks) >= P.MIN_BLOCKS_GROWTH):
        parts.append(f"py_blocks {blocks:+,.0f}")
    if any(t.state == GREW and not t.steps for t in trends.values()):
        parts.append(f"grew in all {P.SUB_WINDOWS} windows")
    if retained is not None and retained >= 1:
        parts.append(f"held {retained:,.0f} MiB")
    if series.trims:
        parts.append(f"{series.trims} trim{'s' * (series.trims != 1)} released {series.released_mb:,.0f} MiB")
    if peak_text:
        parts.append(peak_text)
    return "; ".join(parts)
