"""Reading worker logs as they come off a cluster: files, directories, ``.gz``, stdin.

udfmem's lines are found anywhere in a line, after any prefix (Ray's driver console,
Ray's worker files, Daft's worker tags, ``kubectl logs --timestamps``), in logfmt or
JSON, among any other output. The fast path costs one ``bytes.find`` for a foreign line
and a ``str.split`` for a logfmt event without quoted values; anything else goes through
the general parser (``_render.parse_line``). Lines that are not udfmem events of this
schema — other output, truncated lines, binary garbage, other schema versions — are
counted, never fatal. Memory stays bounded by the per-worker series
(:class:`udfmem.analysis.series.Series` decimates), never by the log's size.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO

from . import _events, _render
from .analysis.series import Series, point

MARKER = b"udfmem."
MAX_LINE = 64 * 1024  # a longer "line" (binary garbage, a huge foreign line) is read in pieces and skipped
WorkerKey = tuple[str, int, str, str]
"""(host, pid, worker tag, udf): one series."""


class LogError(Exception):
    """A path that cannot be read (the command exits 2 with this one line)."""


def find_logs(paths: Iterable[str]) -> list[str]:
    """The files named by ``paths``: files as given, directories walked (regular files, sorted), ``-`` for stdin."""
    found: list[str] = []
    for path in paths:
        if path == "-":
            found.append(path)
        elif os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found += sorted(os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n)))
        elif os.path.exists(path):
            if not os.path.isfile(path):
                raise LogError(f"cannot read {path}: not a regular file")
            found.append(path)
        else:
            raise LogError(f"cannot read {path}: no such file or directory")
    return found


def _open(path: str) -> BinaryIO:
    """``path`` for reading bytes; a gzip file (by its magic bytes, whatever its name) decompressed."""
    if path == "-":
        return sys.stdin.buffer
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if f.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


def _fast_logfmt(line: str) -> dict[str, str] | None:
    """The ``key=value`` pairs from ``event=udfmem.`` on, when no value is quoted; else None."""
    start = line.find("event=udfmem.")
    if start < 0 or '"' in line[start:]:
        return None
    fields: dict[str, str] = {}
    for pair in line[start:].split():
        key, sep, value = pair.partition("=")
        if not sep:
            return None  # not logfmt after all (a truncated line glued to text)
        fields[key] = value
    return fields


_INTS = ("call", "pid", "py_blocks", "schema", "window_calls")
_NUMS = (
    "rss_mb",
    "rss_anon_mb",
    "peak_rss_mb",
    "heap_in_use_mb",
    "heap_free_mb",
    "heap_mmap_mb",
    "arrow_live_mb",
    "limit_mb",
    "headroom_mb",
    "released_mb",
)


def _typed(fields: dict[str, str]) -> dict[str, Any]:
    """The fast path's strings as the numbers and flags analysis reads (ValueError if malformed)."""
    out: dict[str, Any] = dict(fields)
    for name in _INTS:
        if name in fields:
            out[name] = int(fields[name])
    for name in _NUMS:
        if name in fields:
            out[name] = float(fields[name])
    if "final" in fields:
        out["final"] = fields["final"] == "true"
    return out


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

    @property
    def skipped(self) -> int:
        """Lines that were not events: other output, unreadable and other-schema lines."""
        return self.read - self.events

    def feed(self, raw: bytes) -> None:
        """One line (bytes, with or without its newline)."""
        self.read += 1
        if MARKER not in raw:
            return
        line = raw.decode("utf-8", "replace")
        fields: dict[str, Any] | None
        try:
            fast = _fast_logfmt(line)
            fields = _typed(fast) if fast is not None else _render.parse_line(line)
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
                series = self.series[key] = Series()
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
                series = self.series[key] = Series()
            series.add_setup(fields)
        return True

    def feed_path(self, path: str) -> None:
        """Every line of ``path`` (``-``: stdin; gzip detected by its magic bytes). Raises :class:`LogError`.

        A compressed file that ends early (still being written, cut off) is read up to
        where it ends and noted in :attr:`cut`.
        """
        try:
            f = _open(path)
        except OSError as exc:
            raise LogError(f"cannot read {path}: {exc.strerror or exc}") from None
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
        except OSError as exc:
            raise LogError(f"cannot read {path}: {exc.strerror or exc}") from None
        finally:
            if f is not sys.stdin.buffer:
                f.close()


def read_logs(paths: Iterable[str], udf: str | None = None) -> LogReader:
    """Read every log under ``paths`` (see :func:`find_logs`); raises :class:`LogError`."""
    reader = LogReader(udf)
    for path in find_logs(paths):
        reader.feed_path(path)
    return reader
