"""When to trim, and trimming: the ``trim=`` policy of a tracked UDF (``"auto"``, ``"off"`` or every N calls).

``"auto"`` trims only when it pays. At each snapshot it estimates the memory that is
resident but neither live in malloc nor in Arrow (private RSS - malloc in-use - Arrow
live, minus the same quantity taken as a baseline after setup: code, libraries), and
trims when that exceeds max(64 MiB, 10% of private RSS), within a time budget: trimming
takes at most ``TRIM_SHARE`` (5%) of the wall time far from a memory limit.

**Pressure.** Under a known limit both ease as the working set nears it (:func:`pressure`,
from the headroom's share of the limit: 0 at ``FAR_HEADROOM_SHARE`` (50%) or more, 1 at
``LOW_HEADROOM_SHARE`` (10%) or less, linear between). The budget's share of the wall
time is ``TRIM_SHARE ** (1 - pressure)`` (:func:`budget_share`): 5% far from the limit,
7.3% at 45% headroom, 10.6% at 40%, 22% at 30%, 47% at 20%, 100% (no budget) at 10%: a
geometric rise, so each 10 points of headroom lost multiply the time a worker may spend
trimming by ~2.1. The retention threshold falls the same way, to ``MIN_THRESHOLD_SHARE``
of itself (``threshold * MIN_THRESHOLD_SHARE ** pressure``: 64 MiB far, 38 MiB at 40%,
23 MiB at 30%, 13 MiB at 20%, 8 MiB at 10%): near the limit, memory a trim could give
back is worth a trim, so a worker never dies holding it.

After every trim the baseline is taken again, so memory that a trim cannot release (a
mapped model file, say) never triggers another. Growth that malloc cannot see (small Python objects live in
pymalloc's mmapped arenas, a native library's own allocator) looks like retention to
this estimate; so an auto trim that releases less than ``PAYOFF_SHARE`` of what it was
estimated to release doubles the excess the next one needs (up to ``MAX_BACKOFF``
times), and one that pays resets it: a real leak costs a few trims, not one per
threshold's worth of growth. When the UDF goes
idle (no call for ``IDLE_S`` and none in progress) with that much held, it trims once more, so an idle
worker gives its memory back. A blind cadence instead pays ~0.1 ms per MiB and locks
each arena every N calls whether or not anything was retained. Shared pages (mapped
files, Ray's object store) are left out: no trim can release them. While malloc's
in-use figure is unknown (the heap probe's budget held it back) no decision is made.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..events.schema import Event, Trim, Warning
from ..probes import allocator as _allocator
from ..probes import process as _probes

TRIM_SHARE = 0.05  # far from a limit, at most this share of the wall time goes to trimming (50 ms: once a second)
FAR_HEADROOM_SHARE = 0.50  # headroom of at least this share of a known limit: no pressure
LOW_HEADROOM_SHARE = 0.10  # headroom of at most this share: full pressure (the budget is ignored)
MIN_THRESHOLD_SHARE = 0.125  # under full pressure the retention threshold is this share of itself (64 -> 8 MiB)
IDLE_S = 2.0
THRESHOLD_FLOOR = 64 * _probes.MIB
THRESHOLD_SHARE = 0.10
PAYOFF_SHARE = 0.25  # a trim releasing less than this share of its estimate did not pay
MAX_BACKOFF = 64  # the most an unpaid trim streak multiplies the threshold by


def pressure(headroom: int | None, limit: int | None) -> float:
    """How near a known limit the working set is: 0 (far, or no limit known) to 1 (within 10% of it).

    Linear in the headroom's share of the limit between ``FAR_HEADROOM_SHARE`` (0) and
    ``LOW_HEADROOM_SHARE`` (1), clamped.
    """
    if headroom is None or limit is None or limit <= 0:
        return 0.0
    share = headroom / limit
    if share >= FAR_HEADROOM_SHARE:
        return 0.0
    if share <= LOW_HEADROOM_SHARE:
        return 1.0
    return (FAR_HEADROOM_SHARE - share) / (FAR_HEADROOM_SHARE - LOW_HEADROOM_SHARE)


def budget_share(level: float) -> float:
    """The share of the wall time trimming may take at pressure ``level``: ``TRIM_SHARE ** (1 - level)``.

    5% at no pressure, rising geometrically to 100% (trim whenever enough is retained) at full pressure.
    """
    return float(TRIM_SHARE ** (1.0 - min(1.0, max(0.0, level))))


class TrimPolicy:
    """The trim decisions of one UDF in one process."""

    def __init__(self, mode: str | int) -> None:
        self.mode = mode
        self._base_other: int | None = None
        self._last_end = float("-inf")  # when the last trim ended ...
        self._last_took = 0.0  # ... and how long it took: the budget waits took / share after it
        self.backoff = 1  # the threshold's multiplier after trims that did not pay

    @property
    def auto(self) -> bool:
        """Whether the adaptive policy is on."""
        return self.mode == "auto"

    @property
    def every(self) -> int | None:
        """Trim every this many calls, for an integer policy."""
        return self.mode if isinstance(self.mode, int) else None

    def rebase(self, rss: int | None, heap_in_use: int | None, arrow_live: int) -> None:
        """Take the baseline of memory that is neither malloc's nor Arrow's (after setup or a trim)."""
        if rss is not None and heap_in_use is not None:
            self._base_other = rss - heap_in_use - arrow_live

    def retained(self, rss: int | None, heap_in_use: int | None, arrow_live: int) -> int | None:
        """Estimated freed-but-resident bytes now (never negative), or None before a baseline."""
        if rss is None or heap_in_use is None or self._base_other is None:
            return None
        return max(0, rss - heap_in_use - arrow_live - self._base_other)

    @staticmethod
    def threshold(rss: int | None, level: float = 0.0) -> int:
        """The retention worth a trim: max(64 MiB, 10% of RSS), times ``MIN_THRESHOLD_SHARE ** level``."""
        base = max(THRESHOLD_FLOOR, int((rss or 0) * THRESHOLD_SHARE))
        return int(base * MIN_THRESHOLD_SHARE ** min(1.0, max(0.0, level)))

    def should_trim(
        self, retained: int | None, rss: int | None, now: float, headroom: int | None = None, limit: int | None = None
    ) -> bool:
        """At a snapshot: trim when enough is retained and the trim budget allows it.

        The budget keeps trimming under a share of the wall time: after a trim that took T,
        the next waits T / :func:`budget_share` — T / ``TRIM_SHARE`` (5%) far from a known
        memory limit, less as the headroom under it shrinks, none at ``LOW_HEADROOM_SHARE``
        (10%): retention near the limit is what gets a worker OOM-killed. The threshold
        falls with the same :func:`pressure`.
        """
        if not self.auto or retained is None:
            return False
        base = max(THRESHOLD_FLOOR, int((rss or 0) * THRESHOLD_SHARE)) * self.backoff
        if retained < base * MIN_THRESHOLD_SHARE:  # under the threshold at any pressure: the common case, cheap
            return False
        level = 0.0 if headroom is None else pressure(headroom, limit)
        if level <= 0.0:
            return retained >= base and now >= self._last_end + self._last_took / TRIM_SHARE
        if retained < int(base * MIN_THRESHOLD_SHARE**level):
            return False
        return level >= 1.0 or now >= self._last_end + self._last_took / budget_share(level)

    def should_trim_idle(self, retained: int | None, rss: int | None) -> bool:
        """When the UDF has gone idle (the caller asks once per idle period): trim if enough is retained."""
        return self.auto and retained is not None and retained >= self.threshold(rss)

    def trimmed(self, now: float, took_s: float = 0.0) -> None:
        """Record a trim that took ``took_s`` and ended at ``now`` (the caller rebases afterwards)."""
        self._last_end, self._last_took = now, took_s

    def paid(self, released: int, estimated: int) -> None:
        """An auto trim estimated to release ``estimated`` bytes released ``released``: adjust the backoff."""
        if released < PAYOFF_SHARE * estimated:
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        else:
            self.backoff = 1


class Trimmer:
    """Runs a UDF's :class:`TrimPolicy`: trims, rebases, and returns the events each trim made; never emits.

    ``read`` gives (RSS, malloc in-use, Arrow live) bytes now; ``clock`` and ``release``
    are injectable so the policy's decisions are tested without sleeping or trimming.
    Each method returns the events to emit (a ``udfmem.trim``, or a ``udfmem.warning`` to
    say once): the binding emits them and tells the detector what a trim released.
    """

    def __init__(
        self,
        policy: TrimPolicy,
        read: Callable[[], tuple[int | None, int | None, int]],
        clock: Callable[[], float] = time.monotonic,
        release: Callable[[], _allocator.TrimResult] = _allocator.release,
    ) -> None:
        self.policy = policy
        self._read = read
        self._clock = clock
        self._release = release
        self._idle_since: float | None = None
        self._idle_done = False

    def _retained_now(self) -> tuple[int | None, int | None]:
        """The retention estimate now, and the RSS it was read with."""
        rss, heap_in_use, arrow_live = self._read()
        return self.policy.retained(rss, heap_in_use, arrow_live), rss

    def rebase(self) -> None:
        """Take the policy's baseline now."""
        self.policy.rebase(*self._read())

    def trim(self, reason: str, retained: int | None = None) -> list[Event]:
        """Trim now and rebase; the ``udfmem.trim`` event. Unsupported: a warning, and the policy is off."""
        result = self._release()
        self.policy.trimmed(self._clock(), result.took_ms / 1000)
        if not result.supported:
            self.policy.mode = "off"
            self.rebase()
            return [Warning("trim-unsupported", f"cannot release memory here: {result.reason}")]
        if reason == "auto" and retained is not None:
            self.policy.paid(int(result.released_mb * _probes.MIB), retained)
        self.rebase()
        return [
            Trim(
                reason=reason,
                released_mb=result.released_mb,
                malloc_released_mb=result.malloc_released_mb,
                arrow_released_mb=result.arrow_released_mb,
                took_ms=result.took_ms,
                rss_before_mb=result.rss_before_mb,
                rss_after_mb=result.rss_after_mb,
                retained_mb=_probes.mb(retained),
                skipped=result.reason,
                method=result.method,
            )
        ]

    def after_setup(self) -> list[Event]:
        """Setup transients (downloads, parsing) are freed by now: trim if worth it, else rebase.

        An integer policy always trims here; ``"auto"`` only when enough is retained,
        decided and rebased from one reading.
        """
        if self.policy.every is not None:
            return self.trim("setup")
        reading = self._read()
        retained = self.policy.retained(*reading)
        if self.policy.auto and retained is not None and retained >= self.policy.threshold(reading[0]):
            return self.trim("setup", retained)
        self.policy.rebase(*reading)
        return []

    def at_snapshot(
        self,
        rss: int | None,
        heap_in_use: int | None,
        arrow_live: int,
        headroom: int | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """The snapshot's chance to trim (auto policy); no decision while malloc's in-use figure is unknown."""
        retained = self.policy.retained(rss, heap_in_use, arrow_live)
        if self.policy.should_trim(retained, rss, self._clock(), headroom, limit):
            return self.trim("auto", retained)
        return []

    def idle_left(self) -> float | None:
        """Seconds until the idle check is due (0: now); None when this idle period's decision was made."""
        if self._idle_done or self._idle_since is None:
            return None
        return max(0.0, self._idle_since + IDLE_S - self._clock())

    def idle_check(self, active: bool, calls: int) -> list[Event]:
        """The timer's visit: ``active`` says whether a call ran since the previous visit.

        Trims once when no call ran for ``IDLE_S`` after at least two calls, if enough is retained.
        """
        now = self._clock()
        if active or self._idle_since is None:
            self._idle_since, self._idle_done = now, False
            return []
        if self._idle_done or now - self._idle_since < IDLE_S:
            return []
        self._idle_done = True  # this idle period's decision, trim or not: the timer backs off until calls resume
        if calls <= 1:
            return []
        retained, rss = self._retained_now()
        if self.policy.should_trim_idle(retained, rss):
            return self.trim("idle", retained)
        return []
