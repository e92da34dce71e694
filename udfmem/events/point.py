"""A snapshot as analysis's :class:`~udfmem.analysis.series.Point`: from a parsed line, raw pairs or the event.

Which snapshot field fills which figure of a point is written once, in the schema (each
:class:`~udfmem.events.schema.Field`'s ``point``); this module reads that list. The one
rules not in it: where a line has no private RSS (``rss_anon_mb``), RSS stands in for it; and a
line whose peak is the process's lifetime peak (``peak_is_lifetime``: the kernel's peak could not
be reset, as on macOS) has no window peak: its point's ``peak`` is unknown (None), never that
lifetime peak, which would be judged as one window's transient (:func:`window_peak`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..analysis.series import Point, sane
from . import schema

_BY_POINT = {str(s.point): s for s in schema.POINT_FIELDS}
if set(Point._fields) != {*_BY_POINT, "segment"}:  # pragma: no cover - a schema edit that forgot the Point
    raise TypeError(f"the schema's point fields {sorted(_BY_POINT)} do not fill Point{Point._fields}")
#: The snapshot fields a point reads, in :class:`Point`'s order (``segment`` is the reader's, not the line's).
SPECS: tuple[schema.Spec, ...] = tuple(_BY_POINT[name] for name in Point._fields if name != "segment")
NAMES: tuple[str, ...] = tuple(s.name for s in SPECS)
"""The field names of :data:`SPECS` (``call`` first)."""
SEGMENT = Point._fields.index("segment")
_PRIVATE, _RSS, _PEAK, _FINAL = (NAMES.index(_BY_POINT[n].name) for n in ("private", "rss", "peak", "final"))
LIFETIME = "peak_is_lifetime"
"""The snapshot field that says its peak is the process's lifetime peak, not the window's."""
if LIFETIME not in schema.Memory._fields:  # pragma: no cover - a schema edit that renamed it
    raise TypeError(f"the schema has no {LIFETIME} field")
_LIFETIME_AT = schema.Memory._fields.index(LIFETIME)


def window_peak(peak: float | None, lifetime: bool | None) -> float | None:
    """A line's ``peak_rss_mb`` as a window peak: None (unknown) when it is the lifetime peak.

    A lifetime peak is the highest RSS since the process started (the setup's, the first
    calls'): it says nothing of the window before the snapshot, so it is neither judged
    nor folded into another point's peak. Readers hand a series this, never the raw figure.
    """
    return None if lifetime else peak


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _flag(value: Any) -> bool:
    return value is True or value == "True"  # structlog's KeyValueRenderer writes Python's repr


def says_lifetime(fields: Mapping[str, Any]) -> bool:
    """Whether a parsed line's fields say its peak is the lifetime peak (``peak_is_lifetime``)."""
    return _flag(fields.get(LIFETIME))


def _build(values: list[Any], segment: int, peak: float | None, lifetime: bool = False) -> Point | None:
    """The point of ``values`` (Point order without ``segment``), its peak at least ``peak``; None if not sane.

    ``lifetime``: the line's own peak is the lifetime peak, left out (``peak`` is still folded in:
    what readers fold is other lines' window peaks, see :func:`window_peak`).
    """
    if values[_PRIVATE] is None:
        values[_PRIVATE] = values[_RSS]
    if lifetime:
        values[_PEAK] = None
    own = values[_PEAK]
    if peak is not None and (own is None or peak > own):
        values[_PEAK] = peak
    values.insert(SEGMENT, segment)
    p = Point(*values)
    return p if sane(p) else None


def of_fields(fields: Mapping[str, Any], segment: int = 0, peak: float | None = None) -> Point | None:
    """A point from a parsed line's fields (:func:`udfmem.events.parse.parse_line`).

    None without an integer ``call`` or when a figure is not :func:`~udfmem.analysis.series.sane`;
    a field of the wrong type counts as unknown; a lifetime peak (``peak_is_lifetime``) too.
    """
    get = fields.get
    return of_raw([get(name) for name in NAMES], _number, _count, _flag, segment, peak, says_lifetime(fields))


def of_raw(
    values: Sequence[Any],
    number: Callable[[Any], float | None],
    count: Callable[[Any], int | None],
    flag: Callable[[Any], bool],
    segment: int,
    peak: float | None,
    lifetime: bool = False,
) -> Point | None:
    """A point from raw values in :data:`NAMES` order (e.g. a line's unparsed bytes), read by the converters.

    None without a ``call`` ``count`` reads, or when a figure is not sane; its peak is at least ``peak``.
    ``lifetime``: the line says ``peak_is_lifetime`` (its own peak is left out).
    """
    call = count(values[0])
    if call is None:
        return None
    convert = {float: number, int: count, bool: flag}
    row = [call, *(convert[s.kind](v) for s, v in zip(SPECS[1:], values[1:], strict=True))]
    return _build(row, segment, peak, lifetime)


_FROM_EVENT = tuple((s.memory, s.at) for s in SPECS)


def of_snapshot(event: schema.Snapshot, segment: int, peak: float | None = None) -> Point | None:
    """The point of a typed ``udfmem.snapshot`` event (the online detector's), its peak at least ``peak``.

    Built as a parsed line's is (:func:`_build`): the same point for the same snapshot, online or offline
    (a lifetime peak left out).
    """
    memory = event.memory
    values: list[Any] = [memory[i] if in_memory else event[i] for in_memory, i in _FROM_EVENT]
    values[_FINAL] = bool(values[_FINAL])
    return _build(values, segment, peak, memory[_LIFETIME_AT] is True)
