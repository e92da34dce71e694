"""The timer's visits: what a UDF's state does when udfmem's daemon timer comes by.

It forces an ``every_s`` snapshot, notices an idle UDF for the trim policy, and re-sets
the metrics an exporter would drop (Ray's gauges); it returns when to come back, later
and later while the UDF stays idle. None of it runs on the hot path. :class:`Visits` is
a part of :class:`~udfmem.runtime.state.UDFState`, kept apart by concept.
"""

from __future__ import annotations

import threading

from .. import _settings
from ..emit.emitter import Emitter
from ..policies.trim import IDLE_S, Trimmer
from . import timer as _timer

MAX_IDLE_WAIT_S = 60.0  # the longest an idle UDF waits for the timer's next visit (a call wakes it at once)


class Visits:
    """The timer-facing part of a UDF's state (mixed into ``UDFState``, which provides the fields below)."""

    settings: _settings.Settings | None
    emitter: Emitter
    trimmer: Trimmer | None
    slow_at: int
    _snap_lock: threading.RLock
    _forced: bool
    _armed: bool
    _dozing: bool
    _idle_wait: float
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
            wake.append(self._idle_visit(trimmer, now))
        gauges = self.emitter.metrics
        refresh = gauges.refresh(now) if gauges is not None else None  # Ray drops a series not set lately
        if refresh is not None:
            wake.append(refresh)
        return min(wake) if wake else None

    def _idle_visit(self, trimmer: Trimmer, now: float) -> float:
        """The trim policy's part of a visit: notice calls, decide an idle trim once; when to come back.

        Idle means no call completed since the previous visit (the next call clears the
        flag set here) and none in progress now. The stacks are walked (see
        :func:`udfmem.runtime.timer.call_in_progress`) only when an idle decision is due, not at
        every visit; while nothing is to decide (the decision was made, or a long call is
        still running) the visits back off (2, 4 ... ``MAX_IDLE_WAIT_S`` s) and the next
        completed call wakes the timer, so an idle worker costs ~nothing.
        """
        completed = not self._armed
        self._armed = True
        self.slow_at = 0  # the next call takes the slow path once, clearing the flag
        come_back: float | None = now + IDLE_S / 2
        lock = self._snap_lock
        try:
            if lock.acquire(blocking=False):  # else a snapshot runs now: calls do, come back soon
                if completed:
                    trimmer.idle_check(True, self._seen)
                else:
                    left = trimmer.idle_left()
                    if left is None:
                        come_back = None  # decided already: nothing to do until calls resume
                    elif left > 0:
                        come_back = now + left  # not idle long enough yet: no walk
                    else:
                        busy = _timer.call_in_progress()
                        trimmer.idle_check(busy, self._seen)
                        come_back = None  # decided, or a long call runs: either way back off
        finally:
            try:  # noqa: SIM105 (suppress() is Python: a Ctrl-C in it keeps the lock)
                lock.release()
            except RuntimeError:  # not held by this thread
                pass
        if come_back is not None:
            self._idle_wait = 0.0
            return come_back
        self._idle_wait = min(max(2 * self._idle_wait, IDLE_S), MAX_IDLE_WAIT_S)
        self._dozing = True  # first, then the check: a call clears the flag first, then reads this
        if not self._armed:  # a call completed meanwhile and may have missed the flag
            self._dozing = False
            return now + IDLE_S / 2
        return now + self._idle_wait

    def tick_failed(self, exc: Exception) -> None:
        """The timer's visit raised: one warning; the timer visits again."""
        self.emitter.warn_once("timer-failed", f"the every_s/idle timer failed once and retries: {exc!r}")
