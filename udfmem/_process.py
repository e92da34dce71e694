"""This process's lifecycle: what each module of udfmem forgets when the process is new.

A fork child inherits udfmem's per-process things (kept file descriptors, locks held by
threads that do not exist in the child, the parent's warnings and counters) and must
start afresh; :func:`udfmem.testing.reset` asks for the same in a running process. Each
module registers what it forgets here, once, with an order, so one list runs in one
order whatever the import order was: probes (10) before the emitter (20) before the
policies (30) before the runtime (40), whose states ask the emitter for a fresh default.

A leaf: the standard library only, imported by every layer.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

PROBES, EMIT, POLICIES, RUNTIME = 10, 20, 30, 40
"""The orders of the layers: lower runs first."""

_forgetters: list[tuple[int, int, Callable[[], None]]] = []  # (order, registration number, what to run)
_lock = threading.Lock()


def on_new_process(forget: Callable[[], None], order: int) -> None:
    """Run ``forget`` in every fork child (and on :func:`forget_all`), after those of a lower ``order``."""
    with _lock:
        _forgetters.append((order, len(_forgetters), forget))
        _forgetters.sort()


def forget_all() -> None:
    """Run every registered ``forget``, in order; one that fails does not stop the others."""
    for _, _, forget in list(_forgetters):
        with contextlib.suppress(Exception):
            forget()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it
    forget_all()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
