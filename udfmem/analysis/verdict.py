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
   snapshot over the growth's slope: the calls left before the limit at this rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

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
FLOORED = ("rss", "free")
"""The measures judged by their floor (retention regrows between trims: a sawtooth)."""

GREW, FLAT, UNKNOWN = "grew", "flat", "unknown"


class Trend(NamedTuple):
    """One measure's judgement: GREW, FLAT or UNKNOWN; its slope per call over the judged calls."""

    state: str
    slope: float | None  # per call, over the calls judged (after the onset when there is one)
    since: int | None  # the first call of the calls judged
    readings: int  # snapshots that carry the measure
    steps: bool = False  # grew by the step test (a staircase), not the line's


def _windows(points: Sequence[Point], n: int, first: int | None = None, last: int | None = None) -> list[list[Point]]:
    """``points`` cut into ``n`` runs of equal call span from ``first`` to ``last`` (empty runs dropped)."""
    first = points[0].call if first is None else first
    last = points[-1].call if last is None else last
    scale = n / ((last - first) or n)  # windows per call
    top = n - 1
    out: list[list[Point]] = [[] for _ in range(n)]
    for p in points:
        i = int((p[0] - first) * scale)  # p[0]: the call
        out[top if i > top else 0 if i < 0 else i].append(p)
    return [w for w in out if w]


FIELDS = {"rss": "private", "heap": "heap", "arrow": "arrow", "blocks": "blocks", "free": "free"}
"""The :class:`Point` field each measure reads."""
_SEGMENT = Point._fields.index("segment")


def _floor(points: Sequence[Point], name: str, chunks: int = P.FLOOR_CHUNKS) -> list[Point]:
    """Points as a floor series of ``name``: runs of ``len // chunks`` points, each as its first, with its minimum.

    RSS between trims rises and falls with retention (a sawtooth under ``trim="auto"``);
    its minima rise only when something stays. The measure takes its run's minimum (unknown
    when the whole run does not carry it), all in one segment. The runs end at the last
    point (a partial run at the start is left out: the latest snapshots always count), and
    each stands at its first call: a minimum rises only once the whole run has, so what
    raised it came by then.
    """
    k = max(1, len(points) // chunks)
    if k == 1:
        return [p._replace(segment=0) for p in points]
    at = Point._fields.index(FIELDS[name])
    out: list[Point] = []
    for i in range(len(points) % k, len(points) - k + 1, k):
        run = points[i : i + k]
        low = min((v for p in run if (v := p[at]) is not None), default=None)
        row: list[object] = list(run[0])
        row[at], row[_SEGMENT] = low, 0
        out.append(Point._make(row))
    return out


def _line(points: Sequence[Point], measure: Measure, slope: float) -> bool:
    """Whether ``measure`` rose in every sub-window, the last still at ``PLATEAU_SHARE`` of ``slope``.

    Each sub-window's slope also takes the previous window's last value when it holds a
    single one, so a window with one value still shows whether it rose.
    """
    windows = _windows(points, P.SUB_WINDOWS)
    if len(windows) < P.SUB_WINDOWS:
        return False
    previous: Point | None = None
    for i, window in enumerate(windows):
        run = [previous, *window] if previous is not None and len(window) < 2 else window
        previous = window[-1]
        if len(run) < 2:
            continue  # the first window holds one value: the next one's slope starts from it
        # every window grew; the last one still rises (the plateau rule: analysis/growth.py, shared with testing)
        rate, noise = lag_slope(run, measure, False), P.WINDOW_MIN_SHARE * slope
        if not growth.window_grew(rate, slope, last=i == len(windows) - 1, noise=noise):
            return False
    return True


def _steps(floor: Sequence[Point], measure: Measure) -> bool:
    """Whether the floor of ``measure`` rose as a staircase (module docstring, step 3).

    A rise counts once the floor is ``STEP_NOISE_SHARE`` of its whole rise above the level
    of the last rise; it must never fall that far below its highest; rises must come in
    ``STEP_WINDOWS`` of the sub-windows, it must rise (that much) over the last
    ``STEP_TAIL_GAPS`` typical gaps between rises, and the second half of the calls must rise at least
    ``STEP_HALF_SHARE`` as much as the first (steps that slow down are a cache filling).
    """
    values = [(p.call, v) for p in floor if (v := measure(p)) is not None]
    if len(values) < 3:
        return False
    total = values[-1][1] - values[0][1]
    if total <= 0:
        return False
    tol = P.STEP_NOISE_SHARE * total
    level = high = values[0][1]
    rises: list[int] = []
    for call, v in values[1:]:
        if v < high - tol:
            return False  # it fell back: no staircase
        high = max(high, v)
        if v > level + tol:
            rises.append(call)
            level = v
    first, last = values[0][0], values[-1][0]
    if not rises:
        return False
    span = (last - first) / P.SUB_WINDOWS or 1
    windows = {min(P.SUB_WINDOWS - 1, int((call - first - 1) / span)) for call in rises}
    if len(windows) < P.STEP_WINDOWS:
        return False
    gaps = [b - a for a, b in zip([first, *rises], rises, strict=False)]
    tail = last - P.STEP_TAIL_GAPS * statistics.median(gaps)
    if values[-1][1] - min(v for call, v in values if call >= tail) <= tol:
        return False  # no rise over the last typical gaps: it stopped (a plateau)
    middle = first + (last - first) / 2
    half = min((v for call, v in values if call >= middle), default=values[-1][1])
    return values[-1][1] - half >= P.STEP_HALF_SHARE * (half - values[0][1])


def _grown(points: Sequence[Point], name: str, min_growth: float) -> tuple[bool, float | None, bool]:
    """Whether the readings ``points`` grew by a line or by steps; the slope per call; whether by steps."""
    measure = MEASURES[name]
    floor = _floor(points, name)
    judged = floor if name in FLOORED else points
    slope = lag_slope(judged, measure, False)
    first, last = measure(floor[0]), measure(floor[-1])
    span = points[-1].call - points[0].call
    if slope is None or span <= 0 or first is None or last is None:
        return False, slope, False
    rose = last - first  # what the floor did, beside what the slope projects: both must reach the floor
    if slope > 0 and min(slope * span, rose) >= min_growth and _line(judged, measure, slope):
        return True, slope, False
    if rose >= min_growth and _steps(floor, measure):
        return True, rose / span, True
    return False, slope, False


def _enough(known: Sequence[Point], first: int, last: int) -> bool:
    """Whether every sub-window of the calls ``first``-``last`` holds ``MIN_WINDOW_READINGS`` readings."""
    n = P.SUB_WINDOWS
    scale, top = n / ((last - first) or n), n - 1
    counts = [0] * n
    for p in known:
        i = int((p[0] - first) * scale)
        counts[top if i > top else 0 if i < 0 else i] += 1
    return min(counts) >= P.MIN_WINDOW_READINGS


def _onset(floor: Sequence[Point], measure: Measure) -> int | None:
    """The call after which ``measure``'s floor rises from flat (a hinge fitted by least squares); None if none.

    For each floor point with ``ONSET_MIN_BEFORE`` before it (and as many after), the
    model "flat until here, then a line" is fitted; the best fit's point is the onset when
    the floor before it is flat: a slope at most ``ONSET_FLAT_SHARE`` of the one after.
    """
    values = [(float(p.call), v) for p in floor if (v := measure(p)) is not None]
    n = len(values)
    if n < 2 * P.ONSET_MIN_BEFORE:
        return None
    # least squares of y = a + b * max(0, x - t) at each t, from suffix sums: O(n) in all
    sy = sum(y for _, y in values)
    syy = sum(y * y for _, y in values) - sy * sy / n
    suffix = [(0.0, 0.0, 0.0, 0.0)] * (n + 1)  # sums of x, x*x, x*y, y over points i.. (in call order)
    for i in range(n - 1, -1, -1):
        x, y = values[i]
        sx, sxx, sxy, sy_ = suffix[i + 1]
        suffix[i] = (sx + x, sxx + x * x, sxy + x * y, sy_ + y)
    best: tuple[float, int, float] | None = None  # sse, index, slope after
    for i in range(P.ONSET_MIN_BEFORE - 1, n - P.ONSET_MIN_BEFORE):
        t, m = values[i][0], n - i - 1
        sx, sxx, sxy, sy_after = suffix[i + 1]
        z, zz, zy = sx - t * m, sxx - 2 * t * sx + t * t * m, sxy - t * sy_after
        szz, szy = zz - z * z / n, zy - z * sy / n
        if szz <= 0:
            continue
        sse = syy - szy * szy / szz
        if best is None or sse < best[0]:
            best = (sse, i, szy / szz)
    if best is None or best[2] <= 0:
        return None
    _, i, after = best
    before = lag_slope([p._replace(segment=0) for p in floor[: i + 1]], measure) or 0.0
    return int(values[i][0]) if before <= P.ONSET_FLAT_SHARE * after else None


def _trend(points: Sequence[Point], name: str, min_growth: float) -> Trend:
    """The judgement of measure ``name`` on the judged ``points`` (module docstring, steps 2 and 3)."""
    measure = MEASURES[name]
    floored = name in FLOORED
    known = [p for p in points if measure(p) is not None]
    if len(known) < 2:
        return Trend(UNKNOWN, None, None, len(known))
    if not _enough(known, points[0].call, points[-1].call):
        floor = _floor(known, name) if floored else known
        return Trend(UNKNOWN, lag_slope(floor, measure, False), None, len(known))
    values = [v for p in known if (v := measure(p)) is not None]
    if max(values) - min(values) < min_growth:  # no run of these readings can have risen enough
        floor = _floor(known, name) if floored else known
        return Trend(FLAT, lag_slope(floor, measure, False), known[0].call, len(known))
    onset = _onset(_floor(known, name), measure)
    if onset is not None:
        after = [p for p in known if p.call >= onset]
        if len(after) >= P.MIN_POINTS:
            grew, slope, steps = _grown(after, name, min_growth)
            if grew:
                return Trend(GREW, slope, after[0].call, len(known), steps)
    grew, slope, steps = _grown(known, name, min_growth)
    return Trend(GREW if grew else FLAT, slope, known[0].call, len(known), steps)


def _agrees(points: Sequence[Point], name: str, rss: Trend) -> bool | None:
    """Whether a measure short of its own rule rose with RSS: ``EXPLAINED_SHARE`` of RSS's growth.

    Its readings in the calls RSS grew over rose at that share of RSS's slope, or by that
    share of what RSS's slope projects over them (steps, which a slope may miss). None when
    they cannot say: fewer than two readings there, or readings spanning less than
    ``AGREE_SPAN_SHARE`` of those calls without rising with RSS.
    """
    measure = MEASURES[name]
    since = rss.since if rss.since is not None else points[0].call
    known = [p for p in points if p.call >= since and measure(p) is not None]
    if name in FLOORED:
        known = _floor(known, name)
    if len(known) < 2 or rss.slope is None:
        return None
    slope = lag_slope(known, measure, False) or 0.0
    covered = known[-1].call - known[0].call
    delta = (measure(known[-1]) or 0.0) - (measure(known[0]) or 0.0)
    share = P.EXPLAINED_SHARE * rss.slope
    if delta > 0 and (slope >= share or delta >= share * covered):
        return True
    return False if covered >= P.AGREE_SPAN_SHARE * (points[-1].call - since) else None


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


def _delta(points: Sequence[Point], measure: Measure) -> float | None:
    first = next((v for p in points if (v := measure(p)) is not None), None)
    last = next((v for p in reversed(points) if (v := measure(p)) is not None), None)
    return None if first is None or last is None else last - first


def _shared(p: Point) -> float | None:
    """Shared pages (file-backed and shared memory: mapped files, Ray's object store) where the split is known."""
    return None if p.rss is None or p.private is None or p.rss == p.private else p.rss - p.private


def _steady(points: Sequence[Point], measure: Measure, min_growth: float) -> bool:
    """Whether ``measure`` grew steadily: by ``min_growth`` in all, each sub-window at ``STEADY_SHARE`` of the pace.

    Each sub-window's level is its floor (its minimum); every step from one level to the next must be at
    least ``STEADY_SHARE`` of the mean step (a line gives 1; bursts that slow down give 0),
    and it must have risen from at least ``STEADY_RISES_SHARE`` of its snapshots to the next.
    """
    known = [p for p in points if measure(p) is not None]
    windows = _windows(known, P.SUB_WINDOWS, points[0].call, points[-1].call) if len(known) >= 2 else []
    if len(windows) < P.SUB_WINDOWS:
        return False
    levels = [min(v for p in w if (v := measure(p)) is not None) for w in windows]
    total = (measure(known[-1]) or 0.0) - (measure(known[0]) or 0.0)
    mean = (levels[-1] - levels[0]) / (len(levels) - 1)
    steps = [b - a for a, b in itertools.pairwise(levels)]
    values = [v for p in known if (v := measure(p)) is not None]
    rose = sum(b > a for a, b in itertools.pairwise(values))
    return (
        total >= min_growth
        and mean > 0
        and min(steps) >= P.STEADY_SHARE * mean
        and rose >= P.STEADY_RISES_SHARE * (len(values) - 1)
    )


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
    base_private = next((v for p in _floor(points, "rss") if (v := p.private) is not None), 0.0)
    share = P.GROWTH_SHARE * base_private
    base_blocks = next((p.blocks for p in points if p.blocks is not None), 0)
    trends: dict[str, Trend] = {}
    for name in MEASURES:
        if name == "blocks":
            trends[name] = _trend(points, name, max(P.MIN_BLOCKS_GROWTH, P.BLOCKS_SHARE * base_blocks))
        else:
            if name in FLOORED:
                trends[name] = _trend(points, name, max(P.MIN_GROWTH_MIB, share))
            else:  # counted in bytes: no page or arena noise
                counted = max(P.MIN_COUNTED_GROWTH_MIB, P.COUNTED_GROWTH_SHARE * base_private)
                trends[name] = _trend(points, name, counted)
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
    held_growth = grows["rss"] and _agrees(points, "free", rss) is True
    # malloc in-use short of its own rule (read too seldom, or just under the floor): its readings
    # rose with RSS (a heap leak), or not (untracked growth), or cannot say
    heap = trends["heap"]
    heap_agrees = _agrees(points, "heap", rss) if grows["rss"] and heap.state != GREW else None
    # Arrow live short of its own rule (exact steps fail "every sub-window" where RSS's noise passes it)
    arrow_agrees = grows["rss"] and trends["arrow"].state != GREW and _agrees(points, "arrow", rss) is True
    arrow_d, heap_d = _delta(points, MEASURES["arrow"]) or 0.0, _delta(points, MEASURES["heap"]) or 0.0
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
    pinned = split and _steady(points, _shared, max(P.MIN_GROWTH_MIB, share))
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
    if pattern in P.GROWTH or (pattern == P.ALLOCATOR_RETENTION and grows["rss"]):
        per_call = rss_slope if rss_slope is not None and grows["rss"] else max(heap_s, arrow_s, 0.0)
        if pattern == P.ARROW_LEAK and not grows["rss"]:
            per_call = arrow_s
            if kept_pages and not grows["arrow"]:  # the pinned shared pages' pace
                per_call = max(0.0, lag_slope(points, _shared, False) or 0.0)
        slope = round(per_call * 100, 2)
        last = points[-1]
        headroom = last.headroom
        if headroom is None and last.limit is not None and last.rss is not None:
            headroom = last.limit - last.rss
        if headroom is not None and per_call > 0:
            ctl = max(0, int(headroom / per_call))
    evidence = _evidence(
        series, points, trends, retained, peak_text if (peak or also) else "", since, pinned, pattern == P.ARROW_LEAK
    )
    if missing:
        evidence += "; " + missing
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
        delta = _delta(points, MEASURES[name])
        if delta is None or (name in ("arrow", "free") and not grew and abs(delta) < 1):
            continue
        per100 = f" ({t.slope * 100:+,.1f}/100 calls)" if t.slope is not None and grew else ""
        steps = " in steps" if grew and t.steps else ""
        unknown = f" ({t.readings} readings: too few to judge alone)" if t.state == UNKNOWN else ""
        parts.append(f"{label} {delta:+,.0f} MiB{per100}{steps}{unknown}")
    shared = _delta(points, _shared)
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
    blocks = _delta(points, MEASURES["blocks"])
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
