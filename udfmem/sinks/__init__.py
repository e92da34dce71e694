"""Where rendered lines go: a sink takes one line in its format and writes it, never raising.

udfmem's emitter renders each event once per format its sinks need and hands each sink
its line. Built in: :class:`~udfmem.sinks.stderr.StderrSink` (the worker's stderr, as
logfmt or JSON) and :class:`~udfmem.sinks.jsonl.JsonlSink` (``UDFMEM_LOG_DIR``: one JSON
lines file per process).
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    """What the emitter needs of a sink."""

    format: str  # "logfmt" or "json"

    def write(self, line: str) -> None:
        """Write one line (without its newline); swallow I/O errors: telemetry never raises."""
