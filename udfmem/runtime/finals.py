"""The end of the work: a last snapshot (``final=true``) when a UDF object is released or the process exits.

So a series ends where the work ended, not at the last multiple of ``every``. Engines
that keep one object per worker (Ray Data actors) release it and exit without running
``atexit``; engines that re-create objects (Daft, per partition) get a final snapshot
per object that ran calls past the last snapshot; a normal exit gives one per live UDF.
:class:`Finals` is a part of :class:`~udfmem.runtime.state.UDFState`, kept apart by concept.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
import weakref
from typing import Any

from .. import _settings
from ..emit.emitter import Emitter
from . import reentry as _reentry
from . import registry as _registry


class Finals:
    """The final-snapshot part of a UDF's state (mixed into ``UDFState``, which provides the fields below)."""

    owner: str | None
    settings: _settings.Settings | None
    emitter: Emitter
    counter: itertools.count[int]
    _pid: int
    _snap_lock: threading.RLock
    _last_call: int
    _final_call: int
    _watched: weakref.ref[Any] | None

    def _snapshot(self, label: int, final: bool | None = None) -> None:
        raise NotImplementedError  # UDFState's

    def _final_when_released(self, instance: Any) -> None:
        """Emit the final snapshot when ``instance``, a UDF object seen on the slow path, is released.

        Engines that keep one object per worker (Ray Data actors) release it and exit
        without running ``atexit``; engines that re-create objects (Daft, per partition)
        get a final snapshot per object that ran calls past the last snapshot.
        """
        self._watched = None
        mro = type(instance).__mro__ if instance is not None else ()
        if any(getattr(k, "__qualname__", None) == self.owner for k in mro):
            with contextlib.suppress(TypeError):  # a class with __slots__ and no __weakref__
                self._watched = weakref.ref(instance)
                weakref.finalize(instance, self.final).atexit = False  # exit has its own hook

    def calls(self) -> int:
        """Calls counted so far in this process (not on the hot path: it reads the counter's repr)."""
        return int(repr(self.counter)[6:-1]) - 1  # "count(N)": N is the next number

    def final(self) -> None:
        """Emit the last snapshot (``final=true``): the UDF object was released or the process exits.

        So a series ends where the work ended, not at the last multiple of ``every``: only
        when calls were counted since the last snapshot. Nothing in a disabled UDF or in a
        fork child that has not bound. Waits at most 50 ms for another thread's snapshot;
        released while this thread is inside udfmem (the collector ran inside a snapshot,
        of this UDF or another), it waits for nothing: it is taken when that thread leaves
        udfmem. Never raises.
        """
        settings = self.settings
        if settings is None or settings.disable or self._pid != os.getpid():
            return
        here = _reentry.here
        if here.inside:
            _reentry.defer(self.final)
            return
        try:
            here.inside = True
            self._final()
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def _final(self) -> None:
        """Inside this thread's section: the final snapshot, if calls were counted since the last one.

        The lock is acquired inside the ``try`` and released first thing in its ``finally``
        (an ``RLock``: a thread that does not hold it cannot release it), so an interrupt
        never leaves it held.
        """
        lock = self._snap_lock
        try:
            try:
                if not lock.acquire(timeout=0.05):
                    return
                calls = self.calls()  # counted under the lock: a snapshot of a later call may have come first
                if calls > max(self._last_call, self._final_call):
                    self._final_call = calls
                    self._snapshot(calls, final=True)
            finally:
                try:  # noqa: SIM105 (suppress() is Python: a Ctrl-C in it keeps the lock)
                    lock.release()
                except RuntimeError:  # not held by this thread
                    pass
        except Exception as exc:
            self.emitter.warn_once("snapshot-failed", f"final snapshot failed: {exc!r}")


def _final_at_exit() -> None:
    """At normal exit: every live UDF of this process emits its final snapshot."""
    for state in _registry.states():
        state.final()


atexit.register(_final_at_exit)
