"""The emitter: each event is built once, rendered once per format, and handed to the sinks.

Events go through udfmem's own structlog pipeline: a ``structlog.BoundLoggerBase`` bound
to the head fields (``udf``, ``pid``, ``host``, ``worker``) whose processors stamp the
time and end in a precompiled per-event-type renderer (``_render``). udfmem never calls
``structlog.configure`` and never touches :mod:`logging`. The event dict holds the typed
event itself, not a copy of its fields: no per-event dict churn.

:func:`capture` lets tests and ``udfmem demo`` observe events in-process.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import structlog

from .._text import MAX_ECHO, MAX_LINE, capped, capped_id
from ..events import render as _render
from ..events import schema as _events
from .sinks import Sink
from .sinks.jsonl import JsonlSink
from .sinks.metrics import MetricsSink
from .sinks.stderr import StderrSink
from .sinks.structlog_sink import StructlogSink

MAX_MESSAGE = 1000
"""Characters of an event's text field (a warning's message, a path) before it is cut with a marker."""

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


def _show(head: dict[str, Any], ts: str, event: _events.Event) -> None:
    """Hand the event's fields to the in-process hooks (only while some :func:`capture` runs)."""
    fields = {**head, "event": event.EVENT, "ts": ts, **_events.to_fields(event)}
    for hook in _hooks:
        with contextlib.suppress(Exception):
            hook(dict(fields))


class _TemplateRenderer:
    """The pipeline's processor: stamp the time, show hooks, render each needed format from its template.

    Returns the line itself when the sinks need one format (the common case), else one
    line per format; the time's per-second prefix is cached.
    """

    def __init__(self, formats: tuple[str, ...], head: dict[str, Any]) -> None:
        self.head = head
        # per event type: (template, its head) per format; the structlog format's head is the dict itself
        self._templates: dict[type[Any], list[tuple[Callable[[Any, str, Any], Any], Any]]] = {
            cls: [
                (_fields, head) if fmt == "structlog" else (_typed, None) if fmt == "event" else (
                    _render.TEMPLATES[cls, fmt],
                    _render.head(fmt, cls.EVENT, head["udf"], head["pid"], head["host"], head["worker"]),
                )
                for fmt in formats
            ]
            for cls in _events.TYPES
        }  # fmt: skip
        self._ts_cache = (-1, "")  # (second, its rendered prefix): one tuple, so threads never mix two

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
        event: _events.Event = event_dict["udfmem"]
        if type(event) is not _events.Snapshot:  # a snapshot has no text but the (capped) head's
            event = _cut(event, MAX_MESSAGE)  # a message, a path: they may echo outside values
        t = time.time()
        second = int(t)
        cached, prefix = self._ts_cache
        if second != cached:
            prefix = _render.ts_prefix(second)
            self._ts_cache = (second, prefix)
        ts = f"{prefix}.{int((t - second) * 1000):03d}Z"
        if _hooks:
            _show(self.head, ts, event)
        pairs = self._templates[type(event)]
        if len(pairs) == 1:
            template, head = pairs[0]
            return _fit(template, head, ts, event)
        return [_fit(template, head, ts, event) for template, head in pairs]  # one per format, by index


def _cut(event: _events.Event, limit: int) -> _events.Event:
    """``event`` with each text field longer than ``limit`` characters cut to it, with a marker."""
    if not any(type(v) is str and len(v) > limit for v in event):
        return event
    values: list[Any] = [capped(v, limit) if type(v) is str else v for v in event]
    kind: Callable[..., _events.Event] = type(event)
    return kind(*values)


def _fit(template: Callable[[Any, str, Any], Any], head: Any, ts: str, event: _events.Event) -> Any:
    """The rendered ``event``; a line longer than :data:`MAX_LINE` again with its text fields cut shorter.

    A line at most ``PIPE_BUF`` long is written atomically: workers sharing a stderr pipe
    never tear each other's lines. The head is bounded (the name is capped), so cutting the
    event's own text fields (to 200, 100, 50, 25 characters) always fits: ~25 bytes a call.
    """
    out = template(head, ts, event)
    limit = MAX_ECHO
    while type(out) is str and len(out) > MAX_LINE and limit >= 25:
        event = _cut(event, limit)
        out = template(head, ts, event)
        limit //= 2
    return out


def _fields(head: dict[str, Any], _: str, event: _events.Event) -> dict[str, Any]:
    """The "template" of the structlog format: the head and the event's flat fields, as a dict."""
    return {**head, "event": event.EVENT, **_events.to_fields(event), "schema": _events.SCHEMA_VERSION}


def _typed(_: Any, __: str, event: _events.Event) -> _events.Event:
    """The "template" of the event format (the metrics sink): the typed event itself."""
    return event


class _Fanout:
    """The object structlog wraps: gives each sink the line in its format."""

    def __init__(self, sinks: list[Sink], formats: tuple[str, ...]) -> None:
        self.routes = [(sink, formats.index(sink.format)) for sink in sinks]
        if len(formats) == 1:
            self.msg = sinks[0].write if len(sinks) == 1 else self._same  # type: ignore[method-assign,assignment]

    def _same(self, line: str) -> None:
        for sink, _ in self.routes:
            sink.write(line)

    def msg(self, lines: list[Any]) -> None:
        """Write the rendered lines, each sink the one in its format."""
        for sink, i in self.routes:
            sink.write(lines[i])


class EventLogger(structlog.BoundLoggerBase):
    """udfmem's structlog logger: :meth:`emit` runs one typed event through the processors.

    The event dict carries the typed event, not a copy of its fields; the bound context
    (the head fields) is rendered once per event type when the pipeline is built.
    """

    def emit(self, event: _events.Event) -> None:
        """Process and write ``event``. Never raises: telemetry must not reach the UDF."""
        try:
            rendered: Any = {"udfmem": event}
            for processor in self._processors:
                rendered = processor(self._logger, "info", rendered)
            self._logger.msg(rendered)
        except Exception:  # telemetry never raises into the UDF
            pass


_jsonl_sinks: dict[str, JsonlSink] = {}


class Emitter:
    """The events of one UDF in one process, to stderr (and ``log_dir``). Never raises."""

    #: Write one event to every sink (the pipeline's own ``emit``, bound: one call less per event).
    emit: Callable[[_events.Event], None]

    #: The metrics sink (``UDFMEM_METRICS``), if switched on and an exporter loaded.
    metrics: MetricsSink | None = None

    def __init__(
        self, udf: str, log_format: str = "logfmt", log_dir: str | None = None, metrics: tuple[str, ...] = ()
    ) -> None:
        self.udf = udf = capped_id(udf)  # capped at decoration; also a name from settings pickled elsewhere
        pid = os.getpid()
        worker = worker_tag(host(), pid)
        head = {"udf": udf, "pid": pid, "host": host(), "worker": worker}
        sinks: list[Sink] = [StructlogSink() if log_format == "structlog" else StderrSink(log_format)]
        if log_dir is not None:
            sink = _jsonl_sinks.get(log_dir)
            if sink is None:
                sink = _jsonl_sinks.setdefault(log_dir, JsonlSink(log_dir, host(), self._sink_failed))
            sinks.append(sink)
        gauges = MetricsSink(metrics, udf, host(), worker, _warner(self)) if metrics else None
        if gauges is not None and gauges.exporting:
            sinks.append(gauges)
            self.metrics = gauges
        formats = tuple(dict.fromkeys(s.format for s in sinks))
        logger = structlog.wrap_logger(
            _Fanout(sinks, formats),
            processors=[_TemplateRenderer(formats, head)],
            wrapper_class=EventLogger,
            context_class=dict,
            udf=udf,
            pid=pid,
            host=head["host"],
            worker=head["worker"],
        )
        self._logger: EventLogger = logger.bind()  # resolve the lazy proxy once
        self.emit = self._logger.emit  # write an event to every sink; never raises
        for what, message in gauges.problems if gauges is not None else ():  # once per process and message
            self.warn_once(what, message, once_key=f"{what}:{message}", var="UDFMEM_METRICS")

    def _sink_failed(self, sink: str, exc: OSError) -> None:
        """A sink gave up (it stays off in this process): say so, once, on the others."""
        message = f"cannot write {capped(sink)}: {capped(str(exc))}; its lines are dropped"
        self.warn_once("log-dir-failed", message, var="UDFMEM_LOG_DIR")

    def warn_once(self, what: str, message: str, once_key: str | None = None, var: str | None = None) -> None:
        """Emit one ``udfmem.warning`` per (process, ``once_key`` or ``what``), whichever UDF meets it first.

        At most :data:`MAX_WARNINGS` distinct ones per process (then one saying so); like every
        event's text, the message is cut at :data:`MAX_MESSAGE` characters (it may echo a path
        or an exception).
        """
        first = _first_time(once_key or what)
        if first:
            self.emit(_events.Warning(what=what, message=message, var=var))
        elif first is None:
            message = f"{MAX_WARNINGS} distinct warnings in this process; further ones are dropped"
            self.emit(_events.Warning(what=_CAPPED, message=message))


def _warner(emitter: Emitter) -> Callable[[str, str], None]:
    """``emitter.warn_once`` for the metrics sink, held weakly (the emitter holds the sink)."""
    method = weakref.WeakMethod(emitter.warn_once)

    def warn(what: str, message: str) -> None:
        bound = method()
        if bound is not None:
            bound(what, message, var="UDFMEM_METRICS")

    return warn


MAX_WARNINGS = 1000
"""Distinct warnings one process emits; the next says that further ones are dropped (a flood, not news)."""
_CAPPED = "warnings-capped"
_warned: set[tuple[int, str]] = set()  # (pid, once key): at most MAX_WARNINGS + 1 entries
_warned_lock = threading.Lock()


def _first_time(key: str) -> bool | None:
    """True the first time ``key`` is met in this process, False after; None once the cap is reached."""
    token = (os.getpid(), capped_id(key))  # a key embeds echoed values: never keep them whole
    with _warned_lock:
        if token in _warned:
            return False
        if len(_warned) >= MAX_WARNINGS:
            capped_token = (token[0], _CAPPED)
            if capped_token in _warned:
                return False
            _warned.add(capped_token)
            return None
        _warned.add(token)
        return True


DEFAULTS_KEPT = 64
"""Default emitters kept beyond those the live states hold (the most recently asked for)."""
_default: collections.OrderedDict[tuple[int, str, str, str | None], Emitter] = collections.OrderedDict()
_default_lock = threading.Lock()


def default(udf: str = "udfmem", log_format: str = "logfmt", log_dir: str | None = None) -> Emitter:
    """A shared emitter for events before a UDF is bound (or of none: ``worker_env``), one per process and target.

    The :data:`DEFAULTS_KEPT` most recently asked for are kept; a state holds its own until
    it binds, so a process defining thousands of uniquely named UDFs does not keep theirs.
    """
    key = (os.getpid(), udf, log_format, log_dir)
    with _default_lock:
        emitter = _default.get(key)
        if emitter is not None:
            _default.move_to_end(key)
            return emitter
    emitter = Emitter(udf, log_format, log_dir)  # outside the lock: it may warn, which may ask for a default
    with _default_lock:
        emitter = _default.setdefault(key, emitter)
        _default.move_to_end(key)
        while len(_default) > DEFAULTS_KEPT:
            _default.popitem(last=False)
    return emitter


def _after_fork_in_child() -> None:
    global _hooks_lock, _warned_lock, _default_lock
    _hooks_lock = threading.Lock()
    _warned_lock = threading.Lock()
    _default_lock = threading.Lock()
    _warned.clear()  # the parent's keys (its pid) count against nothing here
    for sink in _jsonl_sinks.values():
        sink.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
