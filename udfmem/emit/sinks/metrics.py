"""The metrics sink: each snapshot's figures as gauges on the dashboards teams already watch.

Switched on by ``UDFMEM_METRICS`` (or ``@tracked(metrics=...)``, ``worker_env(metrics=...)``):
``ray`` sets ``ray.util.metrics`` gauges, which Ray's metrics agent serves on its
Prometheus endpoint (with the prefix ``ray_``); ``otel`` registers OpenTelemetry
observable gauges whose callbacks read the last snapshot. The sink sits behind the
emitter like the log sinks, in the ``typed`` format: it receives the typed events, not
lines, keeps each gauge's last known value from the ``udfmem.snapshot`` events and adds
up the ``udfmem.trim`` events; other events pass by.

Every gauge carries the tags ``udf``, ``host`` and ``worker`` (udfmem's per-process word,
as in the log lines), never ``pid``: one series per worker process, and Ray adds its own
``WorkerId``. Nothing is imported unless an exporter is switched on; a missing package
gives one ``udfmem.warning`` and the UDF runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Protocol

from ...events.schema import Snapshot, Trim
from .gauges import GAUGES, SLOPE, Exporter, Warn

MIN_SET_S = 1.0
"""Push to Ray at most this often: Ray exports a worker's metrics every 10 s, so more is work nobody sees.

A snapshot within this time of the last push is pushed by the timer's visit, about a second later.
"""

_READERS = tuple((g.name, attrgetter(g.field)) for g in GAUGES)  # C-level reads: ~0.5 µs for all


class Visitor(Protocol):
    """What the sink needs of udfmem's timer (:data:`udfmem.runtime.timer.timer`)."""

    def watch(self, obj: Any) -> None:
        """Visit ``obj`` (weakly held) whenever its ``tick`` asks."""

    def wake(self, obj: Any) -> None:
        """Visit ``obj`` now, whatever it asked."""


class MetricsSink:
    """One UDF's gauges in one process: the last snapshot, the slope and the trim totals.

    A full sink: the emitter hands it the typed events (:meth:`write`) and the detector's
    slope (:meth:`note_slope`). Where an exporter needs values set again (Ray drops a
    series not set lately), the sink asks udfmem's timer for visits itself (it is a
    :class:`~udfmem.runtime.timer.Watched`, held weakly by the timer) from its first
    change on. ``exporters`` are names (``ray``, ``otel``) or exporters; ``clock`` (the
    monotonic clock of its pushes) and ``timer`` (udfmem's timer) are injectable for tests.
    """

    format = "typed"

    def __init__(
        self,
        exporters: Sequence[str | Exporter],
        udf: str,
        host: str,
        worker: str,
        warn: Warn | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: Visitor | None = None,
    ) -> None:
        self.attributes = {"udf": udf, "host": host, "worker": worker}
        self.last: Snapshot | None = None  # the last snapshot
        self.known: dict[str, float | int] = {}  # each gauge's last known value
        self.slope: float | None = None
        self.trims = 0
        self.released_mb = 0.0
        self.problems: list[tuple[str, str]] = []  # said by the emitter once it is built
        self.warn: Warn = warn if warn is not None else self._note_problem  # the emitter's, once built
        self.clock = clock
        self._timer = timer  # None: the process's timer, looked up when first needed
        loaded = (_load(e, self) if isinstance(e, str) else e for e in exporters)
        self._exporters = [e for e in loaded if e is not None]
        # re-set unchanged values this often (the shortest an exporter needs); None: never
        self.refresh_s = min((e.refresh_s for e in self._exporters if e.refresh_s is not None), default=None)
        self.expires = self.refresh_s is not None  # the values must be pushed (and set again)
        self.dirty = False  # values changed since they were last pushed
        self.set_at = float("-inf")
        self._watched = False  # the timer visits this sink (from its first change on)

    @property
    def exporting(self) -> bool:
        """Whether any exporter loaded (else the emitter leaves the sink out)."""
        return bool(self._exporters)

    def _note_problem(self, what: str, message: str) -> None:
        self.problems.append((what, message))

    def write(self, event: Any) -> None:
        """Take one event: a snapshot updates the gauges' values, a trim is counted. Never raises."""
        try:
            kind = type(event)
            if kind is Snapshot:
                known = self.known  # a figure a snapshot skipped (its probe's time budget) keeps its last value
                for name, read in _READERS:
                    value = read(event)
                    if value is not None:
                        known[name] = value
                self.last = event
                self._changed(bool(event.final))  # a final snapshot now: the process may be ending
            elif kind is Trim:  # every udfmem.trim ran (a skipped part is named, the rest ran)
                self.trims += 1
                self.released_mb += max(0.0, event.released_mb)
                self._changed()
        except Exception as exc:  # telemetry never raises into the UDF
            self.warn("metrics-failed", f"metrics export failed: {exc!r}")

    def note_slope(self, slope: float | None) -> None:
        """The online detector's slope after a snapshot (the emitter forwards it); published if it changed."""
        if slope != self.slope:
            self.slope = slope
            try:
                self._changed()
            except Exception as exc:
                self.warn("metrics-failed", f"metrics export failed: {exc!r}")

    def _changed(self, now: bool = False) -> None:
        """Values changed: push them to exporters that need pushing, at most every ``MIN_SET_S`` unless ``now``."""
        if self.expires:
            at = self.clock()
            if now or at - self.set_at >= MIN_SET_S:
                self._publish(at)
            elif not self.dirty:
                self.dirty = True
                if self._watched:
                    self._visitor().wake(self)  # the visit pushes them once MIN_SET_S has passed
            if not self._watched:  # after the push: the first visit (at once) finds nothing due
                self._watched = True
                self._visitor().watch(self)  # from now on the timer re-sets the values (Ray drops them otherwise)

    def _visitor(self) -> Visitor:
        if self._timer is not None:
            return self._timer
        from ...runtime import timer as _timer  # here: emit does not import the runtime when it loads

        return _timer.timer

    def _publish(self, at: float) -> None:
        self.set_at = at
        self.dirty = False
        for exporter in self._exporters:
            exporter.publish(self)

    def values(self) -> list[tuple[str, float | int]]:
        """Each gauge's last known value (the slope too, once judged), as exporters set them."""
        out = list(self.known.items())
        if self.slope is not None:
            out.append((SLOPE.name, self.slope))
        return out

    def close(self) -> None:
        """Its UDF let it go (a reset): no more pushes or visits; the exporters keep what was last set."""
        self.refresh_s = None
        self.expires = False
        self.dirty = False

    def tick(self, now: float) -> float | None:
        """The timer's visit: push waiting values, or re-set them every ``refresh_s``; when to come back.

        An idle or slow UDF takes no snapshot for minutes, and Ray would drop its series. None:
        no exporter needs visits (OpenTelemetry's callbacks read the values when collected), or closed.
        """
        refresh_s = self.refresh_s
        if refresh_s is None:
            return None
        since = now - self.set_at
        if ((self.dirty and since >= MIN_SET_S) or since >= refresh_s) and (self.last is not None or self.trims):
            try:
                self._publish(now)
            except Exception as exc:  # _publish stamped set_at first: retried at the next re-set
                self.warn("metrics-failed", f"metrics export failed: {exc!r}")
        # values waiting: as soon as they may be pushed; else at the next re-set (a change wakes the timer)
        return self.set_at + (MIN_SET_S if self.dirty else refresh_s)

    def tick_failed(self, exc: Exception) -> None:
        """A visit raised ``exc``: say so, once (the timer visits again)."""
        self.warn("metrics-failed", f"metrics export failed: {exc!r}")


def _load(name: str, sink: MetricsSink) -> Exporter | None:
    """The exporter ``name`` for ``sink``; None, with a problem noted, when its package is missing or broken."""
    try:
        if name == "ray":
            from . import ray_metrics

            return ray_metrics.load(sink)
        from . import otel_metrics

        return otel_metrics.load(sink)
    except Exception as exc:  # the UDF runs, and the rest of udfmem with it
        sink.problems.append(("metrics-unavailable", f"metrics={name} could not start: {exc!r}"))
        return None
