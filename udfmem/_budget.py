"""A time budget for an expensive probe: read it only as often as keeps its cost a small share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
_NEVER = float("-inf")  # a budget that never holds a read back
RETIME = 16  # a cheap probe is timed again every this many reads


class Budget(Generic[T]):
    """Reads an expensive probe only as often as keeps it under ``share`` of wall time.

    ``mallinfo2()`` walks every free chunk of every arena under the arena's lock: ~5 µs on
    a small heap, 20 ms at 1 GiB fragmented, 130 ms at 6 GiB. Each read is timed; the
    next is allowed once ``cost / share`` seconds have passed, so the probe's share of
    the worker's time stays at most ``share`` (0.5%) however large the heap, and other
    threads' ``malloc`` waits on those locks that rarely. Between reads it returns None
    (the field is left out of the event). The cost estimate is the cheaper of the last
    two reads, so one read slowed by preemption or cold caches does not gate the next;
    a probe estimated under ``free_below`` (100 µs: a few snapshots' worth) is read
    every time.
    """

    def __init__(
        self,
        read: Callable[[], T | None],
        share: float = 0.005,
        free_below: float = 100e-6,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._read = read
        self.share = share
        self.free_below = free_below
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget past costs: the next read happens."""
        self.cost = 0.0  # the estimate: the cheaper of the last two reads, in seconds
        self._last = 0.0
        self._next = _NEVER
        self._reads = 0
        self._cheap = False  # measured under free_below: read untimed, re-timed every RETIME reads

    def due(self) -> bool:
        """Whether a read now stays within the budget (a cheap check before the call)."""
        return self._next is _NEVER or self._clock() >= self._next

    def __call__(self) -> T | None:
        """The probe's value now, or None when reading it now would exceed the budget.

        A probe known to be cheap is timed again every ``RETIME``-th read only (a clock
        pair costs a tenth of a cheap read); one that is not is timed every read.
        """
        self._reads += 1
        if self._cheap and self._reads % RETIME:
            return self._read()
        start = self._clock()
        if start < self._next:
            return None
        value = self._read()
        took = self._clock() - start
        self.cost, self._last = (min(took, self._last) if self._last else took), took
        self._cheap = took < self.free_below  # a slow read is followed by timed ones
        self._next = _NEVER if self.cost < self.free_below else start + self.cost / self.share
        return value
