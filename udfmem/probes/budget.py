"""A time budget for an expensive probe: read it only as often as keeps its cost a small share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
_NEVER = float("-inf")  # a budget that never holds a read back
RETIME = 8  # a cheap probe is timed again every this many reads
BURST_S = 1.0  # the credit a budget may save up: this many seconds' worth of its share


class Budget(Generic[T]):
    """Reads an expensive probe only as often as keeps it under ``share`` of wall time.

    ``mallinfo2()`` walks every free chunk of every arena under the arena's lock: ~1 µs on
    a small heap, 45 ms at 2 GiB fragmented, 130 ms at 6 GiB. A read's cost is the CPU
    time this thread spent in it (``cost_clock``: time waiting for the GIL afterwards, or
    preempted, is not the walk's). Reads are paid from a credit that grows by ``share``
    of the wall time passed (``clock``) and is saved up to ``burst`` (one second's worth
    of the share: 5 ms at 0.5%); a read is allowed while the credit covers the last read's
    cost (at most ``burst``), so a probe that costs more than the burst is read again
    ``cost / share`` seconds after the previous read, and the probe takes at most
    ``share`` (0.5%) of the worker's time however large the heap, plus one burst.
    Snapshots close together (a UDF object's final snapshot and the next object's
    first, a setup's event and its trim decision, two UDFs in one process) all get a
    reading while the walk costs less than the saved credit; other threads' ``malloc``
    waits on the arena locks that rarely. A held-back read returns None (the field is
    left out of the event: never a stale value). A probe that cost under ``free_below``
    (100 µs: a few snapshots' worth) is read every time, unpaid, and timed again every
    ``RETIME``-th read; a slow read after cheap ones is timed again at once, unpaid, and
    only a second slow read in a row is paid (a cold first walk is often 50 times the
    next).
    """

    def __init__(
        self,
        read: Callable[[], T | None],
        share: float = 0.005,
        free_below: float = 100e-6,
        clock: Callable[[], float] = time.monotonic,
        cost_clock: Callable[[], float] = time.thread_time,
        burst: float | None = None,
    ) -> None:
        self._read = read
        self.share = share
        self.free_below = free_below
        self.burst = share * BURST_S if burst is None else burst
        self._clock = clock
        self._cost_clock = cost_clock
        self.reset()

    def reset(self) -> None:
        """Forget past costs: the next read happens, timed, and the credit is full."""
        self.cost = 0.0  # CPU seconds the last timed read took
        self._next = _NEVER  # no read before this time (the credit does not cover one until then)
        self._reads = 0
        self._cheap = False  # the last timed read was under free_below: read untimed, re-time every RETIME
        self._timed = False  # a timed read happened since the reset
        self._credit = self.burst  # probe seconds that may be spent now
        self._paid_at: float | None = None  # when the credit was last settled

    def hold(self, until: float) -> None:
        """Hold every read back until ``until`` (this budget's clock), as after a read that cost a lot.

        For tests of what a held-back figure does (it is left out of the event).
        """
        self._cheap = False
        self._next = until

    def __call__(self) -> T | None:
        """The probe's value now, or None when reading it now would exceed the budget."""
        self._reads += 1
        if self._cheap and self._reads % RETIME:
            return self._read()
        if self._next is not _NEVER and self._clock() < self._next:
            return None
        start = self._cost_clock()
        value = self._read()
        took = self._cost_clock() - start
        cheap, confirmed = took < self.free_below, not self._cheap and self._timed
        self.cost, self._cheap, self._timed = took, cheap, True
        # one slow read after cheap ones (a cold first walk, a page-fault burst) is timed again
        # at once, unpaid; a second slow read in a row is paid from the credit
        self._next = _NEVER if cheap or not confirmed else self._pay(took)
        return value

    def _pay(self, took: float) -> float:
        """Pay ``took`` from the credit; when the next read is allowed (``_NEVER``: at once)."""
        now = self._clock()
        credit = self._credit
        if self._paid_at is not None:
            credit = min(self.burst, credit + (now - self._paid_at) * self.share)
        self._credit, self._paid_at = credit - took, now
        need = min(took, self.burst)  # the next read is allowed once the credit covers one like this
        return _NEVER if self._credit >= need else now + (need - self._credit) / self.share
