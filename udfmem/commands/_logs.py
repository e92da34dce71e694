"""Reading worker logs as they come off a cluster: files, directories, ``.gz``, stdin.

udfmem's lines are found anywhere in a line, after any prefix (Ray's driver console,
Ray's worker files, Daft's worker tags, ``kubectl logs --timestamps``), in logfmt or
JSON, among any other output. A foreign line costs one ``bytes.find``; a snapshot line
as udfmem writes it is matched whole by one pattern, and its figures read only if its series keeps it;
anything else goes through the general parser (:func:`udfmem.events.parse.parse_line`). Lines that are not
udfmem events of this schema — other output, truncated lines, binary garbage, other schema versions — are
counted, never fatal. Memory stays bounded by the per-worker series
(:class:`udfmem.analysis.series.Series` decimates), never by the log's size.

The same line may come twice: a directory holding a worker's own file and the driver console,
where Ray repeats it behind ``(MapWorker pid=..., ip=...)``, or a log passed twice. Each
event counts once per worker: a snapshot by its call (the series replaces a repeated call),
a trim by its time stamp (one within the span of the trims of that worker that an input
held was read there: :meth:`LogReader._new_trim`), a setup's figures replace the same ones,
and of the ``udfmem.suspect`` events the latest by time stamp is the online detector's last
word (:attr:`LogReader.online`).

A snapshot whose peak is the process's lifetime peak (``peak_is_lifetime``: the kernel's peak
could not be reset, as on macOS) is read without its peak, by every path: the series never
judges nor folds it as a window's (:func:`udfmem.events.point.window_peak`), and marks that it
met one (:attr:`~udfmem.analysis.series.Series.lifetime_peaks`). The fields a worker could not
read, which its first setup event (or a ``udfmem.warning`` named ``not-read``) says once, are
kept on its series (:attr:`~udfmem.analysis.series.Series.not_read`).
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import sys
import zlib
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from ..analysis.diagnosis import NOT_READ, Online
from ..analysis.series import MAX_COUNT, MAX_MIB, TENTHS_MAX, TENTHS_NONE, Parse, Point, Series
from ..events import parse as _parse
from ..events import point as _point
from ..events import schema as _events
from ._files import LogError, find_logs, open_input

MARKER = b"udfmem."
MAX_LINE = 64 * 1024  # a longer "line" (binary garbage, a huge foreign line) is read in pieces and skipped
WorkerKey = tuple[str, int, str, str]
"""(host, pid, worker tag, udf): one series."""


_SCHEMA = str(_events.SCHEMA_VERSION).encode()
_NUMBER = (  # as events.parse reads
    rb"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?(?:inf|nan)|-?Infinity|NaN"
)
_IS_NUMBER = re.compile(_NUMBER)
_IS_INT = re.compile(rb"[-+]?[0-9]+")
_PAIR = re.compile(rb'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\S*)')  # events.parse's logfmt
_JSON_PAIR = re.compile(rb'"([A-Za-z_][A-Za-z0-9_]*)"\s*:\s*("[^"\\]*"|[^\s,}]+)')  # a flat object, no escapes
_FLAG = re.compile(rb"(?<=\s)final(?=\s|$)")
_LIFETIME_FLAG = re.compile(rb"(?<=\s)peak_is_lifetime(?=\s|$)")  # structlog's LogfmtRenderer: a bare true flag
_LIFETIME_KEY = _point.LIFETIME.encode()
_LOGFMT_EVENT = re.compile(rb"""(?<![A-Za-z0-9_])event=["']?udfmem\.snapshot""")
_ODD = re.compile(rb"[=:] ?[-+]?(?:Infinity|NaN|inf|nan)(?=[\s,}]|$)|[0-9][eE]\+[0-9]{2}")  # see _odd
IDENTITIES = 4096
"""Snapshot identities (heads) of other UDFs than the one asked for that the reader remembers, and the
workers of those UDFs it counts (:attr:`LogReader.other_udfs`: beyond, a count is a lower bound)."""
_SKIP: Any = object()
MAX_NOTICE = 1024
"""The characters of a worker's ``not_read`` notice kept (a forged line's huge value must not grow memory)."""
_TRUE = (b"true", b"True", b"'True'", b'"True"')


def _odd(raw: bytes, end: int) -> bool:
    """Whether a figure after ``end`` may be infinite, NaN or huge as Python writes it (``inf``, ``nan``, ``e+NN``).

    Such a line is parsed whole at once, so that it is skipped whether or not the series
    would keep it; a cheap screen (a few ``find``), then the exact pattern.
    """
    find = raw.find
    i = find(b"nf", end)
    while i >= 0 and raw[i + 2 : i + 3] == b"o":  # "info" (a level) is no figure
        i = find(b"nf", i + 3)
    if i < 0 and find(b"nan", end) < 0 and find(b"e+", end) < 0 and find(b"E+", end) < 0 and find(b"NaN", end) < 0:
        return False
    return _ODD.search(raw, end) is not None


def _int(raw: bytes | None) -> int | None:
    return int(raw) if raw is not None and _IS_INT.fullmatch(raw) else None


def _float(raw: bytes | None) -> float | None:
    """A number as the general parser reads it (``inf``, ``nan``; no ``_``, no ``infinity``), else None."""
    if raw is None or b"_" in raw:
        return None
    try:
        x = float(raw)
    except ValueError:
        return None
    return x if x - x == 0 or _IS_NUMBER.fullmatch(raw) else None  # x - x: NaN for inf and NaN


def _flag(raw: bytes | None) -> bool:
    return raw in _TRUE


def _lifetime_logfmt(raw: bytes, end: int) -> bool:
    """Whether a logfmt snapshot line says ``peak_is_lifetime`` after ``end`` (true, or structlog's bare flag)."""
    at = raw.find(b" peak_is_lifetime", end)
    if at < 0:
        return False
    at += 17
    if raw[at : at + 1] != b"=":
        return _LIFETIME_FLAG.search(raw, end) is not None
    stop = raw.find(b" ", at)
    return _flag(raw[at + 1 : stop if stop >= 0 else len(raw)].rstrip(b"\r\n"))


_KEYS = tuple(name.encode() for name in _point.NAMES)


def _point_of(pairs: dict[bytes, bytes], segment: int, peak: float | None) -> Point | None:
    """A snapshot's point from its raw pairs (as the general parser would read them), its peak at least ``peak``.

    A lifetime peak (``peak_is_lifetime``) is left out of it.
    """
    get = pairs.get
    return _point.of_raw([get(key) for key in _KEYS], _float, _int, _flag, segment, peak, _flag(get(_LIFETIME_KEY)))


def _pairs(raw: bytes) -> dict[bytes, bytes] | None:
    """The raw pairs of a snapshot line in any key order, logfmt or flat JSON; None if it needs the general parser.

    logfmt is read on both sides of ``event=`` (the side after it wins), as
    :func:`udfmem.events.parse.parse_line` reads it.
    JSON is read here only when flat and without escapes (nothing nested could shadow a name).
    """
    match = _LOGFMT_EVENT.search(raw)
    if match is not None:
        start = match.start()
        pairs = {**dict(_PAIR.findall(raw, 0, start)), **dict(_PAIR.findall(raw, start))}
        if b"final" not in pairs and _FLAG.search(raw) is not None:
            pairs[b"final"] = b"true"  # structlog's LogfmtRenderer writes a true flag as its bare name
        if _LIFETIME_KEY not in pairs and _LIFETIME_FLAG.search(raw) is not None:
            pairs[_LIFETIME_KEY] = b"true"
        return pairs
    start = raw.find(b"{")
    if start < 0 or raw.find(b"{", start + 1) >= 0 or raw.find(b"[", start) >= 0 or raw.find(b"\\", start) >= 0:
        return None
    end = raw.find(b"}", start)
    if end < 0:
        return None  # truncated
    pairs = dict(_JSON_PAIR.findall(raw, start, end + 1))
    if pairs.get(b"event") != b'"udfmem.snapshot"':
        return None
    return pairs


def _parse_line(raw: bytes, segment: int, peak: float | None) -> Point | None:
    """Parse a kept snapshot line (any layout :func:`_pairs` reads)."""
    pairs = _pairs(raw)
    return None if pairs is None else _point_of(pairs, segment, peak)


_GROUPS: tuple[str, ...] = tuple(
    s.name for s in _events.FIELDS[_events.Snapshot] if s.point is not None or s.name == _point.LIFETIME
)
"""The figures of a point that :func:`_row_pattern` captures, and the lifetime flag, in the renderer's order
(which :func:`_row` reads)."""


def _row_pattern(fmt: str) -> re.Pattern[bytes]:
    """A snapshot's fields from ``ts`` to its end as udfmem's renderer writes them, its point's figures captured.

    Captured sizes are tenths (one decimal, at most 8 digits before it: within a 32-bit row)
    and block counts at most 8 digits; any other line (more decimals, ``inf``, ``null``,
    another order, an extra or repeated key) does not match and is read by its pairs.
    """
    json = fmt == "json"
    parts = [r',"ts":"[^"\\]*+"' if json else r" ts=\S*+"]
    for name, kind, required, *_ in _events.FIELDS[_events.Snapshot]:
        key = re.escape(f',"{name}":' if json else f" {name}=")
        if name == "call":
            value = "(?P<call>[0-9]{1,16})"
        elif name in _GROUPS:
            value = (
                f"(?P<{name}>"
                + ("true|false" if kind is bool else "[0-9]{1,8}" if kind is int else r"-?[0-9]{1,8}\.[0-9]")
                + ")"
            )
        elif kind is str:
            value = r'"[^"\\]*+"' if json else r"[^\s\"']*+"
        else:
            value = r'[^\s,}"]++' if json else r"[^\s\"']++"
        parts.append(key + value if required else f"(?:{key}{value})?")
    schema = re.escape(',"schema":' if json else " schema=") + str(_events.SCHEMA_VERSION)
    parts.append(f"(?:{schema})?")  # none: version 1
    return re.compile(("".join(parts) + ("}" if json else "") + r"[\r\n]*").encode())


_OWN_LOGFMT, _OWN_JSON = _row_pattern("logfmt"), _row_pattern("json")
_WHOLE = tuple(_OWN_LOGFMT.groupindex) == tuple(_OWN_JSON.groupindex) == _GROUPS
"""Whether the renderer's order is the one :func:`_row` reads (else every line is read by its pairs)."""
_NONE = str(TENTHS_NONE).encode()
_CALL, _PEAK, _LIFETIME = (_GROUPS.index(name) + 1 for name in ("call", "peak_rss_mb", _point.LIFETIME))
_FIGURES = [s for s in _events.POINT_FIELDS[1:] if s.kind is not bool]  # in line order: tenths, counts
_FIGURE_GROUPS = itemgetter(*(_GROUPS.index(s.name) for s in _FIGURES))
_IN_POINT_ORDER = itemgetter(*(_FIGURES.index(s) for s in _point.SPECS[1:] if s in _FIGURES))
_FIGURE_NAMES = [s.name for s in _point.SPECS[1:] if s in _FIGURES]  # the row's figures, in Point order
_COUNTS = [i for i, name in enumerate(_FIGURE_NAMES) if _point.SPECS[_point.NAMES.index(name)].kind is int]
_PRIVATE_AT, _RSS_AT, _PEAK_AT = (_FIGURE_NAMES.index(n) for n in ("rss_anon_mb", "rss_mb", "peak_rss_mb"))
_FLAG_GROUP, _LIFETIME_GROUP = _GROUPS.index("final"), _LIFETIME - 1
_SEGMENT_AT, _FINAL_AT = _point.SEGMENT - 1, _point.NAMES.index("final")  # in a row (no call)


def _row(match: re.Match[bytes], segment: int, peak: float | None) -> list[int] | None:
    """A matched own-layout line's point as a row of tenths (see :data:`Parse`); None if ``peak`` is no tenth."""
    groups = match.groups(_NONE)  # _GROUPS, in order
    figures = list(map(int, b" ".join(_FIGURE_GROUPS(groups)).replace(b".", b"").split()))
    row = list(_IN_POINT_ORDER(figures))
    for i in _COUNTS:
        if row[i] != TENTHS_NONE:
            row[i] *= 10
    if row[_PRIVATE_AT] == TENTHS_NONE:
        row[_PRIVATE_AT] = row[_RSS_AT]
    if groups[_LIFETIME_GROUP] == b"true":
        row[_PEAK_AT] = TENTHS_NONE  # a lifetime peak: no window's (point.window_peak)
    if peak is not None:
        folded = round(peak * 10)
        if folded / 10 != peak or not -TENTHS_MAX <= folded <= TENTHS_MAX:
            return None
        if folded > row[_PEAK_AT]:
            row[_PEAK_AT] = folded
    row.insert(_SEGMENT_AT, segment * 10)
    row.insert(_FINAL_AT, 10 if groups[_FLAG_GROUP] == b"true" else 0)
    return row


def _matched(match: re.Match[bytes], segment: int, peak: float | None) -> Point | list[int] | None:
    """Parse a kept line that ``match`` read whole: its row, or its pairs when the peak folded in is no tenth."""
    row = _row(match, segment, peak) if segment < 2**27 else None
    if row is not None:
        return row
    return (_parse_own_json if match.re is _OWN_JSON else _parse_own_logfmt)(match.string, segment, peak)


def _parse_own_logfmt(raw: bytes, segment: int, peak: float | None) -> Point | None:
    """Parse a kept snapshot line in udfmem's own logfmt layout (its fields after ``ts``, no quotes there)."""
    end = raw.find(b" ts=", raw.find(MARKER))
    return _point_of(dict(_PAIR.findall(raw, end)), segment, peak)


def _parse_own_json(raw: bytes, segment: int, peak: float | None) -> Point | None:
    """Parse a kept snapshot line in udfmem's own JSON layout (its fields after ``ts``, flat, no escapes there)."""
    end = raw.find(b',"ts":', raw.find(MARKER))
    return _point_of(dict(_JSON_PAIR.findall(raw, end)), segment, peak)


def _parse_general(raw: bytes, segment: int, peak: float | None) -> Point | None:
    """Parse a kept snapshot line with the general parser."""
    fields = _parse.parse_line(raw.decode("utf-8", "replace"))
    return None if fields is None else _point.of_fields(_with_flag(fields, raw), segment, peak)


def _with_flag(fields: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """``fields`` with structlog's bare ``peak_is_lifetime`` flag read (the general parser reads only ``final``'s)."""
    if _point.LIFETIME not in fields and _LIFETIME_FLAG.search(raw) is not None:
        fields[_point.LIFETIME] = True
    return fields


class LogReader:
    """Feeds lines into per-worker series and counts what it read, kept and skipped.

    Memory is the series' (each bounded, see :class:`~udfmem.analysis.series.Series`) and
    one cache entry per series' identity; identities of other UDFs than asked for are
    remembered up to :data:`IDENTITIES`; what could not be read is never remembered.
    """

    def __init__(self, udf: str | None = None) -> None:
        self.udf = udf  # only this UDF's series, when given
        self.series: dict[WorkerKey, Series] = {}
        self.read = 0  # lines read
        self.events = 0  # udfmem events of this schema
        self.other_schema = 0  # udfmem lines of another schema version
        self.unreadable = 0  # lines that mention udfmem but could not be parsed (truncated, garbage, absurd figures)
        self.cut: list[str] = []  # compressed files that ended early
        self._heads: dict[Any, Any] = {}  # a snapshot's identity (its head's bytes) -> its series or _SKIP
        self._skips = 0  # identities of other UDFs in _heads
        self.online: dict[WorkerKey, Online] = {}  # the online detector's last word per worker (udfmem.suspect)
        self._said: dict[WorkerKey, tuple[str, str]] = {}  # time stamps of the last word and of the latest growing
        self._trims: dict[WorkerKey, dict[int, list[str]]] = {}  # per worker, per input: its trims' first, last ts
        self._input = 0  # the input being read (feed_path counts them): lines fed directly are input 0
        self._others: dict[str, set[tuple[str, int, str]]] = {}  # other UDFs than asked: their workers
        self._other_workers = 0

    @property
    def cached_identities(self) -> int:
        """Identities the reader remembers: one per series (per layout it came in), plus other UDFs' up to a cap."""
        return len(self._heads)

    @property
    def other_udfs(self) -> dict[str, int]:
        """The UDFs with snapshots that ``udf`` left out, each with its workers (host, pid, tag) seen."""
        return {udf: len(workers) for udf, workers in self._others.items()}

    def _other(self, udf: str, host: str, pid: int, worker: str) -> None:
        """Count a worker of a UDF that was not asked for (up to :data:`IDENTITIES` workers in all)."""
        workers = self._others.get(udf)
        if workers is None:
            if self._other_workers >= IDENTITIES:
                return
            workers = self._others[udf] = set()
        identity = (host, pid, worker)
        if identity not in workers and self._other_workers < IDENTITIES:
            workers.add(identity)
            self._other_workers += 1

    @property
    def skipped(self) -> int:
        """Lines that were not events: other output, unreadable and other-schema lines."""
        return self.read - self.events

    def feed(self, raw: bytes) -> None:
        """One line (bytes, with or without its newline)."""
        self.read += 1
        at = raw.find(MARKER)
        if at < 0:
            return
        if raw.startswith(b"snapshot", at + 7):
            done = self._snapshot(raw, at)
            if done is None:
                done = self._snapshot_any(raw)
            if done is not None:
                if done:
                    self.events += 1
                else:
                    self.unreadable += 1
                return
        line = raw.decode("utf-8", "replace")
        try:  # setups, trims, warnings, suspects and odd snapshots: rare enough for the general parser
            fields = _parse.parse_line(line)
        except (ValueError, OverflowError, RecursionError):
            fields = None
        if fields is None:
            self.unreadable += 1
            return
        if fields.get("schema", 1) != _events.SCHEMA_VERSION:
            self.other_schema += 1
            return
        if not self._keep(_with_flag(fields, raw)):
            self.unreadable += 1
            return
        self.events += 1

    def _snapshot(self, raw: bytes, at: int) -> bool | None:
        """The fast path of a snapshot in udfmem's own layout: True (an event), False (unreadable), None (not this).

        ``at`` is where ``udfmem.snapshot`` starts. The head (``event udf pid host worker``,
        up to ``ts``) is parsed once per worker and cached. A line exactly as udfmem's
        renderer writes it is matched whole (:func:`_row_pattern`, no odd-figure screen).
        Else only ``call``, ``peak_rss_mb``
        and ``schema`` are read here, by name, in logfmt (`` name=value``) or JSON
        (``,"name":value``); the series parses the rest only if it keeps the snapshot. A
        line without ``schema`` is version 1; extra fields may come anywhere after ``ts``.
        A quote after the head (logfmt) or an escape (JSON) leaves the line to a general path.
        A lifetime peak (``peak_is_lifetime``, read by name only where a peak is) is handed as unknown.
        """
        if raw[at - 6 : at] == b"event=":
            start, sep = at - 6, b" "
            end = raw.find(b" ts=", at)
            match = _OWN_LOGFMT.fullmatch(raw, end) if end >= 0 and _WHOLE else None
            if match is not None:
                return self._whole(raw[start:end], match)
            i, k, p = raw.find(b" call=", end), raw.rfind(b" schema="), raw.find(b" peak_rss_mb=", end)
            i, k, p = i + 6, k + 8 if k >= 0 else -1, p + 13 if p >= 0 else -1
            lifetime = p >= 0 and _lifetime_logfmt(raw, end)
            if raw.find(b'"', end) >= 0 or raw.find(b"'", end) >= 0:
                return None
        elif raw[at - 10 : at] == b'{"event":"':
            start, sep = at - 10, b","
            end = raw.find(b',"ts":', at)
            match = _OWN_JSON.fullmatch(raw, end) if end >= 0 and _WHOLE else None
            if match is not None:
                return self._whole(raw[start:end], match)
            i, k, p = raw.find(b',"call":', end), raw.rfind(b',"schema":'), raw.find(b',"peak_rss_mb":', end)
            i, k, p = i + 8, k + 10 if k >= 0 else -1, p + 15 if p >= 0 else -1
            lifetime = p >= 0 and raw.find(b',"peak_is_lifetime":true', end) >= 0  # JSON: only true is True
            if raw.find(b"\\", end) >= 0 or raw.find(b"{", end) >= 0 or raw.find(b"[", end) >= 0:
                return None
        else:
            return None
        if end < 0 or i <= end:  # no ts or call: another path decides
            return None
        if k > end:
            j = raw.find(sep, k)
            if (raw[k:j] if j >= 0 else raw[k:].rstrip(b"}\r\n")) != _SCHEMA:
                return None  # another schema (the general path counts it)
        head = raw[start:end]
        target = self._heads.get(head)
        if target is None:
            target = self._target(head, self._head_fields(head))
            if target is None:
                return None
        try:
            j = raw.find(sep, i)
            call = int(raw[i:j] if j >= 0 else raw[i:].rstrip(b"}\r\n"))
            j = raw.find(sep, p)
            peak = None if p < 0 else float(raw[p:j] if j >= 0 else raw[p:].rstrip(b"}\r\n"))
        except ValueError:
            return None
        if lifetime:
            if peak is not None and not -MAX_MIB <= peak <= MAX_MIB:
                return False  # an absurd figure is skipped, lifetime or not
            self._lifetime(target)
            peak = None
        return self._add(target, call, peak, raw, end, _parse_own_logfmt if sep == b" " else _parse_own_json)

    def _whole(self, head: bytes, match: re.Match[bytes]) -> bool | None:
        """A snapshot line exactly as udfmem's renderer writes it (``match``: from ``ts`` to its end).

        Its point's figures are all tenths or counts (the pattern takes nothing else), so no
        screen for odd figures is needed; the series reads its row from the match if it keeps it.
        """
        target = self._heads.get(head)
        if target is None:
            target = self._target(head, self._head_fields(head))
            if target is None:
                return None
        call, peak, lifetime = match.group(_CALL, _PEAK, _LIFETIME)
        call = int(call)
        if call > MAX_COUNT:
            return False
        if target is _SKIP:
            return True
        if lifetime == b"true":
            self._lifetime(target)
            peak = None
        return bool(target.add_line(call, None if peak is None else float(peak), match, target.segment, _matched))

    @staticmethod
    def _lifetime(target: Any) -> None:
        """A snapshot of ``target`` (a series, or ``_SKIP``) carries a lifetime peak: mark the series."""
        if target is not _SKIP:
            target.lifetime_peaks = True

    def _add(self, target: Any, call: int, peak: float | None, raw: bytes, end: int, parse: Parse) -> bool:
        """Hand a snapshot to its series (an odd-looking line is parsed and checked whole first)."""
        if not 0 <= call <= MAX_COUNT or (peak is not None and not -MAX_MIB <= peak <= MAX_MIB):
            return False
        if _odd(raw, end) and _parse_line(raw, 0, None) is None:
            return False  # an infinite, NaN or absurd figure: the whole line is skipped
        if target is _SKIP:
            return True
        return bool(target.add_line(call, peak, raw, target.segment, parse))

    def _snapshot_any(self, raw: bytes) -> bool | None:
        """A snapshot line in another layout (key order, extra keys, structlog's renderers); None: the general path."""
        pairs = _pairs(raw)
        if pairs is None:
            return None
        get = pairs.get
        schema = get(b"schema")
        if schema is not None and schema != _SCHEMA:
            return None
        identity = (get(b"event"), get(b"udf"), get(b"pid"), get(b"host"), get(b"worker"))
        target = self._heads.get(identity)
        if target is None:
            fields = {}
            try:
                for name, value in zip(("event", "udf", "pid", "host", "worker"), identity, strict=True):
                    if value is not None:
                        fields[name] = _parse.value(value.decode("utf-8", "replace"))
            except ValueError:  # a truncated quoted value
                return None
            if fields.get("event") != "udfmem.snapshot":
                return None
            target = self._target(identity, fields)
            if target is None:
                return None
        call = _int(get(b"call"))
        if call is None:
            return None
        raw_peak = get(b"peak_rss_mb")
        peak = _float(raw_peak)
        if raw_peak is not None and peak is None:
            return None  # a peak the general parser reads as text: it decides
        if peak is not None and _flag(get(_LIFETIME_KEY)):
            if not -MAX_MIB <= peak <= MAX_MIB:
                return False
            self._lifetime(target)
            peak = None
        return self._add(target, call, peak, raw, 0, _parse_line)

    @staticmethod
    def _head_fields(head: bytes) -> dict[str, Any] | None:
        text = head.decode("utf-8", "replace")
        try:
            return _parse.parse_line(text + ("}" if text.startswith("{") else ""))
        except (ValueError, RecursionError):
            return None

    def _target(self, identity: Any, fields: dict[str, Any] | None) -> Any:
        """The series of a snapshot identity (remembered); ``_SKIP`` for another UDF than asked; None if unreadable."""
        if fields is None:
            return None
        udf, pid = fields.get("udf"), fields.get("pid")
        if not isinstance(udf, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return None  # never remembered: distinct garbage must not grow memory
        host, worker = str(fields.get("host", "")), str(fields.get("worker", ""))
        if self.udf is not None and udf != self.udf:
            if self._skips < IDENTITIES:
                self._skips += 1
                self._heads[identity] = _SKIP
            self._other(udf, host, pid, worker)
            return _SKIP
        key = (host, pid, worker, udf)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(parse=_parse_general)
        self._heads[identity] = series
        return series

    def _keep(self, fields: dict[str, Any]) -> bool:
        """Add a parsed event to its worker's series; False when it is malformed or its figures are absurd."""
        event, udf, pid = fields.get("event"), fields.get("udf"), fields.get("pid")
        if not isinstance(udf, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return False
        if event not in _events.BY_NAME:
            return False
        wanted = self.udf is None or udf == self.udf
        key = (str(fields.get("host", "")), pid, str(fields.get("worker", "")), udf)
        series = self.series.get(key)
        if event == "udfmem.snapshot":
            call = fields.get("call")
            if not isinstance(call, int) or isinstance(call, bool):
                return False
            p = _point.of_fields(fields, series.segment if series is not None else 0)
            if p is None:
                return False
            if not wanted:
                self._other(udf, key[0], pid, key[2])
                return True
            if series is None:
                series = self.series[key] = Series(parse=_parse_general)
            if fields.get("peak_rss_mb") is not None and _point.says_lifetime(fields):
                self._lifetime(series)
            series.add(p)
            return True
        if event == "udfmem.trim":
            released = fields.get("released_mb", 0.0)
            if isinstance(released, int | float) and not isinstance(released, bool):
                if not -MAX_MIB <= released <= MAX_MIB:
                    return False
                if wanted and self._new_trim(key, fields):
                    if series is None:  # a log that starts with a trim (a piece of a rotated log)
                        series = self.series[key] = Series(parse=_parse_general)
                    series.add_trim(float(released))
        elif event == "udfmem.setup":
            setup = _point.of_fields({**fields, "call": 0})
            if setup is None:
                return False
            if wanted:
                if series is None:
                    series = self.series[key] = Series(parse=_parse_general)
                series.add_setup(setup)
                self._not_read(series, fields.get("not_read"))
        elif event == "udfmem.warning" and wanted and fields.get("what") == NOT_READ:
            if series is None:  # said before the first snapshot
                series = self.series[key] = Series(parse=_parse_general)
            self._not_read(series, fields.get("message"))
        elif event == "udfmem.suspect" and wanted:
            self._suspect(key, fields)
        return True

    @staticmethod
    def _not_read(series: Series, notice: Any) -> None:
        """Keep the fields a worker said it cannot read (its first setup event's ``not_read``, or the warning's)."""
        if isinstance(notice, str) and notice:
            series.not_read = notice[:MAX_NOTICE]

    def _new_trim(self, key: WorkerKey, fields: dict[str, Any]) -> bool:
        """Whether this trim of worker ``key`` was not read before (one without a time stamp always counts).

        A worker's lines in one input come in time order, and an input that holds a worker's
        lines holds all of them between its first and its last (its own file, the driver console,
        a log cut in pieces by rotation; Ray's console keeps every worker's lines apart, see
        :func:`udfmem.emit.emitter.worker_tag`). So a trim was read before when its time stamp
        falls within the first and the last trim of that worker read from any input, this one
        included (the same log twice on stdin): two trims of a worker in one millisecond count
        once. Memory: two time stamps per worker and input, never one per trim.
        """
        ts = fields.get("ts")
        if not isinstance(ts, str):
            return True
        spans = self._trims.get(key)
        if spans is None:
            self._trims[key] = {self._input: [ts, ts]}
            return True
        for first, last in spans.values():
            if first <= ts <= last:
                return False
        span = spans.get(self._input)
        if span is None:
            spans[self._input] = [ts, ts]
        elif ts > span[1]:
            span[1] = ts
        else:
            span[0] = ts  # before this input's first (a clock stepped back): it is read, and its span widens
        return True

    def _suspect(self, key: WorkerKey, fields: dict[str, Any]) -> None:
        """Keep a ``udfmem.suspect`` event if it is worker ``key``'s latest (by time stamp; else the one read last).

        Its ``growing``, when it has one, is kept as the latest ``growing`` (a later event
        without one, such as ``pattern=healthy``, leaves it).
        """
        pattern, since = fields.get("pattern"), fields.get("since_call")
        if not isinstance(pattern, str) or not isinstance(since, int) or isinstance(since, bool):
            return
        slope, ctl, growing = fields.get("slope_mb_per_100_calls"), fields.get("calls_to_limit"), fields.get("growing")
        slope = float(slope) if isinstance(slope, int | float) and not isinstance(slope, bool) else None
        ctl = ctl if isinstance(ctl, int) and not isinstance(ctl, bool) else None
        growing = str(growing) if growing is not None and growing != "" else None
        ts = fields.get("ts")
        ts = ts if isinstance(ts, str) else ""
        said = self.online.get(key)
        last_at, growing_at = self._said.get(key, ("", ""))
        if said is None or ts >= last_at:
            word = Online(pattern, since, slope if slope is None or abs(slope) <= MAX_MIB else None, ctl)
            if said is not None:
                word = dataclasses.replace(word, growing=said.growing, growing_since_call=said.growing_since_call)
            said, last_at = word, ts
        if growing is not None and ts >= growing_at:
            said, growing_at = dataclasses.replace(said, growing=growing, growing_since_call=since), ts
        self.online[key] = said
        self._said[key] = (last_at, growing_at)

    def feed_path(self, path: str) -> None:
        """Every line of ``path`` (``-``: stdin; gzip detected by its magic bytes). Raises :class:`LogError`.

        A compressed file that ends early (still being written, cut off) is read up to
        where it ends and noted in :attr:`cut`.
        """
        f = open_input(path)  # raises LogError
        self._input += 1
        readline, feed = f.readline, self.feed
        long = False  # inside a line longer than MAX_LINE
        try:
            while raw := readline(MAX_LINE):
                if long or (len(raw) == MAX_LINE and raw[-1:] != b"\n"):
                    if not long:
                        self.read += 1  # counted once, skipped whole
                    long = raw[-1:] != b"\n"
                    continue
                feed(raw)
        except (EOFError, gzip.BadGzipFile, zlib.error):
            self.cut.append(path)
        except OSError as exc:  # what was read before stays read
            raise LogError.of(path, exc) from None
        finally:
            if f is not sys.stdin.buffer:
                f.close()


def read_logs(paths: Iterable[str], udf: str | None = None, unreadable: list[LogError] | None = None) -> LogReader:
    """Read every readable log under ``paths`` (see :func:`find_logs`).

    Each input that cannot be read (and each non-log a directory held, as a note) is
    appended to ``unreadable`` and the others are read; without that list the first
    input that cannot be read raises :class:`LogError`.
    """
    reader = LogReader(udf)
    files, problems = find_logs(paths)
    for problem in problems:
        if unreadable is not None:
            unreadable.append(problem)
        elif not problem.note:
            raise problem
    for path in files:
        try:
            reader.feed_path(path)
        except LogError as exc:
            if unreadable is None:
                raise
            unreadable.append(exc)
    return reader
