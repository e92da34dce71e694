"""Where events go: a sink takes one event in its format and writes it, never raising.

udfmem's emitter renders each event once per format its sinks need and hands each sink
its own; :func:`udfmem.emit.emitter.build` chooses the sinks from the settings. Built in:
:class:`~udfmem.emit.sinks.stderr.StderrSink` (the worker's stderr, as logfmt or JSON),
:class:`~udfmem.emit.sinks.jsonl.JsonlSink` (``UDFMEM_LOG_DIR``: one JSON lines file per
process), :class:`~udfmem.emit.sinks.structlog_sink.StructlogSink` (``UDFMEM_LOG_FORMAT=structlog``:
your own structlog configuration instead of stderr) and
:class:`~udfmem.emit.sinks.metrics.MetricsSink` (``UDFMEM_METRICS``: the typed events
themselves, kept as Ray's or OpenTelemetry's gauges by ``ray_metrics``, ``otel_metrics``).
"""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    """What the emitter needs of a sink."""

    #: What the sink takes: "logfmt" or "json" (a rendered line), "structlog" (the event's fields as a
    #: dict), "typed" (the typed event itself, unrendered).
    format: str

    def write(self, line: Any) -> None:
        """Write one event in the sink's format; swallow I/O errors: telemetry never raises."""
