"""Setup phases: ``__init__`` and ``setup()`` measured as ``udfmem.setup`` events.

A mixin of :class:`udfmem._state.UDFState`: engines run ``__init__`` (Geneva on the
driver), users call ``setup()`` themselves, often lazily from ``__call__``. Each phase
reports its time, the RSS it added and its peak; a phase nested in another is measured
as part of the outer one. Growth is counted from the end of the setups that come before
the first snapshot, after any trim the policy makes there.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from . import _log, _probes

if TYPE_CHECKING:
    from ._trim_policy import Trimmer


class SetupPhases:
    """Measures setup phases; mixed into ``UDFState`` (which holds the attributes in its slots)."""

    _setup_depth: threading.local
    _last_call: int
    _last_t: float
    baseline: int | None
    log: Any
    setups: int
    trimmer: Trimmer | None

    def bind(self) -> bool:
        """Bind to this process; True if udfmem is enabled here (``UDFState`` implements it)."""
        raise NotImplementedError

    def _take_peak(self) -> tuple[int | None, bool]:
        raise NotImplementedError

    def start_profiling(self, instance: Any = None) -> None:
        """Open memray if switched on (``UDFState`` implements it)."""
        raise NotImplementedError

    def setup_begin(self, method: str, args: tuple[Any, ...] = ()) -> tuple[float, int | None] | None:
        """Start measuring a setup phase; None when disabled, unmeasurable, or nested.

        A phase inside another (``__init__`` calling ``self.setup()``) is measured as
        part of the outer one. Every call must be paired with :meth:`setup_end`. A
        ``setup()`` (never ``__init__``, which Geneva runs on the driver) opens memray
        first, when it is switched on, so the profile holds the setup's allocations.
        """
        depth = getattr(self._setup_depth, "n", 0)
        self._setup_depth.n = depth + 1
        if depth:
            return None
        try:
            if not self.bind():
                return None
            if method != "__init__":
                self.start_profiling(args[0] if args else None)
            self._take_peak()
            return time.perf_counter(), _probes.probes().rss()
        except Exception:
            return None

    def setup_end(self, token: tuple[float, int | None] | None, method: str, error: str | None) -> None:
        """Emit ``udfmem.setup`` for a phase begun with :meth:`setup_begin`. Never raises."""
        self._setup_depth.n -= 1
        if token is None:
            return
        try:
            t0, rss0 = token
            took = time.perf_counter() - t0
            peak, lifetime = self._take_peak()
            s = _probes.read(peak=peak, peak_is_lifetime=lifetime)
            rss = _probes.probes().rss()
            self.setups += 1
            self._last_t = time.monotonic()
            self.log.info(
                "udfmem.setup",
                method=method,
                setup_s=round(took, 3),
                rss_mb=s.rss_mb,
                delta_mb=_probes.mb(rss - rss0) if (rss is not None and rss0 is not None) else None,
                peak_rss_mb=s.peak_rss_mb,
                arrow_live_mb=s.arrow_live_mb,
                arrow_backend=s.arrow_backend,
                gap_mb=s.gap_mb,
                heap_in_use_mb=s.heap_in_use_mb,
                heap_free_mb=s.heap_free_mb,
                limit_mb=s.limit_mb,
                headroom_mb=s.headroom_mb,
                setups=self.setups,
                error=error,
            )
            if self.trimmer is not None:
                rss = self.trimmer.after_setup()
            if self._last_call == 0 and rss is not None:
                self.baseline = rss  # growth counts from the end of the setups before the first snapshot
        except Exception as exc:
            _log.warn_once(self.log, "setup-failed", f"setup measurement failed: {exc!r}")
