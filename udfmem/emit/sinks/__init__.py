"""Where rendered lines go: a sink takes one line in its format and writes it, never raising.

udfmem's emitter renders each event once per format its sinks need and hands each sink
its line. Built in: :class:`~udfmem.emit.sinks.stderr.StderrSink` (the worker's stderr, as
logfmt or JSON) and :class:`~udfmem.emit.sinks.jsonl.JsonlSink` (``UDFMEM_LOG_DIR``: one JSON
lines file per process); :class:`~udfmem.emit.sinks.structlog_sink.StructlogSink` hands events
to your own structlog configuration instead of stderr (``UDFMEM_LOG_FORMAT=structlog``);
:class:`~udfmem.emit.sinks.metrics.MetricsSink` (``UDFMEM_METRICS``) takes the typed events
themselves and keeps Ray's or OpenTelemetry's gauges (``ray_metrics``, ``otel_metrics``).
"""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    """What the emitter needs of a sink."""

    format: str  # "logfmt" or "json" (a line), "structlog" (the event's fields as a dict), "event" (the event)

    def write(self, line: Any) -> None:
        """Write one event in the sink's format; swallow I/O errors: telemetry never raises."""
