"""Ray's metrics: ``ray.util.metrics`` gauges and counters, served by Ray's metrics agent.

Ray's agent exports a worker's metrics on the node's Prometheus endpoint (the port
``ray start --metrics-export-port`` / ``ray.init(_metrics_export_port=...)``) with the
prefix ``ray_``: ``ray_udfmem_rss_mb``. Since 2026 Ray drops a gauge series two export
intervals (~20 s) after its last ``set()``, so the sink's values are set again by
udfmem's daemon timer every :func:`refresh_s`. Counters are cumulative and never
dropped; Prometheus names them ``..._total``.

One ``Gauge`` per name serves every UDF in the process (each UDF's series by its tags).
Ray is never imported here: a process that has not imported it is not connected to a
cluster. Until the process is connected (``ray.init``, or a Ray worker) nothing is set,
with one ``udfmem.warning``; the values start once it is.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

from .gauges import GAUGES, RELEASED, SLOPE, TRIMS, Exported

TAG_KEYS = ("udf", "host", "worker")
REFRESH_MAX_S = 5.0  # re-set at least this often (Ray's default export interval is 10 s)
_lock = threading.Lock()
_metrics: dict[str, Any] | None = None  # this process's Ray metric objects, made once connected


def load(sink: Exported) -> RayExporter | None:
    """The exporter of ``sink`` to Ray; None, with a problem noted, when Ray is not installed."""
    try:
        installed = importlib.util.find_spec("ray") is not None  # looked up, not imported
    except (ImportError, ValueError):  # a broken or stand-in "ray" module
        installed = False
    if not installed:
        sink.problems.append(("metrics-unavailable", "metrics=ray needs the ray package; no Ray gauges"))
        return None
    return RayExporter()


def _made() -> dict[str, Any]:
    """This process's Ray metric objects (made on first use: one per name, for every UDF)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                from ray.util import metrics

                made: dict[str, Any] = {
                    g.name: metrics.Gauge(g.name, g.doc, tag_keys=TAG_KEYS) for g in (*GAUGES, SLOPE)
                }
                for name, doc in (TRIMS, RELEASED):
                    made[name] = metrics.Counter(name, doc, tag_keys=TAG_KEYS)
                _metrics = made
    return _metrics


def refresh_s() -> float:
    """How often to set unchanged values again: half Ray's export interval (a gauge lives two), at most 5 s."""
    try:
        interval_s = max(1.0, float(sys.modules["ray"]._config.metrics_report_interval_ms()) / 1000)
    except Exception:  # not imported yet, or Ray's private config moved: keep the default
        return REFRESH_MAX_S
    return min(REFRESH_MAX_S, interval_s / 2)


class RayExporter:
    """Sets one sink's gauges (and adds its trims to the counters) in Ray's metrics.

    Holds no reference to the sink (the sink holds it). Re-entrant: a finalizer run by the
    garbage collector inside Ray's ``set`` may emit a final snapshot, which pushes again on
    the same thread.
    """

    def __init__(self) -> None:
        self.refresh_s: float | None = refresh_s()
        self._sent_trims = 0  # the counters take increments: what they were given so far
        self._sent_mb = 0.0
        self._lock = threading.RLock()  # the timer's re-set and a snapshot's push must not add a trim twice

    def publish(self, sink: Exported) -> None:
        """Set every known gauge to the sink's value; add new trims to the counters."""
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            sink.warn(
                "metrics-not-connected",
                "metrics=ray: this process is not connected to Ray (ray.init not called); no Ray gauges until it is",
            )
            return
        metrics = _made()
        tags = sink.attributes
        with self._lock:
            for name, value in sink.values():
                metrics[name].set(value, tags)
            trims, released = sink.trims, sink.released_mb
            if trims > self._sent_trims:
                metrics[TRIMS[0]].inc(trims - self._sent_trims, tags)
                self._sent_trims = trims
            if released > self._sent_mb:
                metrics[RELEASED[0]].inc(round(released - self._sent_mb, 3), tags)
                self._sent_mb = released
