"""Setup phases: ``__init__`` and ``setup()`` measured as ``udfmem.setup`` events.

Engines run ``__init__`` (Geneva on the driver), users call ``setup()`` themselves, often
lazily from ``__call__``. Each phase reports its time, the RSS it added and its peak; a
phase nested in another (``__init__`` calling ``self.setup()``) is measured as part of
the outer one, per thread. The state runs the phases (:meth:`UDFState.setup_begin`),
the binding reads memory (:meth:`Binding.setup_start`); the meter here counts and times.
"""

from __future__ import annotations

import threading
import time

from ..events.schema import Memory, Setup
from ..probes import process as _probes

Token = tuple[float, "int | None"]
"""A measured phase's start: its time and RSS."""


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
    def begin(rss: int | None) -> Token:
        """The token of a measured phase: its start time and RSS."""
        return time.perf_counter(), rss

    def end(self, token: Token, method: str, error: str | None, memory: Memory, rss: int | None) -> Setup:
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
