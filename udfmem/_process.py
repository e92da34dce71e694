"""This process's lifecycle: what each module of udfmem forgets when the process is new.

A fork child inherits udfmem's per-process things (kept file descriptors, locks held by
threads that do not exist in the child, the parent's warnings and counters) and must
start afresh; :func:`udfmem.testing.reset` asks for the same in a running process (less
what only a fork child must forget). Each module registers what it forgets here, once,
with an order, so one list runs in one order whatever the import order was: probes (10)
before the emitter (20) before the policies (30) before the runtime (40), whose states
ask the emitter for a fresh default.

A leaf: the standard library only, imported by every layer.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

PROBES, EMIT, POLICIES, RUNTIME = 10, 20, 30, 40
"""The orders of the layers: lower runs first."""

_forgetters: list[tuple[int, int, Callable[[], None], bool]] = []  # (order, registration, what, fork only)
_lock = threading.Lock()


def on_new_process(forget: Callable[[], None], order: int, fork_only: bool = False) -> None:
    """Run ``forget`` in every fork child, after those of a lower ``order``; also on :func:`reset` unless ``fork_only``.

    ``fork_only`` is for what only a new process lacks (the parent's file descriptors, its
    timer thread, its memray tracker), not what a reset of udfmem's memory should drop.
    """
    with _lock:
        _forgetters.append((order, len(_forgetters), forget, fork_only))
        _forgetters.sort(key=lambda entry: entry[:2])


def _run(fork: bool) -> None:
    for _, _, forget, fork_only in list(_forgetters):
        if fork or not fork_only:
            with contextlib.suppress(Exception):  # one that fails does not stop the others
                forget()


def reset() -> None:
    """Forget, in this running process, what udfmem remembers per process (:func:`udfmem.testing.reset`)."""
    _run(fork=False)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it
    _run(fork=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
