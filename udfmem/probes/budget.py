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

    **A floor of readings.** A share alone starves fast callers: snapshots 4 ms apart and a
    150 µs walk (a small heap at load 4) get one reading in 8, and a rule that cuts the
    series into sub-windows then reads "RSS grew, malloc did not". With ``floor_every=k``,
    every k-th call is read even when the share holds it back, paid from a second credit
    that grows by ``ceiling`` of the wall time (saved up to one second's worth). Calls are
    counted from the reset, or, where the caller passes the index of the snapshot a read
    is for (``at``), readings fall on indices 0, k, 2k..., the ones a decimated series
    keeps (every 2^j-th), whatever other reads (a setup's, a trim's) came between. Every
    read pays the second credit, so the probe never takes more than ``ceiling`` of the
    wall time plus its burst: on a huge fragmented heap (45 ms a walk) the floor yields to
    the ceiling (a walk every 45 ms / ``ceiling``), never the ceiling to the floor.
    """

    def __init__(
        self,
        read: Callable[[], T | None],
        share: float = 0.005,
        free_below: float = 100e-6,
        clock: Callable[[], float] = time.monotonic,
        cost_clock: Callable[[], float] = time.thread_time,
        burst: float | None = None,
        floor_every: int | None = None,
        ceiling: float | None = None,
    ) -> None:
        """``share``: of the wall time; ``floor_every``/``ceiling``: the floor of readings and its hard share."""
        self._read = read
        self.share = share
        self.free_below = free_below
        self.burst = share * BURST_S if burst is None else burst
        self.floor_every = floor_every
        self.ceiling = share if ceiling is None else max(share, ceiling)
        self.ceiling_burst = self.ceiling * BURST_S if burst is None else max(burst, self.burst)
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
        self._floor_next = _NEVER  # no floor read before this time (the ceiling's credit)
        self._ceiling_credit = self.ceiling_burst  # probe seconds the floor may spend now (every read pays it)
        self._ceiling_paid_at: float | None = None

    def hold(self, until: float) -> None:
        """Hold every read back until ``until`` (this budget's clock), as after a read that cost a lot.

        For tests of what a held-back figure does (it is left out of the event).
        """
        self._cheap = False
        self._next = self._floor_next = until

    def __call__(self, at: int | None = None) -> T | None:
        """The probe's value now, or None when reading it now would exceed the budget.

        ``at``: the index of the snapshot this read is for (the floor reads every
        ``floor_every``-th); None: the budget counts its own calls.
        """
        self._reads += 1
        if self._cheap and self._reads % RETIME:
            return self._read()
        floor = False
        if self._next is not _NEVER and self._clock() < self._next:
            every = self.floor_every
            if not every or (self._reads if at is None else at) % every:
                return None
            if self._floor_next is not _NEVER and self._clock() < self._floor_next:
                return None
            floor = True  # the share holds it back; the floor reads it, within the ceiling
        start = self._cost_clock()
        value = self._read()
        took = self._cost_clock() - start
        cheap, confirmed = took < self.free_below, not self._cheap and self._timed
        self.cost, self._cheap, self._timed = took, cheap, True
        # one slow read after cheap ones (a cold first walk, a page-fault burst) is timed again
        # at once, unpaid; a second slow read in a row is paid from the credit (a floor read
        # only from the ceiling's: the share's credit keeps buying its own reads)
        if cheap or not confirmed:
            self._next = self._floor_next = _NEVER
        else:
            now = self._clock()
            if not floor:
                self._next = self._pay(now, took)
            self._floor_next = self._pay_ceiling(now, took)
        return value

    def _pay(self, now: float, took: float) -> float:
        """Pay ``took`` from the share's credit; when the next read is allowed (``_NEVER``: at once)."""
        credit = self._credit
        if self._paid_at is not None:
            credit = min(self.burst, credit + (now - self._paid_at) * self.share)
        self._credit, self._paid_at = credit - took, now
        need = min(took, self.burst)  # the next read is allowed once the credit covers one like this
        return _NEVER if self._credit >= need else now + (need - self._credit) / self.share

    def _pay_ceiling(self, now: float, took: float) -> float:
        """Pay ``took`` from the ceiling's credit (every paid read); when a floor read is allowed again."""
        credit = self._ceiling_credit
        if self._ceiling_paid_at is not None:
            credit = min(self.ceiling_burst, credit + (now - self._ceiling_paid_at) * self.ceiling)
        self._ceiling_credit, self._ceiling_paid_at = credit - took, now
        need = min(took, self.ceiling_burst)
        return _NEVER if self._ceiling_credit >= need else now + (need - self._ceiling_credit) / self.ceiling
