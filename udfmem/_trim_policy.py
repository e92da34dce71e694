"""When to trim: the ``trim=`` policy of a tracked UDF (``"auto"``, ``"off"`` or every N calls).

``"auto"`` trims only when it pays. At each snapshot it estimates the memory that is
resident but neither live in malloc nor in Arrow (RSS - malloc in-use - Arrow live,
minus the same quantity taken as a baseline after setup: code, libraries, mapped files),
and trims when that exceeds max(64 MiB, 10% of RSS), at most once per
``MIN_INTERVAL_S``. After every trim the baseline is taken again, so memory that a trim
cannot release (a mapped model file, say) never triggers another. When the UDF goes
idle (no call for ``IDLE_S``) with that much held, it trims once more, so an idle
worker gives its memory back. A blind cadence instead pays ~0.1 ms per MiB and locks
each arena every N calls whether or not anything was retained.
"""

from __future__ import annotations

import time
from typing import Any

from . import _allocator, _log, _probes

MIN_INTERVAL_S = 30.0
IDLE_S = 2.0
THRESHOLD_FLOOR = 64 * _probes.MIB
THRESHOLD_SHARE = 0.10


class TrimPolicy:
    """The trim decisions of one UDF in one process."""

    def __init__(self, mode: str | int) -> None:
        self.mode = mode
        self._base_other: int | None = None
        self._last_trim = float("-inf")

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
        if rss is not None:
            self._base_other = rss - (heap_in_use or 0) - arrow_live

    def retained(self, rss: int | None, heap_in_use: int | None, arrow_live: int) -> int | None:
        """Estimated freed-but-resident bytes now (never negative), or None before a baseline."""
        if rss is None or self._base_other is None:
            return None
        return max(0, rss - (heap_in_use or 0) - arrow_live - self._base_other)

    @staticmethod
    def threshold(rss: int | None) -> int:
        """The retention worth a trim: max(64 MiB, 10% of RSS)."""
        return max(THRESHOLD_FLOOR, int((rss or 0) * THRESHOLD_SHARE))

    def should_trim(self, retained: int | None, rss: int | None, now: float) -> bool:
        """At a snapshot: trim when enough is retained and the last trim is old enough."""
        if not self.auto or retained is None:
            return False
        return retained >= self.threshold(rss) and now - self._last_trim >= MIN_INTERVAL_S

    def should_trim_idle(self, retained: int | None, rss: int | None) -> bool:
        """When the UDF has gone idle (the caller asks once per idle period): trim if enough is retained."""
        return self.auto and retained is not None and retained >= self.threshold(rss)

    def trimmed(self, now: float | None = None) -> None:
        """Record a trim (the caller rebases afterwards)."""
        self._last_trim = time.monotonic() if now is None else now


class Trimmer:
    """Runs a UDF's :class:`TrimPolicy`: trims, rebases, emits ``udfmem.trim`` events."""

    def __init__(self, policy: TrimPolicy, log: Any) -> None:
        self.policy = policy
        self.log = log
        self._idle_count = -1
        self._idle_since = 0.0
        self._idle_trimmed_count = -1

    @staticmethod
    def _reading() -> tuple[int | None, int | None, int]:
        """RSS, malloc in-use and Arrow live bytes now."""
        p = _probes.probes()
        rss = p.rss()
        heap = p.heap()
        return rss, heap[0] if heap else None, _probes.arrow_live()

    def _retained_now(self) -> tuple[int | None, int | None]:
        """The retention estimate now, and the RSS it was read with."""
        rss, heap_in_use, arrow_live = self._reading()
        return self.policy.retained(rss, heap_in_use, arrow_live), rss

    def rebase(self) -> int | None:
        """Take the policy's baseline now; return the RSS read."""
        rss, heap_in_use, arrow_live = self._reading()
        self.policy.rebase(rss, heap_in_use, arrow_live)
        return rss

    def trim(self, reason: str, retained: int | None = None) -> int | None:
        """Trim now, log it, rebase; return the RSS after. Unsupported: one warning, policy off."""
        result = _allocator.trim()
        self.policy.trimmed()
        if not result.supported:
            self.policy.mode = "off"
            _log.warn_once(self.log, "trim-unsupported", f"cannot release memory here: {result.reason}")
            return self.rebase()
        self.log.info(
            "udfmem.trim",
            reason=reason,
            released_mb=result.released_mb,
            malloc_released_mb=result.malloc_released_mb,
            arrow_released_mb=result.arrow_released_mb,
            took_ms=result.took_ms,
            rss_before_mb=result.rss_before_mb,
            rss_after_mb=result.rss_after_mb,
            retained_mb=_probes.mb(retained),
            skipped=result.reason,
        )
        return self.rebase()

    def after_setup(self) -> int | None:
        """Setup transients (downloads, parsing) are freed by now: trim if worth it; return the RSS.

        An integer policy always trims here; ``"auto"`` only when enough is retained.
        """
        if self.policy.every is not None:
            return self.trim("setup")
        if self.policy.auto:
            retained, rss = self._retained_now()
            if retained is not None and retained >= self.policy.threshold(rss):
                return self.trim("setup", retained)
        return self.rebase()

    def at_snapshot(self, rss: int | None, heap_in_use: int | None, arrow_live: int, now: float) -> None:
        """The snapshot's chance to trim (auto policy)."""
        retained = self.policy.retained(rss, heap_in_use, arrow_live)
        if self.policy.should_trim(retained, rss, now):
            self.trim("auto", retained)

    def idle_check(self, calls: int, now: float) -> None:
        """Called by the timer with the call counter: trim once when calls stopped for ``IDLE_S``."""
        if calls != self._idle_count:
            self._idle_count, self._idle_since = calls, now
            return
        if calls <= 1 or calls == self._idle_trimmed_count or now - self._idle_since < IDLE_S:
            return
        self._idle_trimmed_count = calls
        retained, rss = self._retained_now()
        if self.policy.should_trim_idle(retained, rss):
            self.trim("idle", retained)
