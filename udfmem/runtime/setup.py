"""Setup phases: ``__init__`` and ``setup()`` measured as ``udfmem.setup`` events.

Engines run ``__init__`` (Geneva on the driver), users call ``setup()`` themselves, often
lazily from ``__call__``. Each phase reports its time, the RSS it added and its peak; a
phase nested in another (``__init__`` calling ``self.setup()``) is measured as part of
the outer one, per thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..emit.emitter import Emitter
from ..events.schema import Memory, Setup
from ..policies.trim import Trimmer
from ..probes import memory as _memory
from ..probes import process as _probes
from . import reentry as _reentry


class SetupMeter:
    """Counts nesting and turns a phase's start and end readings into a :class:`Setup` event."""

    def __init__(self) -> None:
        self._depth = threading.local()
        self.count = 0  # phases measured in this process

    def enter(self) -> bool:
        """A phase starts on this thread; True when it is the outermost (the one to measure)."""
        depth = getattr(self._depth, "n", 0)
        self._depth.n = depth + 1
        return depth == 0

    def leave(self) -> None:
        """The phase begun by the matching :meth:`enter` ended."""
        self._depth.n = max(0, getattr(self._depth, "n", 1) - 1)

    @staticmethod
    def begin(rss: int | None) -> tuple[float, int | None]:
        """The token of a measured phase: its start time and RSS."""
        return time.perf_counter(), rss

    def end(
        self, token: tuple[float, int | None], method: str, error: str | None, memory: Memory, rss: int | None
    ) -> Setup:
        """The event of a phase begun with :meth:`begin` that ended with ``memory``."""
        t0, rss0 = token
        self.count += 1
        return Setup(
            method=method,
            setup_s=round(time.perf_counter() - t0, 3),
            memory=memory,
            delta_mb=_probes.mb(rss - rss0) if (rss is not None and rss0 is not None) else None,
            setups=self.count,
            error=error,
        )


class SetupPhases:
    """The setup-phase part of a UDF's state (mixed into ``UDFState``, which provides the fields below)."""

    setup_meter: SetupMeter
    emitter: Emitter
    trimmer: Trimmer | None
    baseline_mb: float | None
    _window: int
    _last_call: int
    _last_t: float

    def bind(self) -> bool:
        raise NotImplementedError  # UDFState's

    def start_profiling(self, instance: Any = None) -> None:
        raise NotImplementedError  # UDFState's

    def setup_begin(self, method: str, args: tuple[Any, ...] = ()) -> tuple[float, int | None] | None:
        """Start measuring a setup phase; None when disabled, nested or unmeasurable.

        Every call must be paired with :meth:`setup_end`. A ``setup()`` (never
        ``__init__``, which Geneva runs on the driver) opens memray first, when it is
        switched on, so the profile holds the setup's allocations.
        """
        if not self.setup_meter.enter():
            return None
        here = _reentry.here
        if here.inside:  # run by a finalizer inside udfmem on this thread: unmeasured, never waiting
            return None
        try:
            here.inside = True
            return self._setup_begin(method, args)
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def _setup_begin(self, method: str, args: tuple[Any, ...]) -> tuple[float, int | None] | None:
        """Inside this thread's section: bind, open memray for a ``setup()``, read the start."""
        try:
            if not self.bind():
                return None
            if method != "__init__":
                self.start_profiling(args[0] if args else None)
            p = _probes.probes()
            p.windows.take(self._window)
            return self.setup_meter.begin(p.rss())
        except Exception as exc:
            self.emitter.warn_once("setup-failed", f"setup measurement failed: {exc!r}")
            return None

    def setup_end(self, token: tuple[float, int | None] | None, method: str, error: str | None) -> None:
        """Emit ``udfmem.setup`` for a phase begun with :meth:`setup_begin`. Never raises."""
        self.setup_meter.leave()
        here = _reentry.here
        if token is None or here.inside:
            return
        try:
            here.inside = True
            self._setup_end(token, method, error)
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def _setup_end(self, token: tuple[float, int | None], method: str, error: str | None) -> None:
        """Inside this thread's section: read the end, emit the event, let the trimmer look."""
        try:
            p = _probes.probes()
            peak, lifetime = p.windows.take(self._window)
            memory, rss = _memory.read(p, peak, lifetime, p.heap_budget())
            self._last_t = time.monotonic()
            self.emitter.emit(self.setup_meter.end(token, method, error, memory, rss))
            if self.trimmer is not None:
                self.trimmer.after_setup()
            if self._last_call == 0:  # growth counts from the end of the setups before the first snapshot
                self.baseline_mb = _probes.mb(_memory.private(*p.resident()))
        except Exception as exc:
            self.emitter.warn_once("setup-failed", f"setup measurement failed: {exc!r}")
