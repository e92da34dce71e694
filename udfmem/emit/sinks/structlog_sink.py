"""The structlog sink (``UDFMEM_LOG_FORMAT=structlog``): events through *your* structlog configuration.

udfmem's own lines never touch your logging set-up. With this format each event is
handed instead to ``structlog.get_logger("udfmem")`` as the event name and its fields
(``udf``, ``pid``, ``host``, ``worker``, the event's own fields, ``schema``), so your
processors (timestamps, levels, JSON to your log shipper) apply. It costs what your
pipeline costs; udfmem still never calls ``structlog.configure``.
"""

from __future__ import annotations

from typing import Any

import structlog


class StructlogSink:
    """Hands each event's fields to the user's configured structlog logger ``udfmem``."""

    format = "structlog"

    def __init__(self) -> None:
        self._logger: Any = structlog.get_logger("udfmem")

    def write(self, fields: Any) -> None:
        """Log the event; a failing user pipeline must not reach the UDF."""
        try:
            fields = dict(fields)
            self._logger.info(fields.pop("event"), **fields)
        except Exception:  # the user's processors may raise; telemetry never does
            return
