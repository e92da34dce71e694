"""One worker's series in, one named pattern out: the rule ``udfmem diagnose`` applies.

The rule (thresholds in :mod:`udfmem.analysis.patterns`):

1. **Warm-up.** The first ``WARMUP_SHARE`` of the snapshots (at least ``WARMUP_MIN``) are
   dropped: caches, pools and lazy imports fill there. A ``final=true`` snapshot counts
   calls but its memory is not judged: at a UDF object's release it is read after the
   object let go of what it held. Fewer than ``MIN_POINTS`` left is
   ``insufficient-data``.
2. **Trend.** For each measure — private RSS, malloc in-use (mmapped chunks included), Arrow
   live, Python object blocks, malloc's freed-but-held — a robust slope (Theil-Sen at half
   the span, :func:`~udfmem.analysis.series.lag_slope`) within the segments between trims,
   so a trim's step down is never read as a trend and one spike cannot make one. RSS is
   first turned into a floor series (the minimum of each of ``FLOOR_CHUNKS`` runs of
   snapshots): retention that regrows between trims is a sawtooth, whose floor is flat.
3. **Growth** of a measure needs all of: a slope of at least ``MIN_SLOPE_KIB`` per call
   (``MIN_BLOCKS_PER_CALL`` for blocks); projected growth over the judged calls of at
   least ``MIN_GROWTH_MIB`` (``MIN_BLOCKS_GROWTH``); growth in every one of
   ``SUB_WINDOWS`` sub-windows (CPython's refleak rule: a leak grows in each window, noise
   does not); and a last sub-window still rising at ``PLATEAU_SHARE`` of the overall slope
   (the plateau rule: a cache that filled and stopped is not a leak).
4. **Pattern**, the first that holds: Arrow live grows (and explains more than malloc) →
   ``arrow-leak``; malloc in-use or Python blocks grow (or RSS grows while the blocks,
   read too seldom for the window rule, rose at the same thresholds) → ``heap-leak``; RSS grows with
   malloc's freed-but-held (its floor too) growing at ``EXPLAINED_SHARE`` of its slope →
   ``allocator-retention`` (``healthy`` when trims keep it down, below); RSS
   grows, nothing explains it → ``untracked-growth``; freed-but-held memory (malloc's
   free figure, corrected for trims by the memory not malloc's nor Arrow's) at least
   ``RETENTION_MIN_MIB`` and ``RETENTION_SHARE`` of RSS → ``allocator-retention``,
   unless the trims of the last sub-window each release ``KEPT_DOWN_SHARE`` of it (the
   snapshot comes before its trim: trims that keep retention down mean healthy); a
   window peak above ``PEAK_LIMIT_SHARE`` of a known limit, or ``PEAK_MIN_MIB`` and
   ``PEAK_SHARE`` above RSS → ``peak-too-big``; else ``healthy``. A second pattern that
   also holds is ``also`` (a heap leak with spikes). Shared pages (mapped files, Ray's
   object store) are never judged as growth; their growth is named in the evidence.
5. **Severity.** With a known limit, ``calls_to_limit`` is the headroom at the last
   snapshot over the RSS slope: the calls left before the limit at this rate.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence

from . import growth
from . import patterns as P
from .series import Point, Series, lag_slope


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


Measure = Callable[[Point], float | None]
MEASURES: dict[str, Measure] = {
    "rss": lambda p: p.private,
    "heap": lambda p: p.heap,
    "arrow": lambda p: p.arrow,
    "blocks": lambda p: None if p.blocks is None else float(p.blocks),
    "free": lambda p: p.free,
}


def _windows(points: Sequence[Point], n: int) -> list[list[Point]]:
    """``points`` cut into ``n`` runs of equal call span (empty runs dropped)."""
    first, last = points[0].call, points[-1].call
    span = (last - first) / n or 1
    out: list[list[Point]] = [[] for _ in range(n)]
    for p in points:
        out[min(n - 1, int((p.call - first) / span))].append(p)
    return [w for w in out if w]


def _grows(
    points: Sequence[Point], measure: Measure, min_slope: float, min_growth: float, segmented: bool = True
) -> tuple[bool, float | None]:
    """Whether ``measure`` grows by the rule (module docstring, step 3), and its slope per call.

    Only the points that carry the measure count (``py_blocks`` is left out of snapshots
    over its time budget); each sub-window's slope also takes the previous window's last
    value, so a window with a single value still shows whether it rose. ``segmented``:
    slopes stay within the segments between trims (RSS and malloc's free figure; what
    is live does not move at a trim).
    """
    known = [p for p in points if measure(p) is not None]
    if len(known) < 2:
        return False, None
    slope = lag_slope(known, measure, segmented)
    if slope is None or slope < min_slope or slope * (known[-1].call - known[0].call) < min_growth:
        return False, slope
    windows = _windows(known, P.SUB_WINDOWS)
    if len(windows) < P.SUB_WINDOWS:
        return False, slope
    previous: Point | None = None
    for i, window in enumerate(windows):
        run = [previous, *window] if previous is not None and len(window) < 2 else window
        previous = window[-1]
        if len(run) < 2:
            continue  # the first window holds one value: the next one's slope starts from it
        # every window grew; the last one still rises (the plateau rule: analysis/growth.py, shared with testing)
        if not growth.window_grew(lag_slope(run, measure, segmented), slope, last=i == len(windows) - 1):
            return False, slope
    return True, slope


def _floor(points: Sequence[Point]) -> list[Point]:
    """RSS and malloc's free figure as floor series: the minima of ``FLOOR_CHUNKS`` runs of points.

    RSS between trims rises and falls with retention (a sawtooth under ``trim="auto"``);
    its minima rise only when something stays. Each run becomes its last point with the
    run's lowest RSS and free figure, all in one segment.
    """
    k = max(1, len(points) // P.FLOOR_CHUNKS)
    out: list[Point] = []
    for i in range(0, len(points) - k + 1, k):
        run = points[i : i + k]
        low = min((p.private for p in run if p.private is not None), default=None)
        free = min((p.free for p in run if p.free is not None), default=None)
        out.append(run[-1]._replace(private=low, free=free, segment=0))
    return out


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _kept_down(series: Series, points: Sequence[Point], held: float) -> bool:
    """Whether trims in the last sub-window release at least ``KEPT_DOWN_SHARE`` of what is held.

    Snapshots come before a trim (``trim="auto"`` decides at the snapshot), so a worker
    whose trims keep retention down still shows it held at its snapshots.
    """
    first = _windows(points, P.SUB_WINDOWS)[-1][0].call
    released = [mb for call, mb in series.recent_trims if call >= first]
    return bool(released) and statistics.median(released) >= P.KEPT_DOWN_SHARE * held


def _retained(series: Series, points: Sequence[Point]) -> float | None:
    """Freed-but-held MiB over the last sub-window: malloc's free figure, capped by what is not live.

    glibc's free figure stays after a trim returned the pages, so it is capped by private
    RSS minus malloc in-use minus Arrow minus the same after setup (code, libraries).
    """
    last = _windows(points, P.SUB_WINDOWS)[-1]
    base = series.setup_gap if series.setup_gap is not None else 0.0
    held: list[float | None] = []
    for p in last:
        if p.free is None or p.private is None or p.heap is None:
            held.append(None)
        else:
            held.append(min(p.free, max(0.0, p.private - p.heap - (p.arrow or 0.0) - base)))
    return _median(held)


def _peak_too_big(points: Sequence[Point]) -> tuple[bool, str]:
    """Whether some window's peak is the danger; the evidence."""
    worst: Point | None = None
    for p in points:
        if p.peak is not None and p.rss is not None and (worst is None or p.peak > worst.peak):  # type: ignore[operator]
            worst = p
    if worst is None or worst.peak is None or worst.rss is None:
        return False, ""
    base = _median([p.rss for p in points]) or worst.rss
    lift = worst.peak - base
    text = f"peak {worst.peak:,.0f} MiB at call {worst.call:,} vs RSS ~{base:,.0f} MiB"
    if worst.limit:
        text += f", limit {worst.limit:,.0f} MiB"
        if worst.peak >= P.PEAK_LIMIT_SHARE * worst.limit:
            return True, text
    return lift >= P.PEAK_MIN_MIB and lift >= P.PEAK_SHARE * base, text


def _delta(points: Sequence[Point], measure: Measure) -> float | None:
    first = next((v for p in points if (v := measure(p)) is not None), None)
    last = next((v for p in reversed(points) if (v := measure(p)) is not None), None)
    return None if first is None or last is None else last - first


def judge(series: Series) -> Verdict:
    """The pattern of ``series`` by the rule in this module's docstring."""
    # a final snapshot at a UDF object's release reads memory after the object let go of it
    pts = [p for p in series.points if not p.final]
    skip = max(P.WARMUP_MIN, int(len(pts) * P.WARMUP_SHARE))
    points = pts[skip:]
    if len(points) < P.MIN_POINTS or points[-1].call - points[0].call < P.MIN_POINTS:
        return Verdict(
            P.INSUFFICIENT_DATA,
            P.FIXES[P.INSUFFICIENT_DATA],
            f"{len(points)} snapshots after the warm-up; {P.MIN_POINTS} needed",
        )
    mib, kib = P.MIN_GROWTH_MIB, P.MIN_SLOPE_KIB / 1024
    grows: dict[str, bool] = {}
    slopes: dict[str, float | None] = {}
    floor = _floor(points)
    for name, measure in MEASURES.items():
        if name in ("rss", "free"):
            grows[name], slopes[name] = _grows(floor, measure, kib, mib)
        elif name == "blocks":
            grows[name], slopes[name] = _grows(points, measure, P.MIN_BLOCKS_PER_CALL, P.MIN_BLOCKS_GROWTH, False)
        else:
            grows[name], slopes[name] = _grows(points, measure, kib, mib, False)
    rss_slope = slopes["rss"]
    heap_s, arrow_s = slopes["heap"] or 0.0, slopes["arrow"] or 0.0
    peak, peak_text = _peak_too_big(points)
    retained = _retained(series, points)
    rss_last = points[-1].private
    kept_down = retained is not None and _kept_down(series, points, retained)
    retention = (
        retained is not None
        and retained >= P.RETENTION_MIN_MIB
        and (rss_last is None or retained >= P.RETENTION_SHARE * rss_last)
        and not kept_down
    )
    # RSS growth that malloc's growing free figure explains is retention growing, not a leak
    held_growth = grows["rss"] and (slopes["free"] or 0.0) >= P.EXPLAINED_SHARE * (rss_slope or 0.0)

    # RSS grows by the whole rule and Python blocks rose with it: Python objects, even where
    # py_blocks was read too seldom (its time budget) for the sub-window rule of its own
    blocks_s = slopes["blocks"] or 0.0
    known = [p.call for p in points if p.blocks is not None]
    blocks_rose = (
        len(known) >= 2
        and blocks_s >= P.MIN_BLOCKS_PER_CALL
        and blocks_s * (known[-1] - known[0]) >= P.MIN_BLOCKS_GROWTH
    )
    if grows["arrow"] and (not grows["heap"] or arrow_s >= heap_s):
        pattern = P.ARROW_LEAK
    elif grows["heap"] or (grows["blocks"] and not grows["arrow"]) or (grows["rss"] and blocks_rose):
        pattern = P.HEAP_LEAK
    elif held_growth:
        pattern = P.HEALTHY if kept_down else P.ALLOCATOR_RETENTION
    elif grows["rss"]:
        pattern = P.UNTRACKED_GROWTH
    elif retention:
        pattern = P.ALLOCATOR_RETENTION
    elif peak:
        pattern = P.PEAK_TOO_BIG
    else:
        pattern = P.HEALTHY
    also = None
    if pattern != P.PEAK_TOO_BIG and peak:
        also = P.PEAK_TOO_BIG
    elif pattern in P.GROWTH and retention:
        also = P.ALLOCATOR_RETENTION

    grew = tuple(name for name in MEASURES if grows[name])
    slope = None
    ctl = None
    if pattern in P.GROWTH or (pattern == P.ALLOCATOR_RETENTION and grows["rss"]):
        per_call = rss_slope if rss_slope is not None and grows["rss"] else max(heap_s, arrow_s)
        slope = round(per_call * 100, 2)
        last = points[-1]
        headroom = last.headroom
        if headroom is None and last.limit is not None and last.rss is not None:
            headroom = last.limit - last.rss
        if headroom is not None and per_call > 0:
            ctl = max(0, int(headroom / per_call))
    return Verdict(
        pattern,
        P.FIXES[pattern],
        _evidence(series, points, grows, slopes, retained, peak_text if (peak or also) else ""),
        also,
        slope,
        ctl,
        grew,
        points[0].call if pattern in P.GROWTH else None,
    )


def _evidence(
    series: Series,
    points: Sequence[Point],
    grows: dict[str, bool],
    slopes: dict[str, float | None],
    retained: float | None,
    peak_text: str,
) -> str:
    """One line of the numbers the verdict rests on."""
    first, last = points[0].call, points[-1].call
    parts = [f"calls {first:,}-{last:,}"]
    labels = {"rss": "RSS", "heap": "malloc in-use", "arrow": "Arrow", "free": "malloc free"}
    for name, label in labels.items():
        delta = _delta(points, MEASURES[name])
        if delta is None or (name in ("arrow", "free") and not grows[name] and abs(delta) < 1):
            continue
        slope = slopes[name]
        per100 = f" ({slope * 100:+,.1f}/100 calls)" if slope is not None and grows[name] else ""
        parts.append(f"{label} {delta:+,.0f} MiB{per100}")
    shared = _delta(points, lambda p: None if p.rss is None or p.private is None else p.rss - p.private)
    if shared is not None and shared >= P.MIN_GROWTH_MIB:
        parts.append(f"shared pages {shared:+,.0f} MiB (mapped files, Ray's object store: not judged as growth)")
    blocks = _delta(points, MEASURES["blocks"])
    if blocks is not None and (grows["blocks"] or abs(blocks) >= P.MIN_BLOCKS_GROWTH):
        parts.append(f"py_blocks {blocks:+,.0f}")
    if grows and any(grows.values()):
        parts.append(f"grew in all {P.SUB_WINDOWS} windows")
    if retained is not None and retained >= 1:
        parts.append(f"held {retained:,.0f} MiB")
    if series.trims:
        parts.append(f"{series.trims} trim{'s' * (series.trims != 1)} released {series.released_mb:,.0f} MiB")
    if peak_text:
        parts.append(peak_text)
    return "; ".join(parts)
