"""Ray's metrics: ``ray.util.metrics`` gauges and counters, served by Ray's metrics agent.

Ray's agent exports a worker's metrics on the node's Prometheus endpoint (the port
``ray start --metrics-export-port`` / ``ray.init(_metrics_export_port=...)``) with the
prefix ``ray_``: ``ray_udfmem_rss_mb``. Since 2026 Ray drops a gauge series about two
export intervals (~20 s) after its last ``set()``, so the sink's values are set at each
snapshot and again by udfmem's daemon timer every ``REFRESH_S``. Counters are cumulative
and never dropped; Prometheus names them ``..._total``.

One ``Gauge`` per name serves every UDF in the process (each UDF's series by its tags).
In a process not connected to Ray (``ray.init`` not called) nothing is set, with one
``udfmem.warning``; the values start once it is connected.
"""

from __future__ import annotations

import threading
from typing import Any

from .gauges import GAUGES, RELEASED, SLOPE, TRIMS, Exported

TAG_KEYS = ("udf", "host", "worker")
_lock = threading.Lock()
_metrics: dict[str, Any] | None = None  # this process's Ray metric objects, made once connected


def load(sink: Exported) -> RayExporter | None:
    """The exporter of ``sink`` to Ray; None, with a problem noted, when Ray is not installed."""
    try:
        import ray
        from ray.util import metrics
    except ImportError as exc:
        sink.problems.append(("metrics-unavailable", f"metrics=ray needs the ray package: {exc}; no Ray gauges"))
        return None
    return RayExporter(sink, ray, metrics)


def _made(module: Any) -> dict[str, Any]:
    """This process's Ray metric objects (made on first use: one per name, for every UDF)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                made = {g.name: module.Gauge(g.name, g.doc, tag_keys=TAG_KEYS) for g in (*GAUGES, SLOPE)}
                for name, doc in (TRIMS, RELEASED):
                    made[name] = module.Counter(name, doc, tag_keys=TAG_KEYS)
                _metrics = made
    return _metrics


class RayExporter:
    """Sets one sink's gauges (and adds its trims to the counters) in Ray's metrics."""

    expires = True

    def __init__(self, sink: Exported, ray: Any, module: Any) -> None:
        self._sink = sink
        self._ray = ray
        self._module = module
        self._sent_trims = 0  # the counters take increments: what they were given so far
        self._sent_mb = 0.0
        self._lock = threading.Lock()  # the timer's re-set and a snapshot's push must not add a trim twice

    def publish(self) -> None:
        """Set every known gauge to the sink's value; add new trims to the counters."""
        sink = self._sink
        if not self._ray.is_initialized():
            sink.warn(
                "metrics-not-connected",
                "metrics=ray: this process is not connected to Ray (ray.init not called); no Ray gauges until it is",
            )
            return
        metrics = _made(self._module)
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
