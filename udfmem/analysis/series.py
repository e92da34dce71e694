"""Arithmetic over series of snapshots: robust slopes and a compact per-worker series.

A :class:`Series` holds one worker's snapshots of one UDF as :class:`Point` tuples, in
bounded memory: past ``MAX_POINTS`` every other point is dropped (the first and the
latest are always kept), so a million snapshots cost what 256 do while the shape of
the curve stays. Trims split a series into segments: memory a trim released is a step
down, not a trend, so slopes are estimated within segments only.
"""

from __future__ import annotations

import array
import collections
import statistics
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

MAX_POINTS = 128
"""A series keeps at most this many points (then every other one is dropped)."""


class Point(NamedTuple):
    """One snapshot as analysis needs it. Sizes are MiB; ``None`` where the line did not say.

    Which snapshot field fills which figure is written once, in :mod:`udfmem.events.schema`
    (each field's ``point``); :mod:`udfmem.events.point` builds points from lines and events.
    """

    call: int
    private: float | None  # private (anonymous) RSS where known (``rss_anon_mb``), else RSS: where leaks show
    rss: float | None  # RSS as the kernel and the OOM killer count it (``rss_mb``)
    peak: float | None  # peak RSS in the window before this snapshot
    heap: float | None  # malloc in use (``heap_in_use_mb`` counts mmapped chunks too)
    free: float | None  # malloc's freed-but-held
    arrow: float | None
    blocks: int | None  # live Python object blocks
    limit: float | None
    headroom: float | None
    segment: int  # trims seen before this point: slopes never span a trim
    final: bool = False


MAX_MIB = float(2**40)
"""The largest size a line may give (1 EiB): a line with a bigger, infinite or NaN size is skipped."""
MAX_COUNT = 2**53
"""The largest call number or block count a line may give (beyond, floats lose integers)."""


def sane(p: Point) -> bool:
    """Whether every figure of ``p`` is finite and in range (sizes within ±``MAX_MIB``, counts ``MAX_COUNT``).

    Analysis subtracts, divides and projects these figures: an infinite, NaN or absurd one
    would overflow (``int(inf)``) or reach ``--json`` as ``Infinity``. NaN fails every comparison.
    """
    if not 0 <= p.call <= MAX_COUNT or (p.blocks is not None and not 0 <= p.blocks <= MAX_COUNT):
        return False
    for v in (p.private, p.rss, p.peak, p.heap, p.free, p.arrow, p.limit, p.headroom):
        if v is not None and not -MAX_MIB <= v <= MAX_MIB:
            return False
    return True


Parse = Callable[[Any, int, "float | None"], "Point | list[int] | None"]
"""Parses a snapshot line (or what a reader handed for it: anything but a point) into a point.

The point is of the given segment, its peak at least the given one (folded peaks).

It may instead give the point's row of tenths (see :data:`TENTHS_NONE`), the cheap form for a
reader that knows its layout: the figures after ``call`` as :class:`Point` orders them
(``private ... headroom, segment, final``), each ten times the value, ``TENTHS_NONE`` when unknown,
each within ``±TENTHS_MAX``.
"""
_Tail = tuple[int, "float | None", Any, int, "Parse | None"]  # call, peak, point or line, segment, parse
_NAN = float("nan")
_WIDTH = 11  # the fields of a Point after call: private ... headroom, segment, final
_I_MAX = 2**31 - 1
_I_NONE = -(2**31)  # unknown, among tenths
TENTHS_NONE = _I_NONE
"""An unknown figure in a row of tenths (below every known one: the higher of two peaks is their ``max``)."""
TENTHS_MAX = _I_MAX
"""The largest magnitude of a figure in a row of tenths."""


def _folded(p: Point, peak: float | None) -> Point:
    """``p`` with a dropped snapshot's higher window peak folded in."""
    return p._replace(peak=peak) if peak is not None and (p.peak is None or peak > p.peak) else p


def _tenths(values: Sequence[Any]) -> list[int] | None:
    """``values`` as tenths in 32-bit ints (unknown: ``_I_NONE``); None when one is not exactly a tenth."""
    try:
        out = [_I_NONE if v is None else round(v * 10) for v in values]
    except (OverflowError, ValueError):  # inf, nan
        return None
    for n, v in zip(out, values, strict=True):
        if v is not None and (n / 10 != v or not -_I_MAX <= n <= _I_MAX):
            return None
    return out


def _decode(call: int, raw: Sequence[Any]) -> Point:
    """A point from its call and its row (tenths, or doubles with NaN for unknown)."""
    if isinstance(raw, list) or raw.typecode == "i":  # type: ignore[attr-defined]
        values: list[Any] = [None if n == _I_NONE else n / 10 for n in raw]
    else:
        values = [None if x != x else x for x in raw]  # NaN: unknown
    private, rss, peak, heap, free, arrow, blocks, limit, headroom, segment, final = values
    return Point(
        call,
        private,
        rss,
        peak,
        heap,
        free,
        arrow,
        None if blocks is None else int(blocks),
        limit,
        headroom,
        int(segment),
        bool(final),
    )


_cached_by: Series | None = None
"""The one series whose points are built and kept (see :attr:`Series.points`)."""


class Series:
    """One worker's snapshots of one UDF, decimated past ``MAX_POINTS``; trims counted and marked.

    The n-th snapshot is kept while n is a multiple of the stride, which doubles (and
    every other kept point goes) whenever more than ``MAX_POINTS`` are kept, so kept
    points stay evenly spread; the latest snapshot is always kept too. The window peaks
    of the snapshots that are dropped are folded into the next kept point, so a spike is
    never lost. Only window peaks are folded: a snapshot whose peak is the process's lifetime
    peak (``peak_is_lifetime``) is handed with none (:func:`udfmem.events.point.window_peak`),
    and its point has none (:attr:`lifetime_peaks` says so). A reader may hand over a
    snapshot's line unparsed (:meth:`add_line`), with
    only its call and peak: the line is parsed (by ``parse``) only if it is kept, so most
    lines of a long log are never parsed in full.

    Memory: kept points are stored as rows of one ``array`` — tenths in 32-bit ints
    (sizes as udfmem logs them, exactly), or doubles once a value is no tenth — about 48
    bytes a point; only the latest snapshot may be held as its line, until it is
    replaced or read. :attr:`points` builds
    :class:`Point` tuples on each read (not cached: a fleet's worth would be the peak).
    """

    __slots__ = (
        "_cached",
        "_calls",
        "_dropped_peak",
        "_max",
        "_parse",
        "_recent_trims",
        "_rows",
        "_stride",
        "_tail",
        "lifetime_peaks",
        "not_read",
        "released_mb",
        "setup_gap",
        "snapshots",
        "trims",
    )

    def __init__(self, max_points: int = MAX_POINTS, parse: Parse | None = None) -> None:
        self._calls = array.array("i")  # widened to 64 bits past 2**31
        self._rows: array.array[Any] = array.array("i")  # _WIDTH tenths a point; doubles once one is no tenth
        self._tail: _Tail | None = None  # the latest snapshot, when it is not a kept one
        self._parse = parse
        self._cached: list[Point] | None = None  # points, until a change (see points)
        self._dropped_peak: float | None = None  # the highest peak among dropped snapshots since the last kept
        self.trims = 0
        self._recent_trims: collections.deque[tuple[int, float]] | None = None  # made at the first trim
        self.released_mb = 0.0
        self.setup_gap: float | None = None  # private RSS not malloc's nor Arrow's after setup
        self.snapshots = 0  # snapshots kept or not (repeats of a call number excluded)
        self.lifetime_peaks = False
        """Whether a snapshot's peak was its process's lifetime peak (a reader set it): those peaks are unknown."""
        self.not_read: str | None = None
        """The fields the worker said it cannot read, and why (its setup event's ``not_read``), if it said."""
        self._stride = 1
        self._max = max_points

    # -- kept points, by column

    def _row(self, i: int) -> Point:
        return _decode(self._calls[i], self._rows[i * _WIDTH : (i + 1) * _WIDTH])

    def _store(self, i: int, call: int, p: Point | list[int]) -> None:
        """Write ``p`` (a point, or a row of tenths from a parse) as row ``i`` (``i == len``: append)."""
        calls = self._calls
        if calls.typecode == "i" and not -_I_MAX <= call <= _I_MAX:
            calls = self._calls = array.array("q", calls)
        rows = self._rows
        row: list[Any] | None
        if isinstance(p, list):
            row = p if rows.typecode == "i" else [_NAN if n == _I_NONE else n / 10 for n in p]
        else:
            values = p[1:]
            row = _tenths(values) if rows.typecode == "i" else None
            if row is None:
                if rows.typecode == "i":  # a value that is no tenth: doubles from now on
                    rows = self._rows = array.array("d", [_NAN if n == _I_NONE else n / 10 for n in rows])
                row = [_NAN if v is None else float(v) for v in values]
        if i == len(calls):
            calls.append(call)
            rows.extend(row)
        else:
            calls[i] = call
            rows[i * _WIDTH : (i + 1) * _WIDTH] = array.array(rows.typecode, row)

    def _last_call(self) -> int | None:
        if self._tail is not None:
            return self._tail[0]
        return self._calls[-1] if self._calls else None

    @property
    def points(self) -> list[Point]:
        """The kept points, then the latest, in call order (the latest line parsed here if held unparsed).

        Built on the first read after a change and kept until the next change or until
        another series' points are read (one series at a time holds them: a judge reads a
        series' points a few times in a row, and a fleet's worth at once would be the peak).
        """
        global _cached_by
        cached = self._cached
        if cached is not None:
            return cached[:]
        out = [self._row(i) for i in range(len(self._calls))]
        tail = self._tail
        if tail is not None:
            _, peak, payload, segment, parse = tail
            dropped = self._dropped_peak
            if dropped is not None and (peak is None or dropped > peak):
                peak = dropped
            p = self._point(payload, segment, peak, parse)
            if p is not None:
                out.append(p if isinstance(p, Point) else _decode(tail[0], p))
        last = _cached_by
        if last is not None and last is not self:
            last._cached = None
        _cached_by, self._cached = self, out
        return out[:]

    def _point(self, payload: Any, segment: int, peak: float | None, parse: Parse | None) -> Point | list[int] | None:
        """The snapshot as a point with its folded peak, or a row of tenths when its parse gives one."""
        if isinstance(payload, Point):
            return _folded(payload, peak)
        parse = parse or self._parse
        return parse(payload, segment, peak) if parse is not None else None

    def add(self, p: Point) -> None:
        """Add a snapshot (in log order). A repeated call number replaces the earlier point; older ones are dropped."""
        self.add_line(p.call, p.peak, p, p.segment)

    def add_line(self, call: int, peak: float | None, payload: Any, segment: int, parse: Parse | None = None) -> bool:
        """Add a snapshot by its call, its window peak and its line (``payload``), parsed (by ``parse``) only if kept.

        ``peak`` is a window peak, folded into the next kept point if this one is dropped: None
        for a lifetime peak, which would otherwise pass as one window's transient.

        False, and nothing added, when the line had to be parsed and could not be. (:meth:`add`
        hands its point as the line.)
        """
        self._cached = None
        tail = self._tail
        last = tail[0] if tail is not None else self._calls[-1] if self._calls else None
        if last is not None and call <= last:
            if call == last:  # the same snapshot again (two copies of a log), or a final at that call
                if self._tail is not None:
                    self._tail = (call, peak, payload, segment, parse)
                else:
                    p = self._point(payload, segment, peak, parse)
                    if p is None:
                        return False
                    self._store(len(self._calls) - 1, call, p)
            return True
        index = self.snapshots
        keep = not index % self._stride
        dropped = self._dropped_peak
        if tail is not None and tail[1] is not None and (dropped is None or tail[1] > dropped):
            dropped = tail[1]  # the replaced latest snapshot: keep its peak
        if keep:
            folded = dropped if dropped is not None and (peak is None or dropped > peak) else peak
            p = self._point(payload, segment, folded, parse)
            if p is None:
                return False
            self._store(len(self._calls), call, p)
            self._dropped_peak = None
        else:
            self._dropped_peak = dropped
        self._tail = None if keep else (call, peak, payload, segment, parse)
        self.snapshots += 1
        if len(self._calls) > self._max:
            self._halve()
        return True

    def _halve(self) -> None:
        """Keep every other point; each dropped one's peak goes to the point after it."""
        calls, rows, n = self._calls, self._rows, len(self._calls)
        if rows.typecode == "i":  # tenths: unknown is the lowest, so the higher peak is the max
            kept = array.array("i")
            for k in range(0, n, 2):
                kept += rows[k * _WIDTH : (k + 1) * _WIDTH]
                if k:
                    at, dropped = (k // 2) * _WIDTH + 2, rows[(k - 1) * _WIDTH + 2]
                    if dropped > kept[at]:
                        kept[at] = dropped
            if n % 2 == 0 and (last := rows[(n - 1) * _WIDTH + 2]) != _I_NONE:
                self._dropped_peak = last / 10  # the last one dropped: its peak goes to the next kept point
            self._calls, self._rows = calls[::2], kept
            self._stride *= 2
            return
        points = [self._row(i) for i in range(n)]
        kept_points = points[::2]
        for k in range(1, len(kept_points)):
            kept_points[k] = _folded(kept_points[k], points[2 * k - 1].peak)
        if n % 2 == 0 and points[-1].peak is not None:
            self._dropped_peak = points[-1].peak  # the last one dropped: its peak goes to the next kept point
        self._calls = array.array(calls.typecode)
        self._rows = array.array("d")
        for k, p in enumerate(kept_points):
            self._store(k, p.call, p)
        self._stride *= 2

    def add_trim(self, released_mb: float) -> None:
        """A ``udfmem.trim`` line (MiB it released): later points start a new segment."""
        self.trims += 1
        self.released_mb += released_mb
        last = self._last_call()
        if last is not None:
            if self._recent_trims is None:
                self._recent_trims = collections.deque(maxlen=self._max)
            self._recent_trims.append((last, released_mb))

    @property
    def recent_trims(self) -> Sequence[tuple[int, float]]:
        """(call, released MiB) of the latest ``MAX_POINTS`` trims."""
        return self._recent_trims if self._recent_trims is not None else ()

    @property
    def trim_calls(self) -> list[int]:
        """The call each of the recent trims followed (the latest ``MAX_POINTS`` trims)."""
        return [call for call, _ in self.recent_trims]

    def add_setup(self, p: Point) -> None:
        """A ``udfmem.setup`` line's point: the memory that is neither malloc's nor Arrow's after setup."""
        if p.private is not None and p.heap is not None:
            self.setup_gap = p.private - p.heap - (p.arrow or 0.0)

    @property
    def segment(self) -> int:
        """The segment the next point belongs to (the number of trims so far)."""
        return self.trims


def lag_slope(points: Sequence[Point], value: Callable[[Point], float | None], segmented: bool = True) -> float | None:
    """A robust slope of ``value`` against call, per call: Theil-Sen at half the span, within segments.

    The median of the slopes between each point and the point half a segment later: O(n),
    and like Theil-Sen a single outlier (one noisy snapshot, a spike) cannot move it.
    Pairs never span a trim (unless ``segmented`` is False: for what is live, which a trim
    does not move). None when fewer than two usable points.
    """
    slopes: list[float] = []
    start = 0
    n = len(points)
    while start < n:
        end = start
        while end < n and (not segmented or points[end].segment == points[start].segment):
            end += 1
        seg = [(p.call, v) for p in points[start:end] if (v := value(p)) is not None]
        half = len(seg) // 2
        for i in range(len(seg) - half if half else 0):
            (x0, y0), (x1, y1) = seg[i], seg[i + half]
            if x1 > x0:
                slopes.append((y1 - y0) / (x1 - x0))
        start = end
    return statistics.median(slopes) if slopes else None
