"""Per-(process, UDF) state: the call counter and the cadence; what is due goes to the binding.

A :class:`UDFState` is created when a UDF is decorated and found again by key when a
pickled copy of the UDF arrives in another process (its ``__reduce__`` carries only the
key and the options), so calls count per process and per UDF however often an engine
re-creates or unpickles instances. The wrappers read two of its fields per call
(``counter``, ``due_at``; a generator call also ``ready``); from ``due_at`` on a call takes the slow path here, which
binds the UDF to the process on first use (:class:`~udfmem.runtime.binding.Binding`:
settings, probes, emitter, policies) and then hands each due snapshot, trim or memray
stop to the binding. A fork child drops the binding and counts afresh.

Every slow path runs as this thread's udfmem section (:mod:`udfmem._reentry`):
work re-entering on the same thread (a finalizer, a signal handler) is deferred, never
waited for. The timer (:mod:`udfmem.runtime.timer`) visits the state for what is due
by the clock: an ``every_s`` snapshot, an idle trim.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import os
import sys
import threading
import time
from typing import Any

from .. import _reentry, _settings
from ..emit import emitter as _emit
from ..policies.trim import IDLE_S
from . import registry as _registry
from .binding import Binding, Identity
from .setup import SetupMeter, Token
from .timer import call_in_progress, timer
from .wrappers import WRAPPER_CODES

WAIT_S = 0.002  # how long a call waits for another thread's snapshot before it passes on
FINAL_WAIT_S = 0.05  # how long a final snapshot waits for another thread's snapshot
MAX_IDLE_WAIT_S = 60.0  # the longest an idle UDF waits for the timer's next visit (a call wakes it at once)
NEVER = sys.maxsize


@dataclasses.dataclass(frozen=True)
class StateView:
    """What :func:`udfmem.testing.state_of` shows of a UDF's state in this process (a copy, read once)."""

    key: str  # the registry key: the qualified name, ``#N`` for a second UDF of that name
    name: str  # ``udf=`` in events
    calls: int  # calls counted in this process
    bound: bool  # bound to this process (settings read, probes and emitter made)
    enabled: bool  # bound and not disabled
    snapshot_running: bool  # a thread is inside this UDF's snapshot now
    pending: int  # threads whose due snapshot waits for the one running
    trim_mode: str | int | None  # the trim policy in force (None: unbound or disabled)
    next_trim: int | None  # the call of the next integer-cadence trim (None: none due)


class UDFState:
    """Counter and cadence of one UDF in one process; never pickled whole (see ``__reduce__``)."""

    def __init__(self, key: str, options: _settings.Settings, source: str | None, owner: str | None) -> None:
        self.key = key
        self.options = options  # as decorated; the environment is applied at bind
        self.identity = Identity(key, options.name, owner, source, options.methods)
        self.fresh()

    def fresh(self) -> None:
        """Forget everything per-process; the next call binds again (the old binding is closed)."""
        old = getattr(self, "binding", None)
        if old is not None:
            old.close()
        self.counter = itertools.count(1)
        self.due_at = 0  # calls from this number on take the slow path (bind, snapshot, trim, memray stop)
        self.ready = False  # bound, and memray looked at: nothing more to do before a call
        self.binding: Binding | None = None
        self.every = self.options.every
        self.next_snap = self.every
        self.next_trim = NEVER
        self.memray_stop = NEVER  # stop the memray tracker after this call
        self._forced = False  # the timer asks the next call for an every_s snapshot
        self._call_asked = False  # the timer asks the next call to say that calls still run (idle check)
        self._dozing = False  # the timer backed off while idle: the next call wakes it
        self._idle_wait = 0.0  # the timer's backed-off interval for this idle UDF (0: not backed off)
        self._seen = 0  # the highest call number seen on the slow path
        self._pending: dict[int, int] = {}  # per thread, the highest call that made a snapshot due but gave up
        self._holder = 0  # the thread holding the snapshot lock, 0 when none
        self._bind_lock = threading.Lock()
        self.snapshot_lock = threading.RLock()  # an RLock knows its owner: released only by it (see _take)
        self.setup_meter = SetupMeter()
        # until bind: warnings of a UDF that could not bind, to the sinks the environment names
        self.emitter = _emit.default(self.name)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        ident = self.identity
        return _registry.lookup, (UDFState, self.key, self.options, ident.source, ident.owner)

    @property
    def name(self) -> str:
        """The UDF's name as logged in ``udf=``."""
        return self.options.name

    def calls(self) -> int:
        """Calls counted so far in this process (not on the hot path: it reads the counter's repr)."""
        return int(repr(self.counter)[6:-1]) - 1  # "count(N)": N is the next number

    def view(self) -> StateView:
        """A copy of what tests and tools may look at (:func:`udfmem.testing.state_of`)."""
        b = self.binding
        trimmer = b.trimmer if b is not None else None
        return StateView(
            key=self.key,
            name=self.name,
            calls=self.calls(),
            bound=b is not None,
            enabled=b is not None and not b.settings.disable,
            snapshot_running=self._holder != 0,
            pending=len(self._pending),
            trim_mode=trimmer.policy.mode if trimmer is not None else None,
            next_trim=self.next_trim if self.next_trim != NEVER else None,
        )

    # -- binding -----------------------------------------------------------------------

    def bind(self) -> bool:
        """Bind to this process if not yet (read env, make the emitter); True if enabled.

        A fork child is unbound by the at-fork hook (:meth:`fresh`), so no ``getpid`` per call.
        """
        if self.binding is None:
            with self._bind_lock:
                if self.binding is None:
                    self._bind()
        b = self.binding
        return b is not None and not b.settings.disable

    def _bind(self) -> None:
        b = Binding.create(self.identity, self.options)
        self.emitter = b.emitter
        settings = b.settings
        self.every = settings.every
        if settings.disable:
            self.due_at = NEVER
        else:
            self.next_snap = self._next_multiple(b.last_call)
            trim_every = b.trimmer.policy.every if b.trimmer is not None else None
            self.next_trim = trim_every if trim_every else NEVER
            self.due_at = 0 if (settings.memray_dir is not None and not self.ready) else self._due()
        self.binding = b  # only now: a bind that failed half-way leaves the state unbound
        if not settings.disable and (settings.every_s > 0 or settings.trim == "auto"):
            # the first visit when something can be due (no wake per bind: binding 10,000 classes
            # would wake the timer 10,000 times); an idle decision may come up to IDLE_S / 2 later
            auto = b.trimmer is not None and b.trimmer.policy.auto
            first = min(settings.every_s if settings.every_s > 0 else IDLE_S, IDLE_S / 2 if auto else IDLE_S)
            timer.watch(self, at=time.monotonic() + first)

    def _next_multiple(self, n: int) -> int:
        return (n // self.every + 1) * self.every

    def _due(self) -> int:
        """The next call that has something to do, from the cadence (0: the next one, asked by the timer)."""
        if self._forced or self._call_asked:
            return 0
        return min(self.next_snap, self.next_trim, self.memray_stop)

    def _start_profiling(self, instance: Any) -> None:
        """Open memray if switched on (first call or first ``setup()`` here); note when to stop it."""
        b = self.binding
        if self.ready or b is None:
            return
        self.ready = True
        limit = b.start_profiling(instance, self.final)
        if limit is not None:
            self.memray_stop = limit
            self.due_at = min(self.due_at, limit)

    # -- per call ----------------------------------------------------------------------

    def before(self, n: int, args: tuple[Any, ...] = ()) -> None:
        """Slow path before call ``n`` (0: a generator call, counted when it ends): bind, note the UDF object."""
        if self.ready:  # bound, and memray looked at: only note a new UDF object
            b = self.binding
            if b is not None and args and b.identity.owner is not None:
                watched = b.watched
                if watched is None or watched() is not args[0]:
                    b.watch(args[0], self.final)
            return
        try:
            # inside udfmem already (a finalizer run during a snapshot): this call goes unbound, counted
            _reentry.section(self._bind_and_profile, args[0] if args else None)
        except Exception as exc:
            self.due_at = NEVER  # give up rather than fail every call
            self.ready = True  # and never try again before a call
            self.emitter.warn_once("bind-failed", f"udfmem is off for this UDF: {exc!r}")

    def _bind_and_profile(self, instance: Any) -> None:
        """Bind, then open memray if switched on (one section: a finalizer inside waits for neither)."""
        self.bind()
        if not self.ready:
            self._start_profiling(instance)

    def after(self, n: int) -> None:
        """Slow path after call ``n``: snapshot, trim or stop memray if due. Never raises, never hangs.

        A call that finds another thread in a snapshot waits for it at most ``WAIT_S``
        (a snapshot takes ~20 µs; a trim or a first heap walk can take tens of ms), then
        publishes its number and passes on: the thread holding the lock takes the snapshot
        it made due when done, so the last one is never lost. A call re-entering udfmem on
        a thread already inside it (a finalizer or signal handler run inside a snapshot,
        of this UDF or another) never waits: it publishes its number and its snapshot is
        taken when that thread leaves udfmem (:mod:`udfmem._reentry`). A snapshot's
        ``call`` is the multiple of ``every`` that was crossed.
        """
        b = self.binding
        if b is None or b.settings.disable:  # the first call of a disabled UDF gets here once, then never
            return
        here = _reentry.here
        if here.inside:
            self._publish(n)
            _reentry.defer(self._drain)
            return
        try:
            here.inside = True
            self._take(n)
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def _publish(self, n: int) -> None:
        """Call ``n`` made a snapshot due but cannot take it now: the next holder of the lock will.

        One entry per thread, the highest number it published: bounded by the threads, never by the calls.
        """
        pending, me = self._pending, threading.get_ident()
        if n > pending.get(me, 0):
            pending[me] = n

    def _drain(self) -> None:
        """Deferred work (:func:`udfmem._reentry.defer`): take the snapshots published meanwhile."""
        self.after(0)

    def _take(self, n: int) -> None:
        """Inside this thread's section: take what call ``n`` (0: none) and the published calls made due.

        Interrupt-safe: the lock (an ``RLock``, which knows its owner) is acquired inside the
        ``try`` whose ``finally`` releases it first thing, so a KeyboardInterrupt landing
        anywhere never leaves it held; a release by a thread that does not hold it fails
        harmlessly (``RuntimeError``) instead of freeing another thread's lock.
        """
        lock, pending, me = self.snapshot_lock, self._pending, threading.get_ident()
        wait = n != 0  # a drain never waits: the holder takes what was published
        while True:
            try:
                if not (lock.acquire(blocking=False) or (wait and lock.acquire(timeout=WAIT_S))):
                    if n:
                        self._publish(n)  # published first, then one more try: the holder re-checks after it releases
                    if not lock.acquire(blocking=False):
                        return
                    n = 0
                self._holder = me
                if n:
                    self._step(n)
                latest = 0
                while pending:  # only the holder pops; a publisher racing a pop re-publishes, seen below
                    latest = max(latest, pending.popitem()[1])
                if latest:
                    self._step(latest)
            finally:
                if self._holder == me:
                    self._holder = 0
                try:  # noqa: SIM105 (suppress() is Python: a Ctrl-C in it keeps the lock)
                    lock.release()
                except RuntimeError:  # not held by this thread: another one holds it (or none)
                    pass
            if not pending:
                return  # nothing published meanwhile
            n, wait = 0, False

    def _step(self, n: int) -> None:
        """Under the snapshot lock: what call ``n`` makes due (the cadence), done by the binding."""
        b = self.binding
        if b is None:
            return
        every = self.every
        forced, self._forced = self._forced, False
        self._call_asked = False  # first, then the check (see _idle_visit)
        if self._dozing:  # calls resume while the timer backs off: it comes back now
            self._dozing = False
            timer.wake(self)
        try:
            if n > self._seen:
                self._seen = n
            # the label is the multiple of every that was crossed, whichever thread got here first
            label = n - n % every if n >= self.next_snap else n if forced else 0
            if label > b.last_call:
                b.snapshot(label)
            if n >= self.next_trim:
                trim_every = b.trimmer.policy.every if b.trimmer is not None and b.trim_every() else None
                self.next_trim = (n // trim_every + 1) * trim_every if trim_every else NEVER
            if n >= self.memray_stop:
                self.memray_stop = NEVER
                b.stop_profiling()
        except Exception as exc:
            b.emitter.warn_once("snapshot-failed", f"snapshot failed: {exc!r}")
        finally:
            self.next_snap = self._next_multiple(max(n, b.last_call))
            self.due_at = self._due()  # a force or an ask the timer set meanwhile reaches the next call

    # -- setup phases ------------------------------------------------------------------

    def setup_begin(self, method: str, args: tuple[Any, ...] = ()) -> Token | None:
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

    def _setup_begin(self, method: str, args: tuple[Any, ...]) -> Token | None:
        """Inside this thread's section: bind, open memray for a ``setup()``, read the start."""
        try:
            if not self.bind():
                return None
            if method != "__init__":
                self._start_profiling(args[0] if args else None)
            b = self.binding
            return b.setup_start(self.setup_meter) if b is not None else None
        except Exception as exc:
            self.emitter.warn_once("setup-failed", f"setup measurement failed: {exc!r}")
            return None

    def setup_end(self, token: Token | None, method: str, error: str | None) -> None:
        """Emit ``udfmem.setup`` for a phase begun with :meth:`setup_begin`. Never raises."""
        self.setup_meter.leave()
        here = _reentry.here
        if token is None or here.inside:
            return
        try:
            here.inside = True
            b = self.binding
            if b is not None:
                b.setup_done(token, method, error, self.setup_meter)
        except Exception as exc:
            self.emitter.warn_once("setup-failed", f"setup measurement failed: {exc!r}")
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    # -- the end of the work -----------------------------------------------------------

    def final(self) -> None:
        """Emit the last snapshot (``final=true``): the UDF object was released or the process exits.

        So a series ends where the work ended, not at the last multiple of ``every``: only
        when calls were counted since the last snapshot. Nothing in a disabled UDF or in a
        fork child that has not bound. Waits at most ``FINAL_WAIT_S`` for another thread's
        snapshot; released while this thread is inside udfmem (the collector ran inside a
        snapshot, of this UDF or another), it waits for nothing: it is taken when that
        thread leaves udfmem. Never raises.
        """
        b = self.binding
        if b is None or b.settings.disable or b.probes is None or b.probes.pid != os.getpid():
            return
        here = _reentry.here
        if here.inside:
            _reentry.defer(self.final)
            return
        try:
            here.inside = True
            self._final(b)
        finally:
            here.inside = False
            if here.deferred:
                _reentry.run_deferred()

    def _final(self, b: Binding) -> None:
        """Inside this thread's section: the final snapshot, if calls were counted since the last one.

        The lock is acquired inside the ``try`` and released first thing in its ``finally``
        (an ``RLock``: a thread that does not hold it cannot release it), so an interrupt
        never leaves it held.
        """
        lock = self.snapshot_lock
        try:
            try:
                if not lock.acquire(timeout=FINAL_WAIT_S):
                    return
                calls = self.calls()  # counted under the lock: a snapshot of a later call may have come first
                if calls > max(b.last_call, b.final_call):
                    b.final_call = calls
                    b.snapshot(calls, final=True)
            finally:
                try:  # noqa: SIM105 (suppress() is Python: a Ctrl-C in it keeps the lock)
                    lock.release()
                except RuntimeError:  # not held by this thread
                    pass
        except Exception as exc:
            b.emitter.warn_once("snapshot-failed", f"final snapshot failed: {exc!r}")

    # -- the timer's visits ------------------------------------------------------------

    def force(self) -> None:
        """Make the next call take a snapshot (the ``every_s`` timer calls this)."""
        self._forced = True
        self.due_at = 0

    def tick(self, now: float) -> float | None:
        """The timer's visit: force an ``every_s`` snapshot, check for idleness; the next visit's time."""
        b = self.binding
        if b is None or b.settings.disable:
            return None
        wake: list[float] = []
        every_s = b.settings.every_s
        if every_s > 0:
            deadline = b.last_t + every_s
            if now >= deadline:
                self.force()  # idempotent: an idle UDF is simply flagged again
                deadline = now + every_s
            wake.append(deadline)
        if b.trimmer is not None and b.trimmer.policy.auto:
            wake.append(self._idle_visit(b, now))
        return min(wake) if wake else None

    def _idle_visit(self, b: Binding, now: float) -> float:
        """The trim policy's part of a visit: notice calls, decide an idle trim once; when to come back.

        Idle means no call completed since the previous visit (the next call clears the
        flag set here) and none in progress now. The stacks are walked (see
        :func:`udfmem.runtime.timer.call_in_progress`) only when an idle decision is due, not at
        every visit; while nothing is to decide (the decision was made, or a long call is
        still running) the visits back off (2, 4 ... ``MAX_IDLE_WAIT_S`` s) and the next
        completed call wakes the timer, so an idle worker costs ~nothing.
        """
        trimmer = b.trimmer
        assert trimmer is not None
        completed = not self._call_asked
        self._call_asked = True
        self.due_at = 0  # the next call takes the slow path once, clearing the flag
        come_back: float | None = now + IDLE_S / 2
        lock = self.snapshot_lock
        try:
            if lock.acquire(blocking=False):  # else a snapshot runs now: calls do, come back soon
                if completed:
                    b.say(trimmer.idle_check(True, self._seen))
                else:
                    left = trimmer.idle_left()
                    if left is None:
                        come_back = None  # decided already: nothing to do until calls resume
                    elif left > 0:
                        come_back = now + left  # not idle long enough yet: no walk
                    else:
                        b.say(trimmer.idle_check(call_in_progress(WRAPPER_CODES), self._seen))
                        come_back = None  # decided, or a long call runs: either way back off
        finally:
            try:  # noqa: SIM105 (suppress() is Python: a Ctrl-C in it keeps the lock)
                lock.release()
            except RuntimeError:  # not held by this thread
                pass
        if come_back is not None:
            self._idle_wait = 0.0
            return come_back
        self._idle_wait = min(max(2 * self._idle_wait, IDLE_S), MAX_IDLE_WAIT_S)
        self._dozing = True  # first, then the check: a call clears the flag first, then reads this
        if not self._call_asked:  # a call completed meanwhile and may have missed the flag
            self._dozing = False
            return now + IDLE_S / 2
        return now + self._idle_wait

    def tick_failed(self, exc: Exception) -> None:
        """The timer's visit raised: one warning; the timer visits again."""
        self.emitter.warn_once("timer-failed", f"the every_s/idle timer failed once and retries: {exc!r}")


def _final_at_exit() -> None:
    """At normal exit: every live UDF of this process emits its final snapshot."""
    for state in _registry.states():
        state.final()


atexit.register(_final_at_exit)
