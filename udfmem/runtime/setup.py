"""Setup phases: ``__init__`` and ``setup()`` measured as ``udfmem.setup`` events.

Engines run ``__init__`` (Geneva on the driver), users call ``setup()`` themselves, often
lazily from ``__call__``. Each phase reports its time, the RSS it added and its peak; a
phase nested in another (``__init__`` calling ``self.setup()``) is measured as part of
the outer one, per thread. The state runs the phases (:meth:`UDFState.setup_begin`),
the binding reads memory (:meth:`Binding.setup_start`); the meter here counts and times.

The first setup event of each UDF in a process also says which memory fields this process
cannot read, and why (``not_read``, :func:`not_read_notice`); a UDF with no setup phase
measured here (a plain function, an object built elsewhere) says it once in a
``udfmem.warning`` named ``not-read`` (:data:`udfmem.analysis.diagnosis.NOT_READ`) before its first snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from ..events.schema import Memory, Setup
from ..probes import process as _probes

Token = tuple[float, "int | None"]
"""A measured phase's start: its time and RSS."""
_PUNCTUATION = str.maketrans({";": ",", "(": "[", ")": "]"})


def not_read_notice(unreadable: Mapping[str, str]) -> str | None:
    """The fields this process cannot read, as ``not_read`` says them; None when it reads them all.

    ``unreadable`` is :attr:`udfmem.probes.process.Probes.unreadable` (field -> why). Fields
    with the same reason share it: ``field,field (why); field (why)``, the fields in the
    order found; in a reason ``;`` becomes ``,`` and parentheses brackets, so the notice
    splits on ``; `` and ``grep 'not_read=.*peak_rss_mb'`` finds the processes that cannot
    read a field.
    """
    grouped: dict[str, list[str]] = {}
    for field, why in unreadable.items():
        grouped.setdefault(why.translate(_PUNCTUATION).strip(), []).append(field)
    return "; ".join(f"{','.join(fields)} ({why})" for why, fields in grouped.items()) or None


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

    def end(
        self, token: Token, method: str, error: str | None, memory: Memory, rss: int | None, not_read: str | None = None
    ) -> Setup:
        """The event of a phase begun with :meth:`begin` that ended with ``memory`` (``not_read``: its notice)."""
        t0, rss0 = token
        self.count += 1
        return Setup(
            method=method,
            setup_s=round(time.perf_counter() - t0, 3),
            memory=memory,
            delta_mb=_probes.mb(rss - rss0) if (rss is not None and rss0 is not None) else None,
            setups=self.count,
            error=error,
            not_read=not_read,
        )
