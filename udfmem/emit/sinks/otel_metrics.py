"""OpenTelemetry: observable gauges and counters whose callbacks read each UDF's last snapshot.

Registered once per process on udfmem's meter (``opentelemetry.metrics.get_meter("udfmem")``)
when the first UDF with ``metrics=otel`` binds. A snapshot only keeps a reference to
itself (the sink's ``last``); the work happens when the user's SDK collects: each
callback yields one observation per live UDF, with the attributes ``udf``, ``host`` and
``worker``. With the API alone (no SDK configured) the meter is a no-op and no callback
ever runs; a ``MeterProvider`` set later is picked up by the API's proxy meter.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ... import _process
from .gauges import GAUGES, RELEASED, SLOPE, TRIMS, Exported, Gauge

_lock = threading.Lock()  # registration only: never held while the SDK collects (its callbacks take no lock)
_registered = False
# the sinks the callbacks read, weakly: a tuple replaced whole (under _live_lock) when one is added,
# so a callback reading it on the SDK's thread never sees it change
_live: tuple[weakref.ref[Exported], ...] = ()
_live_lock = threading.Lock()


def load(sink: Exported) -> OtelExporter | None:
    """Register ``sink`` with the process's instruments; None, with a problem noted, without the API."""
    try:
        from opentelemetry import metrics

        _register(metrics)
    except Exception as exc:  # not installed, or broken: the UDF runs without the gauges
        sink.problems.append(
            ("metrics-unavailable", f"metrics=otel needs opentelemetry-api: {exc!r}; no OpenTelemetry gauges")
        )
        return None
    _add(sink)
    return OtelExporter()


def _add(sink: Exported) -> None:
    """Let the callbacks read ``sink`` (and forget the sinks that are gone)."""
    global _live
    with _live_lock:
        _live = (*(r for r in _live if r() is not None), weakref.ref(sink))


def _sinks() -> Iterator[Exported]:
    """The live sinks, as of now."""
    for ref in _live:
        sink = ref()
        if sink is not None:
            yield sink


def _register(metrics: Any) -> None:
    """Create udfmem's observable instruments on its meter, once per process."""
    global _registered
    with _lock:
        if _registered:
            return
        from opentelemetry.metrics import Observation

        from ... import __version__

        meter = metrics.get_meter("udfmem", __version__)
        for gauge in (*GAUGES, SLOPE):
            meter.create_observable_gauge(gauge.name, [_gauge_callback(gauge, Observation)], description=gauge.doc)
        for (name, doc), read in ((TRIMS, _trims), (RELEASED, _released)):  # running totals: observable counters
            meter.create_observable_counter(name, [_counter_callback(read, Observation)], description=doc)
        _registered = True


def _trims(sink: Exported) -> float | int:
    return sink.trims


def _released(sink: Exported) -> float | int:
    return round(sink.released_mb, 3)


def _gauge_callback(gauge: Gauge, observation: Any) -> Callable[[Any], Iterator[Any]]:
    """The callback of one gauge: the last known value of every live UDF that has one."""
    slope, name = gauge is SLOPE, gauge.name

    def observe(_options: Any) -> Iterator[Any]:
        for sink in _sinks():
            value = sink.slope if slope else sink.known.get(name)
            if value is not None:
                yield observation(value, sink.attributes)

    return observe


def _counter_callback(read: Callable[[Exported], float | int], observation: Any) -> Callable[[Any], Iterator[Any]]:
    """The callback of one counter: the running total of every live UDF."""

    def observe(_options: Any) -> Iterator[Any]:
        for sink in _sinks():
            if sink.known or sink.trims:
                yield observation(read(sink), sink.attributes)

    return observe


class OtelExporter:
    """Nothing to do per snapshot: the callbacks read the sink when the SDK collects."""

    refresh_s: float | None = None  # the callbacks read the values whenever the SDK collects

    def publish(self, sink: Exported) -> None:
        """The callbacks read the sink's values when collected: nothing to push."""


def forget() -> None:
    """In a fork child: its UDFs bind afresh (their own ``worker`` tag), so forget the parent's sinks.

    The instruments stay registered (a meter keeps them; the child's callbacks read its own
    sinks). Not on a reset of a running process: its live UDFs keep their sinks.
    """
    global _live, _live_lock
    _live, _live_lock = (), threading.Lock()  # the parent's lock may have been held


_process.on_new_process(forget, _process.EMIT, fork_only=True)
