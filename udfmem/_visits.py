"""The timer's visits: what a UDF's state does when udfmem's daemon timer comes by.

It forces an ``every_s`` snapshot, notices an idle UDF for the trim policy, and re-sets
the metrics an exporter would drop (Ray's gauges); it returns when to come back. None
of it runs on the hot path. :class:`Visits` is a part of
:class:`~udfmem._state.UDFState`, kept apart by concept.
"""

from __future__ import annotations

import threading

from . import _settings, _timer
from ._emit import Emitter
from ._trim import IDLE_S, Trimmer


class Visits:
    """The timer-facing part of a UDF's state (mixed into ``UDFState``, which provides the fields below)."""

    settings: _settings.Settings | None
    emitter: Emitter
    trimmer: Trimmer | None
    slow_at: int
    _snap_lock: threading.Lock
    _forced: bool
    _armed: bool
    _seen: int
    _last_t: float

    def force(self) -> None:
        """Make the next call take a snapshot (the ``every_s`` timer calls this)."""
        self._forced = True
        self.slow_at = 0

    def tick(self, now: float) -> float | None:
        """The timer's visit: force an ``every_s`` snapshot, check for idleness; next visit time."""
        settings = self.settings
        if settings is None or settings.disable:
            return None
        wake: list[float] = []
        if settings.every_s > 0:
            deadline = self._last_t + settings.every_s
            if now >= deadline:
                self.force()  # idempotent: an idle UDF is simply flagged again
                deadline = now + settings.every_s
            wake.append(deadline)
        trimmer = self.trimmer
        if trimmer is not None and trimmer.policy.auto:
            # a call completed since the previous visit (it cleared the flag), or one is running now
            active = not self._armed or _timer.call_in_progress()
            if self._snap_lock.acquire(blocking=False):
                try:
                    trimmer.idle_check(active, self._seen)
                finally:
                    self._snap_lock.release()
            self._armed = True
            self.slow_at = 0  # the next call takes the slow path once, clearing the flag
            wake.append(now + IDLE_S / 2)
        gauges = self.emitter.metrics
        refresh = gauges.refresh(now) if gauges is not None else None  # Ray drops a series not set lately
        if refresh is not None:
            wake.append(refresh)
        return min(wake) if wake else None

    def tick_failed(self, exc: Exception) -> None:
        """The timer's visit raised: one warning; the timer visits again."""
        self.emitter.warn_once("timer-failed", f"the every_s/idle timer failed once and retries: {exc!r}")
