"""The timer: one daemon thread per process for what is due by the clock, not by calls.

It flags ``every_s`` snapshots (checking the clock on every call would cost ~0.9 µs a
call; the visit lowers the UDF's threshold so the next call snapshots), lets the trim
policy notice an idle UDF, and re-sets the gauges an exporter would drop. Nothing of it
runs on the hot path. Each watched object says when it wants its next visit; the
deadlines are kept in a heap, so a pass visits only what is due (and what was woken),
whatever the number of watched objects: the idle timer's cost follows what is due, and
watching a new object wakes the thread only if its first visit comes before the
thread's current sleep ends.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType
from typing import Protocol

from .. import _process, _reentry

RETRY_S = 1.0
MAX_WAIT_S = 60.0  # the timer thread wakes at least this often
BUSY_FOR_S = 0.1  # a stack walk's answer serves this long
_busy = (float("-inf"), False)  # when the stacks were last walked, and whether a call was in progress


def call_in_progress(codes: frozenset[CodeType]) -> bool:
    """Whether any thread is inside a tracked call or setup now (a frame running one of ``codes`` on its stack).

    ``codes`` are udfmem's wrappers' code objects (``udfmem.runtime.wrappers.WRAPPER_CODES``).
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
        for top in current_frames().values():
            frame = top
            while frame is not None and not busy:
                busy = frame.f_code in codes
                frame = frame.f_back
    _busy = (now, busy)
    return busy


class Watched(Protocol):
    """What the timer needs of what it visits (a UDF's state, the metrics sink)."""

    def tick(self, now: float) -> float | None:
        """Do what is due at ``now`` (the timer's clock); return when to come back, None for never."""

    def tick_failed(self, exc: Exception) -> None:
        """``tick`` raised ``exc``: say so (once); the timer keeps visiting."""


Ref = weakref.ref  # the timer holds what it watches weakly: a state lives as long as its UDF


class Timer:
    """Visits each watched object when it asked to be, or at once when woken.

    ``clock``: the timer's time (monotonic by default); tests pass a fake one with
    ``thread=False`` and drive :meth:`run_once` themselves, without sleeping.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, thread: bool = True) -> None:
        self._clock = clock
        self._threaded = thread
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """Forget the watched objects and the thread (a fork child has neither)."""
        # owned by the pass (the timer thread): what is watched, with its heap entry's number
        # (None: no visit asked), and the heap of (deadline, number, object); an entry whose
        # number is no longer its object's is stale and dropped when it comes up
        self._entry: dict[Ref[Watched], int | None] = {}
        self._heap: list[tuple[float, int, Ref[Watched]]] = []
        self._numbers = itertools.count()
        # appended by any thread, never waiting; drained by the pass
        self._new: collections.deque[tuple[Ref[Watched], float | None]] = collections.deque()
        self._woken: collections.deque[Ref[Watched]] = collections.deque()
        self._gone: collections.deque[Ref[Watched]] = collections.deque()  # collected: forget them
        self._sleep_until = float("-inf")  # when the thread's sleep ends; -inf: in a pass (it looks at _new after)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # starting the thread only; re-entrant: a finalizer may watch inside watch

    def watch(self, obj: Watched, at: float | None = None) -> None:
        """Start watching ``obj``: its first visit at ``at`` (the timer's clock), or at the next pass if None.

        Wakes the thread only if that visit comes before the thread's current sleep ends
        (watching thousands of UDFs does not make thousands of passes). Never waits on
        the timer's pass.
        """
        self._new.append((weakref.ref(obj, self._gone.append), at))
        if self._threaded:
            thread = self._thread
            if thread is None or not thread.is_alive():
                with self._lock:
                    if self._thread is None or not self._thread.is_alive():
                        self._thread = threading.Thread(target=self._run, name="udfmem-timer", daemon=True)
                        self._thread.start()
        if at is None or at < self._sleep_until:
            self._wake.set()

    def wake(self, obj: Watched) -> None:
        """Visit ``obj`` now, whatever it asked (calls resumed after it backed off). Never waits."""
        self._woken.append(weakref.ref(obj))
        self._wake.set()

    def watched(self) -> int:
        """How many live objects the timer watches now (O(watched): for tests and diagnostics)."""
        refs = [*self._entry, *(ref for ref, _ in list(self._new))]  # copies made under the GIL
        return len({id(obj) for obj in (ref() for ref in refs) if obj is not None})

    @staticmethod
    def visit(obj: Watched, now: float) -> float | None:
        """One visit of ``obj``: its next deadline; after a failure, a retry in ``RETRY_S``.

        A failing ``tick`` must not switch ``every_s`` and idle trims off for good, unseen:
        the object is told (it warns once) and visited again soon. The visit is a udfmem
        section (:mod:`udfmem._reentry`): a finalizer run inside it defers its udfmem
        work to the visit's end instead of waiting on a lock the visit holds.
        """
        here = _reentry.here
        if here.inside:
            return now + RETRY_S
        try:
            here.inside = True
            return obj.tick(now)
        except Exception as exc:
            with contextlib.suppress(Exception):  # nothing more can be done; the retry still comes
                obj.tick_failed(exc)
            return now + RETRY_S
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def run_once(self, now: float) -> float:
        """One pass: visit what is due at ``now`` or woken; seconds until the next deadline (at most ``MAX_WAIT_S``)."""
        woken: list[Ref[Watched]] = []
        while self._woken:  # first: an object woken after its watch() is then in _new already
            woken.append(self._woken.popleft())
        entry, heap = self._entry, self._heap
        while self._gone:
            with contextlib.suppress(TypeError):  # collected before any pass saw it: never hashed, never here
                entry.pop(self._gone.popleft(), None)
        while self._new:
            ref, at = self._new.popleft()
            if ref() is not None:  # a watch() of an object watched already moves its next visit
                self._schedule(ref, now if at is None else at)
        seen: set[int] = set()
        for ref in woken:
            obj = ref()
            if obj is not None and ref in entry and id(obj) not in seen:
                seen.add(id(obj))
                self._schedule(ref, self.visit(obj, now))
            del obj
        due: list[Ref[Watched]] = []
        while heap and heap[0][0] <= now:  # all due first: what a visit asks for now waits for the next pass
            _, number, ref = heapq.heappop(heap)
            if entry.get(ref) == number:  # else stale: visited since (woken), or collected
                due.append(ref)
        for ref in due:
            obj = ref()
            if obj is None:
                entry.pop(ref, None)
                continue
            self._schedule(ref, self.visit(obj, now))
            del obj  # one object at a time is held, never while asleep
        if len(heap) > 2 * len(entry) + 64:  # stale entries (wakes, collected objects) are over half: rebuild
            self._heap = heap = [item for item in heap if entry.get(item[2]) == item[1]]
            heapq.heapify(heap)
        return min(MAX_WAIT_S, max(0.0, heap[0][0] - now)) if heap else MAX_WAIT_S

    def _schedule(self, ref: Ref[Watched], deadline: float | None) -> None:
        """In the pass: ``ref``'s next visit at ``deadline`` (None: only when woken)."""
        if deadline is None:
            self._entry[ref] = None
            return
        number = next(self._numbers)
        self._entry[ref] = number
        heapq.heappush(self._heap, (deadline, number, ref))

    def _run(self) -> None:
        while True:
            self._wake.clear()  # before the pass: a wake during it is not lost
            self._sleep_until = float("-inf")
            now = self._clock()
            wait = self.run_once(now)
            self._sleep_until = now + wait  # first, then the look: a watch() sees one or the other
            if not self._new:
                self._wake.wait(timeout=max(0.01, wait))


timer = Timer()
_process.on_new_process(timer.reset_after_fork, _process.RUNTIME, fork_only=True)  # a fork child has no timer thread
