"""The timer: one daemon thread per process for what is due by the clock, not by calls.

It flags ``every_s`` snapshots (checking the clock on every call would cost ~0.9 µs a
call; the thread lowers the UDF's threshold to 0 so the next call snapshots) and lets
the trim policy notice an idle UDF. Nothing of it runs on the hot path.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from types import CodeType
from typing import Protocol

RETRY_S = 1.0
_call_codes: set[CodeType] = set()  # the code of udfmem's call and setup wrappers
BUSY_FOR_S = 0.1  # a stack walk's answer serves this long
_busy = (float("-inf"), False)  # when the stacks were last walked, and whether a call was in progress


def note_call_codes(codes: Iterable[CodeType]) -> None:
    """Tell :func:`call_in_progress` which code objects are udfmem's wrappers (the decorator does, once)."""
    _call_codes.update(codes)


def call_in_progress() -> bool:
    """Whether any thread is inside a tracked call or setup now (a wrapper's frame is on its stack).

    Idle means no call in progress, not merely none completed lately: a call sleeping in a
    retry backoff is busy. The timer asks this only before an idle decision (at most every
    ``IDLE_S / 2``), walking every thread's stack once, so calls pay nothing for it. A
    coroutine or generator suspended between steps is on no stack and is not seen.
    """
    global _busy
    now = time.monotonic()
    if now - _busy[0] < BUSY_FOR_S:  # one walk serves every state the timer visits in a pass
        return _busy[1]
    current_frames = getattr(sys, "_current_frames", None)
    busy = False
    if current_frames is not None:  # else not CPython: only completed calls tell
        codes = _call_codes
        for top in current_frames().values():
            frame = top
            while frame is not None and not busy:
                busy = frame.f_code in codes
                frame = frame.f_back
    _busy = (now, busy)
    return busy


class Watched(Protocol):
    """What the timer needs of a UDF's state."""

    def tick(self, now: float) -> float | None:
        """Do what is due at ``now`` (monotonic); return when to come back, None for never."""

    def tick_failed(self, exc: Exception) -> None:
        """``tick`` raised ``exc``: say so (once); the timer keeps visiting."""


class Timer:
    """Sleeps until the earliest deadline among the watched states, then forces those due."""

    def __init__(self) -> None:
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """Forget the watched states and the thread (a fork child has neither)."""
        self._watched: set[weakref.ref[Watched]] = set()  # weakly: a state lives as long as its UDF
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def watch(self, state: Watched) -> None:
        """Start watching ``state``; start the thread on first use in this process."""
        with self._lock:
            self._watched.add(weakref.ref(state, self._watched.discard))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="udfmem-timer", daemon=True)
                self._thread.start()
        self._wake.set()

    @staticmethod
    def visit(state: Watched, now: float) -> float | None:
        """One visit of ``state``: its next deadline; after a failure, a retry in ``RETRY_S``.

        A failing ``tick`` must not switch ``every_s`` and idle trims off for good, unseen:
        the state is told (it warns once) and visited again soon.
        """
        try:
            return state.tick(now)
        except Exception as exc:
            with contextlib.suppress(Exception):  # nothing more can be done; the retry still comes
                state.tick_failed(exc)
            return now + RETRY_S

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            wait = 60.0
            for ref in list(self._watched):  # weak references: one state at a time is held, never while asleep
                state = ref()
                deadline = None if state is None else self.visit(state, now)
                del state
                if deadline is not None:
                    wait = min(wait, deadline - now)
            self._wake.wait(timeout=max(0.01, wait))
            self._wake.clear()


timer = Timer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=timer.reset_after_fork)  # a fork child has no timer thread
