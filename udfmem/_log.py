"""Event emission: udfmem's own structlog pipeline, its renderers and its sinks.

udfmem never calls ``structlog.configure`` and never touches :mod:`logging`: each UDF
gets a logger from ``structlog.wrap_logger`` with udfmem's processors, whose last step
is a small renderer (structlog's own cost 8-20 µs a line; this one costs a few).
Lines go to the worker's stderr (logfmt, or JSON with ``UDFMEM_LOG_FORMAT=json``) and,
with ``UDFMEM_LOG_DIR``, also to one JSON-lines file per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

HEAD = ("event", "udf", "pid", "host", "worker", "ts")
_HEAD_SET = frozenset(HEAD)
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+-]+\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+|inf|nan)\Z", re.IGNORECASE)

#: In-process observers of every event dict (used by ``udfmem demo``). Never raise into them.
listeners: list[Callable[[dict[str, Any]], None]] = []

_host: str | None = None


def host() -> str:
    """This machine's host name (cached)."""
    global _host
    if _host is None:
        try:
            _host = socket.gethostname() or "unknown"
        except OSError:
            _host = "unknown"
    return _host


_ts_cache: tuple[int, str] = (-1, "")


def worker_tag(host_name: str, pid: int) -> str:
    """Eight lowercase letters naming this process (no digits, unlike ``pid``).

    Ray's driver merges log lines of different workers that are equal once every word
    containing a digit is dropped; this word survives that and differs per worker, so
    each worker's snapshot lines reach the driver console.
    """
    digest = hashlib.blake2b(f"{host_name}:{pid}".encode(), digest_size=8).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest)


def iso_ts(t: float) -> str:
    """UTC ISO-8601 time with milliseconds, e.g. ``2026-11-22T21:30:00.123Z``."""
    global _ts_cache
    second = int(t)
    cached_second, prefix = _ts_cache
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _ts_cache = (second, prefix)
    return f"{prefix}.{int((t - second) * 1000):03d}Z"


_quoted: dict[str, str] = {}


def _logfmt_str(text: str) -> str:
    """``text`` as a logfmt value: bare when unambiguous, else a JSON string (cached)."""
    out = _quoted.get(text)
    if out is None:
        plain = _PLAIN.match(text) and not _NUMBER.match(text) and text not in ("true", "false")
        out = text if plain else json.dumps(text)
        if len(_quoted) < 4096:
            _quoted[text] = out
    return out


def _logfmt_value(value: object) -> str:
    kind = type(value)
    if kind is float or kind is int:
        return repr(value)
    if kind is str:
        return _logfmt_str(value)  # type: ignore[arg-type]
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _logfmt_str(str(value))


_heads: dict[tuple[Any, ...], str] = {}


def _logfmt_head(event_dict: MutableMapping[str, Any]) -> str:
    """The rendered ``event= udf= pid= host= worker=`` prefix; repeats per UDF, so it is cached."""
    get = event_dict.get
    key = (get("event"), get("udf"), get("pid"), get("host"), get("worker"))
    head = _heads.get(key)
    if head is None:
        head = " ".join(f"{k}={_logfmt_value(v)}" for k, v in zip(HEAD[:5], key, strict=True) if v is not None)
        if len(_heads) < 1024:
            _heads[key] = head
    return head


def render_logfmt(event_dict: MutableMapping[str, Any]) -> str:
    """``key=value`` pairs, head fields first, ``None`` left out; strings quoted where needed."""
    parts = [_logfmt_head(event_dict)]
    if "ts" in event_dict:
        parts.append(f"ts={_logfmt_value(event_dict['ts'])}")
    append = parts.append
    for key, value in event_dict.items():
        kind = type(value)
        if kind is float or kind is int:
            if key != "pid":
                append(f"{key}={value!r}")
        elif value is not None and key not in _HEAD_SET:
            append(f"{key}={_logfmt_value(value)}")
    return " ".join(parts)


def render_json(event_dict: MutableMapping[str, Any]) -> str:
    """One JSON object, head fields first, ``None`` fields left out."""
    ordered = {key: event_dict[key] for key in HEAD if key in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if v is not None and k not in _HEAD_SET)
    return json.dumps(ordered, separators=(",", ":"), default=str)


class Sink:
    """The logger structlog wraps: writes a rendered line to stderr, and JSON to a file."""

    def __init__(self, log_dir: str | None) -> None:
        self.log_dir = log_dir
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _file(self) -> int | None:
        if self.log_dir is None:
            return None
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    os.makedirs(self.log_dir, exist_ok=True)
                    path = os.path.join(self.log_dir, f"udfmem-{host()}-{pid}.jsonl")
                    self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    self._pid = pid
        return self._fd

    def msg(self, line: str, jsonl: str | None = None) -> None:
        """Write one event. Errors are swallowed: telemetry never raises into the UDF."""
        try:
            stream = sys.stderr
            if stream is not None:
                stream.write(line + "\n")
                if not getattr(stream, "line_buffering", False):
                    stream.flush()
        except (OSError, ValueError):
            pass
        if jsonl is not None:
            try:
                fd = self._file()
                if fd is not None:
                    os.write(fd, (jsonl + "\n").encode())
            except OSError:
                pass

    info = warning = msg


_sinks: dict[str | None, Sink] = {}


def _stamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add ``ts`` and show the event to in-process listeners, if any."""
    event_dict["ts"] = iso_ts(time.time())
    if listeners:
        for listener in list(listeners):
            with contextlib.suppress(Exception):
                listener(dict(event_dict))
    return event_dict


def _final(json_lines: bool, to_file: bool) -> Callable[[Any, str, MutableMapping[str, Any]], dict[str, Any]]:
    def render(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        line = render_json(event_dict) if json_lines else render_logfmt(event_dict)
        jsonl = (line if json_lines else render_json(event_dict)) if to_file else None
        return {"line": line, "jsonl": jsonl}

    return render


class EventLogger(structlog.BoundLoggerBase):
    """udfmem's bound logger: every event goes straight through its processors to the sink.

    No level filtering (udfmem's events are never debug noise), no stdlib logging, and
    one dict per event instead of structlog's usual copies: a snapshot stays cheap.
    """

    def _emit(self, method: str, event: str, kw: dict[str, Any]) -> None:
        event_dict: Any = self._context.copy()
        event_dict.update(kw)
        event_dict["event"] = event
        for processor in self._processors:
            event_dict = processor(self._logger, method, event_dict)
        self._logger.msg(**event_dict)

    def info(self, event: str, **kw: Any) -> None:
        """Emit ``event`` with ``kw`` as fields."""
        self._emit("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        """Emit a warning-level event (udfmem's warnings are ``udfmem.warning`` events)."""
        self._emit("warning", event, kw)


def make_logger(udf: str, log_format: str = "logfmt", log_dir: str | None = None) -> EventLogger:
    """A structlog logger bound to ``udf``, this pid and host, with udfmem's own pipeline."""
    sink = _sinks.get(log_dir)
    if sink is None:
        sink = _sinks.setdefault(log_dir, Sink(log_dir))
    proxy = structlog.wrap_logger(
        sink,
        processors=[_stamp, _final(log_format == "json", log_dir is not None)],
        wrapper_class=EventLogger,
        context_class=dict,
        udf=udf,
        pid=os.getpid(),
        host=host(),
        worker=worker_tag(host(), os.getpid()),
    )
    logger: EventLogger = proxy.bind()  # resolve the lazy proxy once
    return logger


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(logger: Any, what: str, message: str, once_key: str | None = None, **fields: Any) -> None:
    """Emit one ``udfmem.warning`` per (process, ``once_key`` or ``what``); never raises."""
    token = (str(os.getpid()), once_key or what)
    with _warned_lock:
        if token in _warned:
            return
        _warned.add(token)
    with contextlib.suppress(Exception):
        logger.warning("udfmem.warning", what=what, message=message, **fields)
