"""How one measure of a worker's series moved: the trend machinery of the rule in :mod:`.verdict`.

Each measure (private RSS, malloc in-use, Arrow live, Python blocks, malloc's freed-but-held)
is judged on the snapshots that carry it (:func:`measure_trend`): RSS and the free figure by
their floor (:func:`floor_series`), growth by a line that grew in every sub-window or by a
staircase of steps, after a change point when memory was flat before it; a measure with too
few readings is ``UNKNOWN``. :func:`agrees` tells whether a measure read too seldom for its
own rule grew with RSS, :func:`steady` whether shared pages grew steadily with the calls.
Thresholds are in :mod:`.patterns`; how trends combine into a pattern is
:func:`.verdict.judge`'s.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Sequence
from typing import NamedTuple

from . import growth
from . import patterns as P
from .series import Point, lag_slope

Measure = Callable[[Point], float | None]
"""Reads one measure of a point (MiB, or blocks), None where the snapshot did not carry it."""
MEASURES: dict[str, Measure] = {
    "rss": lambda p: p.private,
    "heap": lambda p: p.heap,
    "arrow": lambda p: p.arrow,
    "blocks": lambda p: None if p.blocks is None else float(p.blocks),
    "free": lambda p: p.free,
}
"""The measures the rule judges, by name (the names of ``Verdict.grew``)."""
FLOORED = ("rss", "free")
"""The measures judged by their floor (retention regrows between trims: a sawtooth)."""

GREW, FLAT, UNKNOWN = "grew", "flat", "unknown"
"""A :class:`Trend`'s states: grew by the rule, did not, or too few readings to say (never "did not")."""


class Trend(NamedTuple):
    """One measure's judgement: GREW, FLAT or UNKNOWN; its slope per call over the judged calls."""

    state: str
    slope: float | None  # per call, over the calls judged (after the onset when there is one)
    since: int | None  # the first call of the calls judged
    readings: int  # snapshots that carry the measure
    steps: bool = False  # grew by the step test (a staircase), not the line's


def sub_windows(
    points: Sequence[Point], n: int, first: int | None = None, last: int | None = None
) -> list[list[Point]]:
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


def floor_series(points: Sequence[Point], name: str, chunks: int = P.FLOOR_CHUNKS) -> list[Point]:
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
    windows = sub_windows(points, P.SUB_WINDOWS)
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
    floor = floor_series(points, name)
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


def measure_trend(points: Sequence[Point], name: str, min_growth: float) -> Trend:
    """The judgement of measure ``name`` on the judged ``points`` (module docstring, steps 2 and 3)."""
    measure = MEASURES[name]
    floored = name in FLOORED
    known = [p for p in points if measure(p) is not None]
    if len(known) < 2:
        return Trend(UNKNOWN, None, None, len(known))
    if not _enough(known, points[0].call, points[-1].call):
        floor = floor_series(known, name) if floored else known
        return Trend(UNKNOWN, lag_slope(floor, measure, False), None, len(known))
    values = [v for p in known if (v := measure(p)) is not None]
    if max(values) - min(values) < min_growth:  # no run of these readings can have risen enough
        floor = floor_series(known, name) if floored else known
        return Trend(FLAT, lag_slope(floor, measure, False), known[0].call, len(known))
    onset = _onset(floor_series(known, name), measure)
    if onset is not None:
        after = [p for p in known if p.call >= onset]
        if len(after) >= P.MIN_POINTS:
            grew, slope, steps = _grown(after, name, min_growth)
            if grew:
                return Trend(GREW, slope, after[0].call, len(known), steps)
    grew, slope, steps = _grown(known, name, min_growth)
    return Trend(GREW if grew else FLAT, slope, known[0].call, len(known), steps)


def agrees(points: Sequence[Point], name: str, rss: Trend) -> bool | None:
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
        known = floor_series(known, name)
    if len(known) < 2 or rss.slope is None:
        return None
    slope = lag_slope(known, measure, False) or 0.0
    covered = known[-1].call - known[0].call
    delta = (measure(known[-1]) or 0.0) - (measure(known[0]) or 0.0)
    share = P.EXPLAINED_SHARE * rss.slope
    if delta > 0 and (slope >= share or delta >= share * covered):
        return True
    return False if covered >= P.AGREE_SPAN_SHARE * (points[-1].call - since) else None


def change(points: Sequence[Point], measure: Measure) -> float | None:
    """The measure's last reading minus its first (None unless both are known)."""
    first = next((v for p in points if (v := measure(p)) is not None), None)
    last = next((v for p in reversed(points) if (v := measure(p)) is not None), None)
    return None if first is None or last is None else last - first


def shared_pages(p: Point) -> float | None:
    """Shared pages (file-backed and shared memory: mapped files, Ray's object store) where the split is known."""
    return None if p.rss is None or p.private is None or p.rss == p.private else p.rss - p.private


def steady(points: Sequence[Point], measure: Measure, min_growth: float) -> bool:
    """Whether ``measure`` grew steadily: by ``min_growth`` in all, each sub-window at ``STEADY_SHARE`` of the pace.

    Each sub-window's level is its floor (its minimum); every step from one level to the next must be at
    least ``STEADY_SHARE`` of the mean step (a line gives 1; bursts that slow down give 0),
    and it must have risen from at least ``STEADY_RISES_SHARE`` of its snapshots to the next.
    """
    known = [p for p in points if measure(p) is not None]
    windows = sub_windows(known, P.SUB_WINDOWS, points[0].call, points[-1].call) if len(known) >= 2 else []
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
