"""Arithmetic over series of snapshots: robust slopes and a compact per-worker series.

A :class:`Series` holds one worker's snapshots of one UDF as :class:`Point` tuples, in
bounded memory: past ``MAX_POINTS`` every other point is dropped (the first and the
latest are always kept), so a million snapshots cost what 256 do while the shape of
the curve stays. Trims split a series into segments: memory a trim released is a step
down, not a trend, so slopes are estimated within segments only.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

MAX_POINTS = 128
"""A series keeps at most this many points (then every other one is dropped)."""


class Point(NamedTuple):
    """One snapshot as analysis needs it. Sizes are MiB; ``None`` where the line did not say."""

    call: int
    rss: float | None  # private (anonymous) RSS where known, else RSS: where leaks show
    rss_total: float | None  # RSS as the kernel and the OOM killer count it
    peak: float | None  # peak RSS in the window before this snapshot
    heap: float | None  # malloc in use (``heap_in_use_mb`` counts mmapped chunks too)
    free: float | None  # malloc's freed-but-held
    arrow: float | None
    blocks: int | None  # live Python object blocks
    limit: float | None
    headroom: float | None
    segment: int  # trims seen before this point: slopes never span a trim
    final: bool = False


def _num(fields: Mapping[str, Any], name: str) -> float | None:
    value = fields.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def point(fields: Mapping[str, Any], segment: int = 0) -> Point | None:
    """A :class:`Point` from a parsed ``udfmem.snapshot`` line's fields; None without a call number."""
    call = fields.get("call")
    if not isinstance(call, int) or isinstance(call, bool):
        return None
    rss_total = _num(fields, "rss_mb")
    anon = _num(fields, "rss_anon_mb")
    blocks = fields.get("py_blocks")
    return Point(
        call,
        anon if anon is not None else rss_total,
        rss_total,
        _num(fields, "peak_rss_mb"),
        _num(fields, "heap_in_use_mb"),
        _num(fields, "heap_free_mb"),
        _num(fields, "arrow_live_mb"),
        blocks if isinstance(blocks, int) and not isinstance(blocks, bool) else None,
        _num(fields, "limit_mb"),
        _num(fields, "headroom_mb"),
        segment,
        fields.get("final") is True,
    )


Parse = Callable[[bytes, int, "float | None"], "Point | None"]
"""Parses a snapshot line into a point of a segment, its peak at least the given one (folded peaks)."""
_Entry = tuple[int, "float | None", "Point | bytes", int]  # call, peak (folded), the point or its line, segment


class Series:
    """One worker's snapshots of one UDF, decimated past ``MAX_POINTS``; trims counted and marked.

    The n-th snapshot is kept while n is a multiple of the stride, which doubles (and
    every other kept point goes) whenever more than ``MAX_POINTS`` are kept, so kept
    points stay evenly spread; the latest snapshot is always kept too. The window peaks
    of the snapshots that are dropped are folded into the next kept point, so a spike is
    never lost. A reader may hand over a snapshot's line unparsed (:meth:`add_line`), with
    only its call and peak: lines are parsed (by ``parse``) only if they are still kept
    when :attr:`points` is read, so most lines of a long log are never parsed in full.
    """

    def __init__(self, max_points: int = MAX_POINTS, parse: Parse | None = None) -> None:
        self._kept: list[_Entry] = []
        self._tail: _Entry | None = None  # the latest snapshot, when it is not a kept one
        self._parse = parse
        self._dropped_peak: float | None = None  # the highest peak among dropped snapshots since the last kept
        self._cached: list[Point] | None = None  # points, until the next snapshot
        self.trims = 0
        self.recent_trims: collections.deque[tuple[int, float]] = collections.deque(maxlen=max_points)
        self.released_mb = 0.0
        self.setup_gap: float | None = None  # private RSS not malloc's nor Arrow's after setup
        self.snapshots = 0  # snapshots kept or not (repeats of a call number excluded)
        self._stride = 1
        self._max = max_points

    def _point(self, entry: _Entry) -> Point | None:
        """The entry as a point, parsed if it is a line, with its folded peak."""
        _, peak, payload, segment = entry
        if isinstance(payload, bytes):
            return self._parse(payload, segment, peak) if self._parse is not None else None
        if peak is not None and (payload.peak is None or peak > payload.peak):
            payload = payload._replace(peak=peak)
        return payload

    @property
    def points(self) -> list[Point]:
        """The kept points, then the latest, in call order (lines parsed on the first read after a change)."""
        if self._cached is not None:
            return self._cached
        kept: list[_Entry] = []
        out: list[Point] = []
        for entry in self._kept:
            p = self._point(entry)
            if p is not None:
                out.append(p)
                kept.append((entry[0], None, p, entry[3]))  # the peak is folded into the point now
        self._kept = kept
        if self._tail is not None and (p := self._point(self._fold(self._tail))) is not None:
            out.append(p)
        self._cached = out
        return out

    def _fold(self, entry: _Entry) -> _Entry:
        """``entry`` with the dropped snapshots' peak folded in."""
        dropped = self._dropped_peak
        if dropped is not None and (entry[1] is None or dropped > entry[1]):
            return (entry[0], dropped, entry[2], entry[3])
        return entry

    def add(self, p: Point) -> None:
        """Add a snapshot (in log order). A repeated call number replaces the earlier point; older ones are dropped."""
        self._add((p.call, p.peak, p, p.segment))

    def add_line(self, call: int, peak: float | None, line: bytes, segment: int) -> None:
        """Add a snapshot by its call, its window peak and its line, to be parsed only if it is kept."""
        self._add((call, peak, line, segment))

    def _add(self, entry: _Entry) -> None:
        self._cached = None
        last = self._tail if self._tail is not None else (self._kept[-1] if self._kept else None)
        if last is not None and entry[0] <= last[0]:
            if entry[0] == last[0]:  # the same snapshot again (two copies of a log), or a final at that call
                if self._tail is not None:
                    self._tail = entry
                else:
                    self._kept[-1] = entry
            return
        index = self.snapshots
        self.snapshots += 1
        tail = self._tail
        if tail is not None:  # replaced: keep its peak
            self._tail = None
            if tail[1] is not None and (self._dropped_peak is None or tail[1] > self._dropped_peak):
                self._dropped_peak = tail[1]
        if index % self._stride:
            self._tail = entry
            return
        self._kept.append(self._fold(entry))
        self._dropped_peak = None
        if len(self._kept) > self._max:
            self._halve()

    def _halve(self) -> None:
        """Keep every other point; each dropped one's peak goes to the point after it."""
        kept, out = self._kept, []
        for i in range(0, len(kept), 2):
            entry = kept[i]
            if i and (peak := kept[i - 1][1]) is not None and (entry[1] is None or peak > entry[1]):
                entry = (entry[0], peak, entry[2], entry[3])
            out.append(entry)
        if len(kept) % 2 == 0 and (peak := kept[-1][1]) is not None:
            self._dropped_peak = peak  # the last one dropped: its peak goes to the next kept point
        self._kept = out
        self._stride *= 2

    def add_trim(self, released_mb: float) -> None:
        """A ``udfmem.trim`` line (MiB it released): later points start a new segment."""
        self.trims += 1
        self.released_mb += released_mb
        last = self._tail if self._tail is not None else (self._kept[-1] if self._kept else None)
        if last is not None:
            self.recent_trims.append((last[0], released_mb))

    @property
    def trim_calls(self) -> list[int]:
        """The call each of the recent trims followed (the latest ``MAX_POINTS`` trims)."""
        return [call for call, _ in self.recent_trims]

    def add_setup(self, fields: Mapping[str, Any]) -> None:
        """A ``udfmem.setup`` line: the memory that is neither malloc's nor Arrow's after setup."""
        p = point({**fields, "call": 0})
        if p is not None and p.rss is not None and p.heap is not None:
            self.setup_gap = p.rss - p.heap - (p.arrow or 0.0)

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
