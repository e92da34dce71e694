"""Per-(process, UDF) state: the call counter, the snapshot window and the setup baseline.

A :class:`UDFState` is created when a UDF is decorated and found again by key when a
pickled copy of the UDF arrives in another process (its ``__reduce__`` carries only the
key and the options), so calls count per process and per UDF however often an engine
re-creates or unpickles instances. Everything that belongs to one process (settings read
from the environment, the logger, kept fds, the timer thread) is bound lazily on first
use and dropped in a fork child, which starts counting afresh.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import threading
import time
import weakref
from typing import Any

from . import _allocator, _config, _log, _memray, _probes
from ._setup import SetupPhases
from ._timer import timer
from ._trim_policy import IDLE_S, Trimmer, TrimPolicy

_states: dict[str, UDFState] = {}
_registry_lock = threading.Lock()
_seen_names: dict[str, int] = {}


def new_key(qualname: str) -> str:
    """A key for a newly decorated UDF: its qualified name plus a per-process sequence.

    Deterministic (two processes decorating in the same order agree), yet two UDFs with
    the same qualified name in one process, e.g. a class defined in a function called
    twice, still get their own counters.
    """
    with _registry_lock:
        seq = _seen_names.get(qualname, 0)
        _seen_names[qualname] = seq + 1
    return qualname if seq == 0 else f"{qualname}#{seq}"


def lookup(key: str, options: _config.Options) -> UDFState:
    """This process's state for ``key``, created on first sight (also used by unpickling)."""
    state = _states.get(key)
    if state is None:
        with _registry_lock:
            state = _states.get(key)
            if state is None:
                state = _states[key] = UDFState(key, options)
    return state


class UDFState(SetupPhases):
    """Counters and windows of one UDF in one process. Never pickled whole."""

    __slots__ = (
        "_bind_lock",
        "_forced",
        "_last_call",
        "_last_t",
        "_memray_checked",
        "_pid",
        "_setup_depth",
        "_snap_lock",
        "_win_peak",
        "baseline",
        "counter",
        "due",
        "every",
        "every_s",
        "key",
        "log",
        "memray_stop",
        "next_snap",
        "next_trim",
        "options",
        "settings",
        "setups",
        "trimmer",
    )

    def __init__(self, key: str, options: _config.Options) -> None:
        self.key = key
        self.options = options
        self._fresh()

    def _fresh(self) -> None:
        """Forget everything per-process; the next call binds again."""
        self.counter = itertools.count(1)
        self.due = 0  # the hot path takes the slow path when the call number reaches this
        self._pid = -1
        self._bind_lock = threading.Lock()
        self._snap_lock = threading.Lock()
        self._setup_depth = threading.local()
        self.settings: _config.Settings | None = None
        self.log: Any = None
        self.every = self.options.every
        self.every_s = self.options.every_s
        self.next_snap = self.every
        self._forced = False
        self._last_call = 0
        self._last_t = 0.0
        self._win_peak = 0
        self.baseline: int | None = None
        self.setups = 0
        self.trimmer: Trimmer | None = None
        self.next_trim = sys.maxsize
        self.memray_stop = sys.maxsize  # stop the memray tracker after this call
        self._memray_checked = False

    def __reduce__(self) -> tuple[Any, tuple[str, _config.Options]]:
        return lookup, (self.key, self.options)

    @property
    def name(self) -> str:
        """The UDF's name as logged in ``udf=``."""
        return self.options.name

    @property
    def source(self) -> str | None:
        """The file that defines the UDF, if known."""
        return self.options.source

    def start_profiling(self, instance: Any = None) -> None:
        """Open memray for this process if switched on (first call or first ``setup()`` here).

        ``instance`` is the UDF object of a method call: when it is released (Ray tears
        actors down before ``atexit``; Daft drops instances per partition) the tracker is
        closed while its memory is still allocated, so the file shows what it held.
        """
        if self._memray_checked or self.settings is None or self.settings.disabled:
            return
        self._memray_checked = True
        _memray.maybe_start(self, self.settings)
        self.due = min(self.due, self.memray_stop)
        owner = self.options.owner
        mro = type(instance).__mro__ if instance is not None else ()
        if owner is not None and _memray.owns(self) and any(getattr(k, "__qualname__", None) == owner for k in mro):
            with contextlib.suppress(TypeError):  # a class with __slots__ and no __weakref__
                weakref.finalize(instance, _memray.stop, "instance-released").atexit = False

    # -- binding -----------------------------------------------------------------------

    def bind(self) -> bool:
        """Bind to this process (read env, make the logger) if not yet; True if enabled."""
        if self._pid != os.getpid():
            with self._bind_lock:
                if self._pid != os.getpid():
                    self._bind()
        settings = self.settings
        return settings is not None and not settings.disabled

    def _bind(self) -> None:
        settings, problems = _config.resolve(self.options)
        self.log = _log.make_logger(self.name, settings.log_format, settings.log_dir)
        for problem in problems:
            _log.warn_once(
                self.log,
                "bad-env",
                f"ignored {problem.var}={problem.value!r} ({problem.reason}); using {problem.default}",
                once_key=f"bad-env:{problem.var}={problem.value}",
                var=problem.var,
            )
        self.settings = settings
        self.every = settings.every
        self.every_s = settings.every_s
        if settings.disabled:
            self.due = sys.maxsize
        else:
            if settings.arena_max is not None:
                applied, caveat = _allocator.set_arena_max(settings.arena_max)
                if caveat or not applied:
                    _log.warn_once(self.log, "arena-max", f"arena_max={settings.arena_max}: {caveat}")
            self.trimmer = Trimmer(TrimPolicy(settings.trim), self.log)
            self.baseline = self.trimmer.rebase()  # before the first call: no retention yet
            self._last_t = time.monotonic()
            self._take_peak()
            self.next_snap = self._next_multiple(self._last_call)
            every_trim = self.trimmer.policy.every
            self.next_trim = every_trim if every_trim else sys.maxsize
            self.due = min(self.next_snap, self.next_trim)
            if settings.memray_dir is not None and not self._memray_checked:
                self.due = 0  # the first call takes the slow path and opens memray
            if self.every_s > 0 or self.trimmer.policy.auto:
                timer.watch(self)
        self._pid = os.getpid()

    def _next_multiple(self, n: int) -> int:
        return (n // self.every + 1) * self.every

    # -- window peak -------------------------------------------------------------------

    def _take_peak(self) -> tuple[int | None, bool]:
        """Peak RSS since this UDF's last window began; starts a new window."""
        p = _probes.probes()
        with _peak_lock:
            kernel_peak = p.peak()
            lifetime = not p.reset_peak()
            if kernel_peak is not None:
                for state in list(_states.values()):
                    state._win_peak = max(state._win_peak, kernel_peak)
            peak = self._win_peak or kernel_peak
            self._win_peak = 0
        return peak, lifetime

    # -- per call ----------------------------------------------------------------------

    def before(self, n: int, args: tuple[Any, ...] = ()) -> None:
        """Slow path before call ``n`` (0: a generator call, counted when it ends): bind."""
        try:
            self.bind()
            if not self._memray_checked:
                self.start_profiling(args[0] if args else None)
        except Exception as exc:
            self.due = sys.maxsize  # give up rather than fail every call
            with contextlib.suppress(Exception):
                _log.warn_once(_log.make_logger(self.name), "bind-failed", f"udfmem is off for this UDF: {exc!r}")

    def after(self, n: int) -> None:
        """Slow path after call ``n``: take a snapshot if one is due. Never raises."""
        if self.settings is None or self.settings.disabled:
            return
        with self._snap_lock:  # one snapshot at a time; a thread waits ~30 µs at most
            self._after_locked(n)

    def _after_locked(self, n: int) -> None:
        try:
            if (n >= self.next_snap or self._forced) and n > self._last_call:
                self._snapshot(n)
            if n >= self.next_trim and self.trimmer is not None and self.trimmer.policy.every:
                self.trimmer.trim("every")
            if n >= self.memray_stop:
                self.memray_stop = sys.maxsize
                if _memray.owns(self):
                    _memray.stop("calls")
        except Exception as exc:
            _log.warn_once(self.log, "snapshot-failed", f"snapshot failed: {exc!r}")
        finally:
            self.next_snap = self._next_multiple(max(n, self._last_call))
            every_trim = self.trimmer.policy.every if self.trimmer is not None else None
            if not every_trim:
                self.next_trim = sys.maxsize  # also when the policy turned itself off
            elif n >= self.next_trim:
                self.next_trim = (n // every_trim + 1) * every_trim
            self._forced = False
            self.due = min(self.next_snap, self.next_trim, self.memray_stop)

    def force(self) -> None:
        """Make the next call take a snapshot (the ``every_s`` timer calls this)."""
        self._forced = True
        self.due = 0

    def tick(self, now: float) -> float | None:
        """The timer's visit: force an ``every_s`` snapshot, check for idleness; next visit time."""
        if self.settings is None or self.settings.disabled:
            return None
        wake: list[float] = []
        if self.every_s > 0:
            deadline = self._last_t + self.every_s
            if now >= deadline:
                self.force()  # idempotent: an idle UDF is simply flagged again
                deadline = now + self.every_s
            wake.append(deadline)
        trimmer = self.trimmer
        if trimmer is not None and trimmer.policy.auto:
            calls = int(repr(self.counter)[6:-1]) - 1  # "count(N)": N is the next call number
            with self._snap_lock:
                trimmer.idle_check(calls, now)
            wake.append(now + IDLE_S / 2)
        return min(wake) if wake else None

    def _snapshot(self, n: int) -> None:
        now = time.monotonic()
        p = _probes.probes()
        rss = p.rss()
        peak, lifetime = self._take_peak()
        heap = p.heap()
        arrow_live = _probes.arrow_live()
        limit = p.limit
        usage = p.cgroup_usage() if limit is not None else None
        r, m, base = round, _probes.MIB, self.baseline
        self.log.info(
            "udfmem.snapshot",
            call=n,
            rss_mb=None if rss is None else r(rss / m, 1),
            peak_rss_mb=None if peak is None else r(max(peak, rss or 0) / m, 1),
            peak_is_lifetime=True if lifetime else None,
            arrow_live_mb=r(arrow_live / m, 1),
            gap_mb=None if rss is None else r((rss - arrow_live) / m, 1),
            heap_in_use_mb=r(heap[0] / m, 1) if heap else None,
            heap_free_mb=r(heap[1] / m, 1) if heap else None,
            heap_mmap_mb=r(heap[2] / m, 1) if heap else None,
            growth_mb=None if (rss is None or base is None) else r((rss - base) / m, 1),
            window_calls=n - self._last_call,
            window_s=r(now - self._last_t, 3),
            limit_mb=None if limit is None else r(limit / m, 1),
            headroom_mb=None if (limit is None or usage is None) else r((limit - usage) / m, 1),
        )
        self._last_call = n
        self._last_t = now
        if self.trimmer is not None:
            self.trimmer.at_snapshot(rss, heap[0] if heap else None, arrow_live, now)


_peak_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _registry_lock, _peak_lock
    _registry_lock = threading.Lock()
    _peak_lock = threading.Lock()
    timer.reset_after_fork()
    for state in list(_states.values()):
        state._fresh()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
