"""From a typed event to the written lines: stamp the time, render once per format, hand each sink its own.

:func:`writer` returns the emitter's ``emit``: one closure, no call in between. For the
usual single line sink (stderr, logfmt or JSON) it stamps the time, renders the line with
the event type's template from the typed event and the head rendered once, and writes it;
with more sinks (the JSON-lines file, the metrics sink's typed events) it renders once per
format and hands each sink its own. No dict of the event's fields is made (unless a
:func:`~udfmem.emit.capture.capture` runs). With ``UDFMEM_LOG_FORMAT=structlog`` events run through udfmem's
own structlog pipeline instead (a ``structlog.BoundLoggerBase`` bound to the head fields,
whose one processor renders), ending in the user's configured structlog logger. udfmem
never calls ``structlog.configure`` and never touches :mod:`logging`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import structlog

from .._text import MAX_ECHO, MAX_LINE, capped
from ..events import render as _render
from ..events import schema as _events
from . import capture as _capture
from .sinks import Sink

MAX_MESSAGE = 1000
"""Characters of an event's text field (a warning's message, a path) before it is cut with a marker."""

Template = Callable[[Any, str, Any], Any]
Emit = Callable[[_events.Event], None]


class Stamp:
    """The time of an event as its ``ts`` text (UTC, milliseconds); the per-second prefix is cached."""

    def __init__(self) -> None:
        self._cache = (-1, "")  # (second, its rendered prefix): one tuple, so threads never mix two

    def __call__(self) -> str:
        """Now, as ``2026-05-04T10:11:12.345Z``."""
        t = time.time()
        second = int(t)
        cached, prefix = self._cache
        if second != cached:
            prefix = _render.ts_prefix(second)
            self._cache = (second, prefix)
        return f"{prefix}.{int((t - second) * 1000):03d}Z"


def _fields(head: dict[str, Any], _: str, event: _events.Event) -> dict[str, Any]:
    """The "template" of the structlog format: the head and the event's flat fields, as a dict."""
    return {**head, "event": event.EVENT, **_events.to_fields(event), "schema": _events.SCHEMA_VERSION}


def _typed(_: Any, __: str, event: _events.Event) -> _events.Event:
    """The "template" of the typed format (the metrics sink): the event itself."""
    return event


def templates(fmt: str, head: dict[str, Any]) -> dict[type[Any], tuple[Template, Any]]:
    """Per event type: the template of format ``fmt`` and the head it takes (rendered once, here)."""
    if fmt == "structlog":
        return {cls: (_fields, head) for cls in _events.TYPES}
    if fmt == "typed":
        return {cls: (_typed, None) for cls in _events.TYPES}
    udf, pid, host, worker = head["udf"], head["pid"], head["host"], head["worker"]
    return {
        cls: (_render.TEMPLATES[cls, fmt], _render.head(fmt, cls.EVENT, udf, pid, host, worker))
        for cls in _events.TYPES
    }


def cut(event: _events.Event, limit: int) -> _events.Event:
    """``event`` with each text field longer than ``limit`` characters cut to it, with a marker."""
    if not any(type(v) is str and len(v) > limit for v in event):
        return event
    values: list[Any] = [capped(v, limit) if type(v) is str else v for v in event]
    kind: Callable[..., _events.Event] = type(event)
    return kind(*values)


def fit(template: Template, head: Any, ts: str, event: _events.Event) -> Any:
    """The rendered ``event``; a line longer than :data:`MAX_LINE` again with its text fields cut shorter.

    A line at most ``PIPE_BUF`` long is written atomically: workers sharing a stderr pipe
    never tear each other's lines. The head is bounded (the name is capped), so cutting the
    event's own text fields (to 200, 100, 50, 25 characters) always fits: ~25 bytes a call.
    """
    out = template(head, ts, event)
    limit = MAX_ECHO
    while type(out) is str and len(out) > MAX_LINE and limit >= 25:
        event = cut(event, limit)
        out = template(head, ts, event)
        limit //= 2
    return out


def writer(sinks: Sequence[Sink], head: dict[str, Any]) -> Emit:
    """The emitter's ``emit`` for ``sinks``: renders each event once per format, writes it, never raises."""
    formats = tuple(dict.fromkeys(sink.format for sink in sinks))
    if "structlog" in formats:
        return _structlog_pipeline(sinks, formats, head)
    routes = [(templates(fmt, head), tuple(s.write for s in sinks if s.format == fmt)) for fmt in formats]
    per_type = {cls: tuple((*by_type[cls], writes) for by_type, writes in routes) for cls in _events.TYPES}
    stamp = Stamp()
    Snapshot = _events.Snapshot
    if formats in (("logfmt",), ("json",)) and len(sinks) == 1:  # one line sink: the usual case
        single = {cls: (template, rendered) for cls, ((template, rendered, _),) in per_type.items()}
        (write,) = (sinks[0].write,)
        now, ts_prefix = time.time, _render.ts_prefix
        cache = [(-1, "")]  # the Stamp's cache, inlined: (second, its rendered prefix)

        def emit_one(event: _events.Event) -> None:
            try:
                kind = type(event)
                if kind is not Snapshot:  # a snapshot has no text but the (capped) head's
                    event = cut(event, MAX_MESSAGE)  # a message, a path: they may echo outside values
                t = now()
                second = int(t)
                cached, prefix = cache[0]
                if second != cached:
                    prefix = ts_prefix(second)
                    cache[0] = (second, prefix)
                ts = f"{prefix}.{int((t - second) * 1000):03d}Z"
                if _capture.hooks:
                    _capture.show(head, ts, event)
                template, rendered = single[kind]
                line = template(rendered, ts, event)
                if len(line) > MAX_LINE:
                    line = fit(template, rendered, ts, event)
                write(line)
            except Exception:  # telemetry never raises into the UDF
                pass

        return emit_one

    def emit(event: _events.Event) -> None:
        try:
            kind = type(event)
            if kind is not Snapshot:
                event = cut(event, MAX_MESSAGE)
            ts = stamp()
            if _capture.hooks:
                _capture.show(head, ts, event)
            for template, rendered, writes in per_type[kind]:
                out = template(rendered, ts, event)
                if type(out) is str and len(out) > MAX_LINE:
                    out = fit(template, rendered, ts, event)
                for write in writes:
                    write(out)
        except Exception:  # telemetry never raises into the UDF
            pass

    return emit


class _Renderer:
    """The structlog pipeline's processor: stamp the time, show observers, render one output per format."""

    def __init__(self, formats: tuple[str, ...], head: dict[str, Any]) -> None:
        self.head = head
        by_format = [templates(fmt, head) for fmt in formats]
        self._templates = {cls: [t[cls] for t in by_format] for cls in _events.TYPES}
        self._stamp = Stamp()

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> tuple[Any, ...]:
        event: _events.Event = event_dict["udfmem"]
        if type(event) is not _events.Snapshot:
            event = cut(event, MAX_MESSAGE)
        ts = self._stamp()
        if _capture.hooks:
            _capture.show(self.head, ts, event)
        return tuple(fit(template, rendered, ts, event) for template, rendered in self._templates[type(event)])


class _Fanout:
    """The object structlog wraps: gives each sink the output in its format."""

    def __init__(self, sinks: Sequence[Sink], formats: tuple[str, ...]) -> None:
        self.routes = [(sink.write, formats.index(sink.format)) for sink in sinks]

    def msg(self, outputs: tuple[Any, ...]) -> None:
        """Write the rendered outputs, each sink the one in its format."""
        for write, i in self.routes:
            write(outputs[i])


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


def _structlog_pipeline(sinks: Sequence[Sink], formats: tuple[str, ...], head: dict[str, Any]) -> Emit:
    """``emit`` through udfmem's own structlog pipeline (the structlog format: the user's logger at the end)."""
    logger = structlog.wrap_logger(
        _Fanout(sinks, formats),
        processors=[_Renderer(formats, head)],
        wrapper_class=EventLogger,
        context_class=dict,
        **head,
    )
    bound: EventLogger = logger.bind()  # resolve the lazy proxy once
    return bound.emit
