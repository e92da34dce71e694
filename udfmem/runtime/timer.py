"""The timer: one daemon thread per process for what is due by the clock, not by calls.

It flags ``every_s`` snapshots (checking the clock on every call would cost ~0.9 µs a
call; the thread lowers the UDF's threshold to 0 so the next call snapshots) and lets
the trim policy notice an idle UDF. Nothing of it runs on the hot path. Each watched
state says when it wants its next visit and is visited only then (or when woken: calls
resuming after the state backed off), so an idle worker's timer sleeps up to a minute.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from types import CodeType
from typing import Protocol

from . import reentry as _reentry

RETRY_S = 1.0
MAX_WAIT_S = 60.0  # the timer thread wakes at least this often
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
        self._due: dict[weakref.ref[Watched], float] = {}  # each state's next visit; only the timer thread writes
        self._woken: collections.deque[weakref.ref[Watched]] = collections.deque()  # to visit now
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
        self.wake(state)

    def wake(self, state: Watched) -> None:
        """Visit ``state`` now, whatever it asked (calls resumed after it backed off). Never waits."""
        self._woken.append(weakref.ref(state))
        self._wake.set()

    @staticmethod
    def visit(state: Watched, now: float) -> float | None:
        """One visit of ``state``: its next deadline; after a failure, a retry in ``RETRY_S``.

        A failing ``tick`` must not switch ``every_s`` and idle trims off for good, unseen:
        the state is told (it warns once) and visited again soon. The visit is a udfmem
        section (:mod:`udfmem.runtime.reentry`): a finalizer run inside it defers its udfmem work
        to the visit's end instead of waiting on a lock the visit holds.
        """
        here = _reentry.here
        if here.inside:
            return now + RETRY_S
        try:
            here.inside = True
            return state.tick(now)
        except Exception as exc:
            with contextlib.suppress(Exception):  # nothing more can be done; the retry still comes
                state.tick_failed(exc)
            return now + RETRY_S
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def run_once(self, now: float) -> float:
        """One pass: visit the states that are due at ``now`` or woken; seconds until the next one is due."""
        woken = set()
        while self._woken:  # only this thread pops
            woken.add(self._woken.popleft())
        due = self._due
        wait = MAX_WAIT_S
        for ref in list(self._watched):  # weak references: one state at a time is held, never while asleep
            at = due.get(ref, now)
            if at > now and ref not in woken:
                wait = min(wait, at - now)
                continue
            state = ref()
            deadline = None if state is None else self.visit(state, now)
            del state
            due[ref] = float("inf") if deadline is None else deadline
            if deadline is not None:
                wait = min(wait, deadline - now)
        if len(due) > len(self._watched):  # forget the states that are gone
            for ref in [r for r in due if r not in self._watched]:
                del due[ref]
        return wait

    def _run(self) -> None:
        while True:
            self._wake.clear()  # before the pass: a wake during it is not lost
            wait = self.run_once(time.monotonic())
            self._wake.wait(timeout=max(0.01, wait))


timer = Timer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=timer.reset_after_fork)  # a fork child has no timer thread
