"""Per-(process, UDF) state: the call counter, the snapshot window and what it owns.

A :class:`UDFState` is created when a UDF is decorated and found again by key when a
pickled copy of the UDF arrives in another process (its ``__reduce__`` carries only the
key and the settings), so calls count per process and per UDF however often an engine
re-creates or unpickles instances. Everything that belongs to one process (settings read
from the environment, the emitter, the trimmer, the memray tracker, the timer's visits)
is bound lazily on first use and dropped in a fork child, which starts counting afresh.

The state owns its collaborators (setup meter, trimmer, memray target, emitter) by
composition; none of them knows it. It is the one place where readings become events.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import types
import weakref
from typing import Any

from .. import _settings
from ..emit import emitter as _emit
from ..emit.emitter import Emitter
from ..events.schema import Memory, Snapshot
from ..policies import memray as _memray
from ..policies.detector import Detector
from ..policies.trim import Trimmer, TrimPolicy
from ..probes import allocator as _allocator
from ..probes import memory as _memory
from ..probes import process as _probes
from . import reentry as _reentry
from . import registry as _registry
from . import timer as _timer
from .finals import Finals
from .setup import SetupMeter, SetupPhases
from .visits import Visits

WAIT_S = 0.002  # how long a call waits for another thread's snapshot before it passes on


class UDFState(SetupPhases, Finals, Visits):
    """Counters and windows of one UDF in one process. Never pickled whole.

    Its setup phases (:mod:`udfmem.runtime.setup`), final snapshots (:mod:`udfmem.runtime.finals`) and
    the timer's visits (:mod:`udfmem.runtime.visits`) are parts kept in modules of their own.
    """

    _p: _probes.Probes  # this process's probes, from bind on

    def __init__(self, key: str, settings: _settings.Settings, source: str | None, owner: str | None) -> None:
        self.key = key
        self.options = settings  # as decorated; the environment is applied at bind
        self.source = source  # the file defining the UDF (memray attribution)
        self.owner = owner  # qualified name of the decorated class; None for a function
        self.fresh()

    def fresh(self) -> None:
        """Forget everything per-process; the next call binds again."""
        self.counter = itertools.count(1)
        self.setup_meter = SetupMeter()
        self.slow_at = 0  # calls from this number on take the slow path (snapshot, trim, memray, binding)
        self._pid = -1
        self._bind_lock = threading.Lock()
        self._snap_lock = threading.RLock()  # an RLock knows its owner: released only by it (see _take)
        self.settings: _settings.Settings | None = None
        # until bind: warnings of a UDF that could not bind, to the sinks the environment names
        self.emitter = _emit.default(self.options.name, *_settings.log_target())
        self.every = self.options.every
        self.next_snap = self.every
        self._forced = False
        self._armed = False  # the timer asks the next call to say that calls still run
        self._dozing = False  # the timer backed off while idle: the next call wakes it
        self._idle_wait = 0.0  # the timer's backed-off interval for this idle UDF (0: not backed off)
        self._seen = 0  # the highest call number seen on the slow path
        self._pending: dict[int, int] = {}  # per thread, the highest call that made a snapshot due but gave up
        self._holder = 0  # the thread holding the snapshot lock, 0 when none (for tests and debugging)
        self._last_call = 0
        self._last_t = 0.0
        self._window = 0
        self.baseline_mb: float | None = None  # private RSS (MiB) at the end of setup: growth counts from here
        self.trimmer: Trimmer | None = None
        self.detector: Detector | None = None
        self.next_trim = sys.maxsize
        self.memray_stop = sys.maxsize  # stop the memray tracker after this call
        self._final_call = 0  # the call count of the last final snapshot
        self._watched: weakref.ref[Any] | None = None  # the UDF object whose release emits the final snapshot
        self.ready = False  # bound, and memray looked at: nothing more to do before a call

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _registry.lookup, (UDFState, self.key, self.options, self.source, self.owner)

    @property
    def name(self) -> str:
        """The UDF's name as logged in ``udf=``."""
        return self.options.name

    # -- binding -----------------------------------------------------------------------

    def bind(self) -> bool:
        """Bind to this process (read env, make the emitter) if not yet; True if enabled.

        A fork child is unbound by the at-fork hook (:meth:`fresh`), so no ``getpid`` per call.
        """
        if self._pid < 0:
            with self._bind_lock:
                if self._pid < 0:
                    self._bind()
        settings = self.settings
        return settings is not None and not settings.disable

    def _bind(self) -> None:
        settings, problems = _settings.resolve(self.options)
        self.emitter = emitter = Emitter(self.name, settings.log_format, settings.log_dir, settings.metrics)
        for problem in problems:
            emitter.warn_once(
                "bad-env",
                f"ignored {problem.var}={problem.value!r} ({problem.reason}); using {problem.default}",
                once_key=f"bad-env:{problem.var}={problem.value}",
                var=problem.var,
            )
        self.every = settings.every
        if settings.disable:
            self.slow_at = sys.maxsize
        else:
            if settings.arena_max is not None:
                applied, caveat = _allocator.set_arena_max(settings.arena_max)
                if caveat or not applied:
                    emitter.warn_once("arena-max", f"arena_max={settings.arena_max}: {caveat}")
            self._p = probes = _probes.probes()
            self._window = probes.windows.open()
            weakref.finalize(self, probes.windows.close, self._window)  # a state lives as long as its UDF
            self.detector = Detector(self._inspected) if settings.suspect else None
            on_trim = self.detector.trimmed if self.detector is not None else None
            self.trimmer = Trimmer(TrimPolicy(settings.trim), emitter, self._trim_reading, on_trim=on_trim)
            self.trimmer.rebase()  # before the first call: no retention yet
            self.baseline_mb = _probes.mb(_memory.private(*probes.resident()))
            self._last_t = time.monotonic()
            self.next_snap = self._next_multiple(self._last_call)
            every_trim = self.trimmer.policy.every
            self.next_trim = every_trim if every_trim else sys.maxsize
            self.slow_at = min(self.next_snap, self.next_trim)
            if settings.memray_dir is not None and not self.ready:
                self.slow_at = 0  # the first call takes the slow path and opens memray
        self.settings = settings  # only now: a bind that failed half-way leaves the state unbound
        self._pid = os.getpid()
        gauges = emitter.metrics
        if not settings.disable and (settings.every_s > 0 or settings.trim == "auto" or (gauges and gauges.expires)):
            _timer.timer.watch(self)

    @staticmethod
    def _trim_reading() -> tuple[int | None, int | None, int]:
        """Private RSS, malloc in-use (within the heap budget, else None) and Arrow live bytes now."""
        p = _probes.probes()
        return _memory.private(*p.resident()), p.heap_in_use(p.heap_budget()), _probes.arrow_live()

    def _next_multiple(self, n: int) -> int:
        return (n // self.every + 1) * self.every

    def start_profiling(self, instance: Any = None) -> None:
        """Open memray for this process if switched on (first call or first ``setup()`` here).

        ``instance`` is the UDF object of a method call: when it is released (Ray tears
        actors down before ``atexit``; Daft drops instances per partition) the tracker is
        closed while its memory is still allocated, so the file shows what it held.
        """
        settings = self.settings
        if self.ready or settings is None:
            return
        self.ready = True
        if settings.disable:
            return
        if self.owner is not None:
            self._final_when_released(instance)
        target = _memray.Target(
            self.key, self.name, settings.methods, tuple(m for m in ("__init__", settings.setup) if m), self.source
        )
        if not _memray.start(target, settings, _settings.memray_switch(settings), self.emitter):
            return
        if settings.memray_calls is not None:
            self.memray_stop = settings.memray_calls
            self.slow_at = min(self.slow_at, self.memray_stop)
        watched = self._watched() if self._watched is not None else None
        if watched is not None and watched is instance:  # the UDF object _final_when_released found
            _memray.stop_when_released(watched)

    # -- per call ----------------------------------------------------------------------

    def before(self, n: int, args: tuple[Any, ...] = ()) -> None:
        """Slow path before call ``n`` (0: a generator call, counted when it ends): bind."""
        if self.ready:  # bound, and memray looked at: only note a new UDF object
            watched = self._watched
            if self.owner is not None and args and (watched is None or watched() is not args[0]):
                self._final_when_released(args[0])
            return
        try:
            # inside udfmem already (a finalizer run during a snapshot): this call goes unbound, counted
            _reentry.section(self._bind_and_profile, args[0] if args else None)
        except Exception as exc:
            self.slow_at = sys.maxsize  # give up rather than fail every call
            self.ready = True  # and never try again before a call
            self.emitter.warn_once("bind-failed", f"udfmem is off for this UDF: {exc!r}")

    def _bind_and_profile(self, instance: Any) -> None:
        """Bind, then open memray if switched on (one section: a finalizer inside waits for neither)."""
        self.bind()
        if not self.ready:
            self.start_profiling(instance)

    def after(self, n: int) -> None:
        """Slow path after call ``n``: snapshot, trim or stop memray if due. Never raises, never hangs.

        A call that finds another thread in a snapshot waits for it at most ``WAIT_S``
        (a snapshot takes ~20 µs; a trim or a first heap walk can take tens of ms), then
        publishes its number and passes on: the thread holding the lock takes the snapshot
        it made due when done, so the last one is never lost. A call re-entering udfmem on
        a thread already inside it (a finalizer or signal handler run inside a snapshot,
        of this UDF or another) never waits: it publishes its number and its snapshot is
        taken when that thread leaves udfmem (:mod:`udfmem.runtime.reentry`). A snapshot's
        ``call`` is the multiple of ``every`` that was crossed.
        """
        settings = self.settings
        if settings is None or settings.disable:
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
        """Deferred work (:func:`udfmem.runtime.reentry.defer`): take the snapshots published meanwhile."""
        self.after(0)

    def _take(self, n: int) -> None:
        """Inside this thread's section: take what call ``n`` (0: none) and the published calls made due.

        Interrupt-safe: the lock (an ``RLock``, which knows its owner) is acquired inside the
        ``try`` whose ``finally`` releases it first thing, so a KeyboardInterrupt landing
        anywhere never leaves it held; a release by a thread that does not hold it fails
        harmlessly (``RuntimeError``) instead of freeing another thread's lock.
        """
        lock, pending, me = self._snap_lock, self._pending, threading.get_ident()
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
        """Under the snapshot lock: what call ``n`` makes due."""
        every = self.every
        forced, self._forced = self._forced, False
        self._armed = False  # first, then the check (see Visits._idle_visit)
        if self._dozing:  # calls resume while the timer backs off: it comes back now
            self._dozing = False
            _timer.timer.wake(self)
        try:
            if n > self._seen:
                self._seen = n
            # the label is the multiple of every that was crossed, whichever thread got here first
            label = n - n % every if n >= self.next_snap else n if forced else 0
            if label > self._last_call:
                self._snapshot(label)
            if n >= self.next_trim or n >= self.memray_stop:
                self._trim_or_stop(n)
        except Exception as exc:
            self.emitter.warn_once("snapshot-failed", f"snapshot failed: {exc!r}")
        finally:
            self.next_snap = self._next_multiple(max(n, self._last_call))
            # a force or an arm the timer set meanwhile must reach the next call
            self.slow_at = 0 if (self._forced or self._armed) else min(self.next_snap, self.next_trim, self.memray_stop)

    def _trim_or_stop(self, n: int) -> None:
        """A call reached the trim cadence or the memray call limit."""
        trimmer = self.trimmer
        every_trim = trimmer.policy.every if trimmer is not None else None
        if n >= self.next_trim:
            if trimmer is not None and every_trim:
                trimmer.trim("every")
            every_trim = trimmer.policy.every if trimmer is not None else None  # it may have turned itself off
            self.next_trim = (n // every_trim + 1) * every_trim if every_trim else sys.maxsize
        if n >= self.memray_stop:
            self.memray_stop = sys.maxsize
            if _memray.owns(self.key):
                _memray.stop("calls")

    def _snapshot(self, label: int, final: bool | None = None) -> None:
        """Read, emit one ``udfmem.snapshot`` labelled ``label``, let the trimmer look. The hot part of udfmem.

        Written flat on purpose (no intermediate reading object): it must cost little more
        than a hand-written snapshot with the same reads (see ``benchmarks/``).
        """
        now = time.monotonic()
        p = self._p
        rss, shared, peak, lifetime, heap = p.snapshot_reads(self._window)
        pa = sys.modules.get("pyarrow")  # only if the user imported it: never import it here
        arrow_live, backend = (_probes.arrow_live(), _probes.arrow_backend()) if pa is not None else (0, None)
        limit = p.limit
        usage = None if limit is None else p.cgroup_usage()
        memory = _memory.block(rss, shared, peak, lifetime, arrow_live, backend, heap, limit, usage, p.blocks())
        private, base = memory.rss_anon_mb if shared is not None else memory.rss_mb, self.baseline_mb
        self.emitter.emit(
            Snapshot(
                label,
                memory,
                None if (private is None or base is None) else round(private - base, 1),
                label - self._last_call,
                int((now - self._last_t) * 1000 + 0.5) / 1000,
                final,
            )
        )
        self._last_call = label
        self._last_t = now
        detector = self.detector
        if detector is not None:
            self._detect(detector, label, memory, final)
            gauges = self.emitter.metrics
            if gauges is not None:  # a detector that failed (and is off now) has no slope
                gauges.set_slope(detector.slope if self.detector is not None else None)
        trimmer = self.trimmer
        if trimmer is not None and trimmer.policy.auto:
            headroom = None if (limit is None or usage is None) else limit - usage
            trimmer.at_snapshot(_memory.private(rss, shared), p.heap_in_use(heap), arrow_live, headroom, limit)

    def _detect(self, detector: Detector, label: int, memory: Memory, final: bool | None) -> None:
        """Feed the online detector; emit its ``udfmem.suspect``. A failure turns it off, with one warning."""
        try:
            event = detector.observe(label, memory, bool(final))
        except Exception as exc:
            self.detector = None
            self.emitter.warn_once("suspect-failed", f"the online detector failed and is off: {exc!r}")
            return
        if event is not None:
            self.emitter.emit(event)

    def _inspected(self) -> tuple[Any, types.ModuleType | None]:
        """The UDF object (while alive) and its module, for the detector's attribute inspection."""
        watched = self._watched
        instance = watched() if watched is not None else None
        name = self.key.partition("#")[0]
        module = name[: -len(self.owner) - 1] if self.owner else name.rpartition(".")[0]
        return instance, sys.modules.get(module)
