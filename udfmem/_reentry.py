"""One udfmem section per thread: work re-entering udfmem on the same thread is deferred, never waited for.

The garbage collector runs finalizers (a ``__del__``, a generator closed in a cycle, a
``weakref.finalize``) at whatever allocation triggers it, and a signal handler runs at
whatever instruction the signal lands on: inside a snapshot, they may call another
tracked UDF, release a UDF object or close a generator UDF, whose own snapshot would
then wait on a lock the interrupted snapshot holds on the same thread, forever. So each
of udfmem's slow paths (a call's snapshot, a final snapshot, a setup phase, the timer's
visit, a trim) runs as this thread's *section*; work arriving while the thread is
already inside one is :func:`defer`-red (run when the outermost section ends) or
skipped, and no lock udfmem takes is ever taken twice on one thread.

Interrupt-safe by construction: the flag is set inside the ``try`` whose ``finally``
clears it as its first statement, so an exception raised asynchronously (Ctrl-C) at any
point either never set it or clears it. Use :func:`section` or that same inline pattern::

    here = _reentry.here
    if here.inside:
        ...  # defer or skip
    try:
        here.inside = True
        ...
    finally:
        here.inside = False
        if here.deferred:
            _reentry.run_deferred()
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from . import _process

MAX_DEFERRED = 1024  # distinct deferred works per thread (two per UDF state at most: its snapshot, its final)
ROUNDS = 64  # works run per section exit (deferred work may defer more; the rest waits for the next exit)


class _Here(threading.local):
    """This thread's section flag, the work deferred meanwhile (a dict used as an ordered set), and whether it runs."""

    def __init__(self) -> None:
        self.inside = False
        self.draining = False
        self.deferred: dict[Callable[[], Any], None] = {}


here = _Here()


def defer(work: Callable[[], Any]) -> None:
    """Run ``work`` when this thread leaves its outermost section; once, however often deferred meanwhile.

    Works compare by equality, so a bound method (``state.final``) deferred twice runs once.
    Bounded: past ``MAX_DEFERRED`` distinct works, more are dropped (telemetry, never a wait).
    """
    deferred = here.deferred
    if len(deferred) < MAX_DEFERRED:
        deferred[work] = None


def run_deferred() -> None:
    """After the outermost section: run the deferred work, each in a section of its own. Never raises.

    One work after the other: the end of a work's own section, inside this loop, leaves the
    rest to it (run there, each work would nest a call inside the previous one, and past the
    interpreter's recursion limit the works would be lost).
    """
    h = here
    if h.draining:
        return
    deferred = h.deferred
    try:
        h.draining = True
        for _ in range(ROUNDS):
            if not deferred or h.inside:
                return
            work = next(iter(deferred))
            del deferred[work]
            with contextlib.suppress(Exception):  # each work reports its own failures; nothing may reach the caller
                work()
    finally:
        h.draining = False


def section(work: Callable[..., Any], *args: Any) -> bool:
    """Run ``work(*args)`` as this thread's section; False, running nothing, when already inside one."""
    h = here
    if h.inside:
        return False
    try:
        h.inside = True
        work(*args)
    finally:
        h.inside = False
        if h.deferred:
            run_deferred()
    return True


def _forget() -> None:
    """A new process: the forking thread is the child's only one, and nothing of udfmem runs there yet."""
    here.inside = here.draining = False
    here.deferred.clear()


_process.on_new_process(_forget, _process.RUNTIME - 1, fork_only=True)
