"""Where rendered lines go: a sink takes one line in its format and writes it, never raising.

udfmem's emitter renders each event once per format its sinks need and hands each sink
its line. Built in: :class:`~udfmem.sinks.stderr.StderrSink` (the worker's stderr, as
logfmt or JSON) and :class:`~udfmem.sinks.jsonl.JsonlSink` (``UDFMEM_LOG_DIR``: one JSON
lines file per process); :class:`~udfmem.sinks.structlog_sink.StructlogSink` hands events
to your own structlog configuration instead of stderr (``UDFMEM_LOG_FORMAT=structlog``).
"""

from __future__ import annotations

from typing import Any, Protocol


class Sink(Protocol):
    """What the emitter needs of a sink."""

    format: str  # "logfmt" or "json" (a line), or "structlog" (the event's fields as a dict)

    def write(self, line: Any) -> None:
        """Write one event in the sink's format; swallow I/O errors: telemetry never raises."""
