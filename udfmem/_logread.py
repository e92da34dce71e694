"""Reading worker logs as they come off a cluster: files, directories, ``.gz``, stdin.

udfmem's lines are found anywhere in a line, after any prefix (Ray's driver console,
Ray's worker files, Daft's worker tags, ``kubectl logs --timestamps``), in logfmt or
JSON, among any other output. A foreign line costs one ``bytes.find``; a snapshot line
as udfmem writes it is read by its call, peak and schema only (the fast path, below);
anything else goes through the general parser (``_render.parse_line``). Lines that are not udfmem events of this
schema — other output, truncated lines, binary garbage, other schema versions — are
counted, never fatal. Memory stays bounded by the per-worker series
(:class:`udfmem.analysis.series.Series` decimates), never by the log's size.
"""

from __future__ import annotations

import gzip
import re
import sys
import zlib
from collections.abc import Iterable
from typing import Any

from . import _events, _render
from ._inputs import LogError, find_logs, open_input
from .analysis.series import Point, Series, point

MARKER = b"udfmem."
MAX_LINE = 64 * 1024  # a longer "line" (binary garbage, a huge foreign line) is read in pieces and skipped
WorkerKey = tuple[str, int, str, str]
"""(host, pid, worker tag, udf): one series."""


_SCHEMA = str(_events.SCHEMA_VERSION).encode()
_FIELD = re.compile(
    rb'[ ,{]"?(call|rss_mb|rss_anon_mb|peak_rss_mb|heap_in_use_mb|heap_free_mb|arrow_live_mb|py_blocks|'
    rb'limit_mb|headroom_mb|final|schema)"?[=:]([-+.0-9eE]+|true|false)'
)
_UNSEEN: Any = object()
_SKIP: Any = object()


def _snapshot_point(raw: bytes, end: int, segment: int, peak: float | None = None) -> Point | None:
    """The point of a complete snapshot line whose head ends at ``end``; None if it is not one.

    Its window peak is at least ``peak`` (the peaks of snapshots dropped before it).
    """
    values = dict(_FIELD.findall(raw, end))
    get = values.get
    if get(b"schema") != _SCHEMA or b"call" not in values:
        return None
    try:
        own = None if (v := get(b"peak_rss_mb")) is None else float(v)
        total = None if (v := get(b"rss_mb")) is None else float(v)
        anon = get(b"rss_anon_mb")
        return Point(
            int(values[b"call"]),
            total if anon is None else float(anon),
            total,
            own if peak is None or (own is not None and own >= peak) else peak,
            None if (v := get(b"heap_in_use_mb")) is None else float(v),
            None if (v := get(b"heap_free_mb")) is None else float(v),
            None if (v := get(b"arrow_live_mb")) is None else float(v),
            None if (v := get(b"py_blocks")) is None else int(v),
            None if (v := get(b"limit_mb")) is None else float(v),
            None if (v := get(b"headroom_mb")) is None else float(v),
            segment,
            get(b"final") == b"true",
        )
    except ValueError:  # a malformed number
        return None


def _parse_kept(raw: bytes, segment: int, peak: float | None) -> Point | None:
    """Parse a snapshot line the series kept (its head was read by the fast path)."""
    end = raw.find(b" ts=")
    if end < 0:
        end = raw.find(b',"ts":')
    return None if end < 0 else _snapshot_point(raw, end, segment, peak)


class LogReader:
    """Feeds lines into per-worker series and counts what it read, kept and skipped."""

    def __init__(self, udf: str | None = None) -> None:
        self.udf = udf  # only this UDF's series, when given
        self.series: dict[WorkerKey, Series] = {}
        self.read = 0  # lines read
        self.events = 0  # udfmem events of this schema
        self.other_schema = 0  # udfmem lines of another schema version
        self.unreadable = 0  # lines that mention udfmem but could not be parsed (truncated, garbage)
        self.cut: list[str] = []  # compressed files that ended early
        self._heads: dict[bytes, Any] = {}  # a snapshot head -> its series (the fast path)

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
        if raw.startswith(b"snapshot", at + 7) and self._snapshot(raw, at):
            return
        line = raw.decode("utf-8", "replace")
        try:  # setups, trims, warnings, suspects and odd snapshots: rare enough for the general parser
            fields = _render.parse_line(line)
        except (ValueError, OverflowError):
            fields = None
        if fields is None:
            self.unreadable += 1
            return
        if fields.get("schema", 1) != _events.SCHEMA_VERSION:
            self.other_schema += 1
            return
        if not self._keep(fields):
            self.unreadable += 1
            return
        self.events += 1

    def _snapshot(self, raw: bytes, at: int) -> bool:
        """The fast path of a complete snapshot line as udfmem writes it; False leaves it to the general parser.

        ``at`` is where ``udfmem.snapshot`` starts. The head (``event udf pid host worker``,
        up to ``ts``) is parsed once per worker and cached; only ``call``, ``peak_rss_mb``
        and ``schema`` are read here, by name, in logfmt (`` name=value``) or JSON
        (``,"name":value``); the line is handed to the series, which parses the rest only
        if it keeps the snapshot. A line without its closing ``schema`` field (truncated)
        takes the general path, and so does JSON whose keys udfmem did not order.
        """
        if raw[at - 6 : at] == b"event=":
            start, sep = at - 6, b" "
            end = raw.find(b" ts=", at)
            i, k, p = raw.find(b" call=", end), raw.rfind(b" schema="), raw.find(b" peak_rss_mb=", end)
            i, k, p = i + 6, k + 8, p + 13 if p >= 0 else -1
        elif raw[at - 10 : at] == b'{"event":"':
            start, sep = at - 10, b","
            end = raw.find(b',"ts":', at)
            i, k, p = raw.find(b',"call":', end), raw.rfind(b',"schema":'), raw.find(b',"peak_rss_mb":', end)
            i, k, p = i + 8, k + 10, p + 15 if p >= 0 else -1
        else:
            return False
        if end < 0 or i <= end or k <= end:  # no ts, call or schema: the general path decides
            return False
        j = raw.find(sep, k)
        if (raw[k:j] if j >= 0 else raw[k:].rstrip(b"}\r\n")) != _SCHEMA:
            return False  # another schema (the general path counts it)
        head = raw[start:end]
        target = self._heads.get(head, _UNSEEN)
        if target is _UNSEEN:
            target = self._heads[head] = self._target(head)
        if target is None:
            return False
        try:
            j = raw.find(sep, i)
            call = int(raw[i:j] if j >= 0 else raw[i:].rstrip(b"}\r\n"))
            j = raw.find(sep, p)
            peak = None if p < 0 else float(raw[p:j] if j >= 0 else raw[p:].rstrip(b"}\r\n"))
        except ValueError:
            return False
        self.events += 1
        if target is not _SKIP:
            target.add_line(call, peak, raw, target.segment)
        return True

    def _target(self, head: bytes) -> Any:
        """The series a snapshot head belongs to; ``_SKIP`` for another UDF than asked; None if unreadable."""
        text = head.decode("utf-8", "replace")
        fields = _render.parse_line(text + ("}" if text.startswith("{") else ""))
        if fields is None:
            return None
        udf, pid = fields.get("udf"), fields.get("pid")
        if not isinstance(udf, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return None
        if self.udf is not None and udf != self.udf:
            return _SKIP
        key = (str(fields.get("host", "")), pid, str(fields.get("worker", "")), udf)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(parse=_parse_kept)
        return series

    def _keep(self, fields: dict[str, Any]) -> bool:
        """Add a parsed event to its worker's series; False when it is malformed."""
        event, udf, pid = fields.get("event"), fields.get("udf"), fields.get("pid")
        if not isinstance(udf, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return False
        if event not in _events.BY_NAME:
            return False
        if self.udf is not None and udf != self.udf:
            return True  # an event, just not asked for
        key = (str(fields.get("host", "")), pid, str(fields.get("worker", "")), udf)
        series = self.series.get(key)
        if event == "udfmem.snapshot":
            if series is None:
                series = self.series[key] = Series(parse=_parse_kept)
            p = point(fields, series.segment)
            if p is None:
                return False
            series.add(p)
        elif event == "udfmem.trim":
            released = fields.get("released_mb", 0.0)
            if series is not None and isinstance(released, int | float):
                series.add_trim(float(released))
        elif event == "udfmem.setup":
            if series is None:
                series = self.series[key] = Series(parse=_parse_kept)
            series.add_setup(fields)
        return True

    def feed_path(self, path: str) -> None:
        """Every line of ``path`` (``-``: stdin; gzip detected by its magic bytes). Raises :class:`LogError`.

        A compressed file that ends early (still being written, cut off) is read up to
        where it ends and noted in :attr:`cut`.
        """
        f = open_input(path)  # raises LogError
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
