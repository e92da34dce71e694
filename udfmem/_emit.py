"""The emitter: each event is built once, rendered once per format, and handed to the sinks.

Events go through udfmem's own structlog pipeline: a ``structlog.BoundLoggerBase`` bound
to the head fields (``udf``, ``pid``, ``host``, ``worker``) whose processors stamp the
time and end in a precompiled per-event-type renderer (``_render``). udfmem never calls
``structlog.configure`` and never touches :mod:`logging`. The event dict holds the typed
event itself, not a copy of its fields: no per-event dict churn.

:func:`capture` lets tests and ``udfmem demo`` observe events in-process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import structlog

from . import _events, _render
from .sinks import Sink
from .sinks.jsonl import JsonlSink
from .sinks.stderr import StderrSink

Hook = Callable[[dict[str, Any]], None]
_hooks: tuple[Hook, ...] = ()
_hooks_lock = threading.Lock()
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


def worker_tag(host_name: str, pid: int) -> str:
    """Eight lowercase letters naming this process (no digits, unlike ``pid``).

    Ray's driver merges log lines of different workers that are equal once every word
    containing a digit is dropped; this word survives that and differs per worker, so
    each worker's snapshot lines reach the driver console.
    """
    digest = hashlib.blake2b(f"{host_name}:{pid}".encode(), digest_size=8).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest)


@contextlib.contextmanager
def capture() -> Iterator[list[dict[str, Any]]]:
    """Collect every event emitted in this process while the block runs.

    Yields a list that receives each event as the flat field dict a parser of its line
    would return (head fields, ``ts``, the event's own fields). Safe to nest and to use
    from several threads.
    """
    events: list[dict[str, Any]] = []
    global _hooks
    with _hooks_lock:
        _hooks = (*_hooks, events.append)
    try:
        yield events
    finally:
        with _hooks_lock:
            _hooks = tuple(h for h in _hooks if h != events.append)


def _stamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: add ``ts`` and show the event to in-process hooks."""
    ts = event_dict["ts"] = _render.iso_ts(time.time())
    if _hooks:
        event: _events.Event = event_dict["udfmem"]
        fields = {**event_dict["head"], "event": event.EVENT, "ts": ts, **_events.to_fields(event)}
        for hook in _hooks:
            with contextlib.suppress(Exception):
                hook(dict(fields))
    return event_dict


class _TemplateRenderer:
    """Last processor: the event's line in each format the sinks need, from precompiled templates."""

    def __init__(self, formats: tuple[str, ...], head: dict[str, Any]) -> None:
        self.formats = formats
        self._heads = {
            (name, fmt): _render.head(fmt, name, head["udf"], head["pid"], head["host"], head["worker"])
            for name in _events.BY_NAME
            for fmt in formats
        }

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        event: _events.Event = event_dict["udfmem"]
        ts: str = event_dict["ts"]
        return {
            "lines": {
                fmt: _render.TEMPLATES[type(event), fmt](self._heads[event.EVENT, fmt], ts, event)
                for fmt in self.formats
            }
        }


class _Fanout:
    """The object structlog wraps: gives each sink the line in its format."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def msg(self, lines: dict[str, str]) -> None:
        """Write the rendered lines."""
        for sink in self.sinks:
            sink.write(lines[sink.format])


class EventLogger(structlog.BoundLoggerBase):
    """udfmem's structlog logger: :meth:`emit` runs one typed event through the processors."""

    def emit(self, event: _events.Event) -> None:
        """Process and write ``event``."""
        event_dict: Any = {"event": event.EVENT, "udfmem": event, "head": self._context}
        for processor in self._processors:
            event_dict = processor(self._logger, "info", event_dict)
        self._logger.msg(**event_dict)


_jsonl_sinks: dict[str, JsonlSink] = {}


class Emitter:
    """The events of one UDF in one process, to stderr (and ``log_dir``). Never raises."""

    def __init__(self, udf: str, log_format: str = "logfmt", log_dir: str | None = None) -> None:
        self.udf = udf
        pid = os.getpid()
        head = {"udf": udf, "pid": pid, "host": host(), "worker": worker_tag(host(), pid)}
        sinks: list[Sink] = [StderrSink(log_format)]
        if log_dir is not None:
            sink = _jsonl_sinks.get(log_dir)
            if sink is None:
                sink = _jsonl_sinks.setdefault(log_dir, JsonlSink(log_dir, host()))
            sinks.append(sink)
        formats = tuple(dict.fromkeys(s.format for s in sinks))
        logger = structlog.wrap_logger(
            _Fanout(sinks),
            processors=[_stamp, _TemplateRenderer(formats, head)],
            wrapper_class=EventLogger,
            context_class=dict,
            udf=udf,
            pid=pid,
            host=head["host"],
            worker=head["worker"],
        )
        self._logger: EventLogger = logger.bind()  # resolve the lazy proxy once
        self._warned: set[str] = set()

    def emit(self, event: _events.Event) -> None:
        """Write ``event`` to every sink. Never raises."""
        with contextlib.suppress(Exception):
            self._logger.emit(event)

    def warn_once(self, what: str, message: str, once_key: str | None = None, var: str | None = None) -> None:
        """Emit one ``udfmem.warning`` per (process, ``once_key`` or ``what``)."""
        if _first_time(once_key or what):
            self.emit(_events.Warning(what=what, message=message, var=var))


_warned: set[tuple[int, str]] = set()
_warned_lock = threading.Lock()


def _first_time(key: str) -> bool:
    token = (os.getpid(), key)
    with _warned_lock:
        if token in _warned:
            return False
        _warned.add(token)
        return True


_default: dict[int, Emitter] = {}


def default() -> Emitter:
    """An emitter named ``udfmem`` for warnings that belong to no UDF (e.g. ``worker_env``)."""
    pid = os.getpid()
    emitter = _default.get(pid)
    if emitter is None:
        emitter = _default.setdefault(pid, Emitter("udfmem"))
    return emitter
