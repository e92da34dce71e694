"""What is exported: the gauges and counters, and what an exporter sees of a UDF's metrics sink.

The one list of names (a rename breaks dashboards: a test holds it to the README) shared
by the sink (:mod:`udfmem.emit.sinks.metrics`) and the exporters (``ray_metrics``,
``otel_metrics``), which know the sink only through :class:`Exported`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from ...events.schema import path

Warn = Callable[[str, str], None]


class Gauge(NamedTuple):
    """One exported gauge: its name, what it means, and the snapshot field it shows (None: unknown)."""

    name: str
    doc: str
    field: str  # a ``Snapshot`` attribute, dotted into its ``Memory`` block


def _gauge(field: str, doc: str, name: str | None = None) -> Gauge:
    """The gauge of snapshot field ``field`` (named ``udfmem_<field>`` unless ``name``); its path from the schema."""
    return Gauge(name or f"udfmem_{field}", doc, path(field))


#: The gauges, in the order the README lists them (MiB unless stated).
GAUGES: tuple[Gauge, ...] = (
    _gauge("rss_mb", "resident memory of the worker process (MiB)"),
    _gauge("peak_rss_mb", "highest RSS in the last snapshot's window (MiB)"),
    _gauge("arrow_live_mb", "bytes allocated by Arrow's memory pool (MiB)"),
    _gauge("heap_in_use_mb", "malloc bytes in use (MiB)"),
    _gauge("heap_free_mb", "freed memory malloc still holds (MiB)"),
    _gauge("growth_mb", "private RSS growth since the end of setup (MiB)"),
    _gauge("headroom_mb", "memory left under the limit whose kill comes first (MiB)"),
    _gauge("call", "calls counted by the last snapshot (a number)", "udfmem_calls"),
)
SLOPE = Gauge(
    "udfmem_growth_slope_mb_per_100_calls",
    "the online detector's growth slope as of its last judgement (MiB per 100 calls; 0: no growth)",
    "",  # not a snapshot field: the emitter hands it over (MetricsSink.note_slope)
)
#: The counters: trims that ran, and the MiB they gave back (Prometheus adds ``_total``).
TRIMS = ("udfmem_trims", "trims that ran (malloc_trim and Arrow's release_unused)")
RELEASED = ("udfmem_trim_released_mb", "MiB given back to the OS by trims")


class Exported(Protocol):
    """What an exporter reads of one UDF's metrics sink."""

    attributes: dict[str, str]  # udf, host, worker
    known: dict[str, float | int]  # each gauge's last known value
    slope: float | None
    trims: int
    released_mb: float
    warn: Warn
    problems: list[tuple[str, str]]  # (what, message) said once the emitter is built

    def values(self) -> list[tuple[str, float | int]]:
        """Each gauge's last known value, the slope too once judged."""


class Exporter(Protocol):
    """What the sink needs of one metrics system."""

    refresh_s: float | None  # set unchanged values again this often (Ray drops them otherwise); None: never

    def publish(self, sink: Exported) -> None:
        """The sink's values changed (a snapshot, a slope, a trim): make them current."""
