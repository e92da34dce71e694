"""A UDF's binding to one process: settings, probes, emitter and policies, made at bind and dropped at fork.

The state (:mod:`udfmem.runtime.state`) counts calls and knows when a snapshot is due;
the binding does what is due. A call's data flows one way::

    call -> state (cadence) -> binding.snapshot -> probes -> Memory -> Snapshot event
         -> policies observe (detector, trim) -> their decisions -> events -> emitter -> sinks

Probes return readings, and the detector and the trim policy return decisions (a
verdict, the events a trim made): the binding turns them into events and only the
emitter writes them. (memray's tracker, one per process and outliving any call, says
its own start and stop; a warning goes out where its problem is met.) The binding knows
nothing of the state: the state hands it what it needs (the UDF's identity, the call
numbers) and owns it.
"""

from __future__ import annotations

import contextlib
import sys
import time
import types
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

from .. import _settings
from ..analysis.diagnosis import NOT_READ
from ..emit import emitter as _emit
from ..events.schema import Event, Snapshot, Trim, Warning
from ..policies import memray as _memray
from ..policies.detector import Detector
from ..policies.trim import Trimmer, TrimPolicy
from ..probes import allocator as _allocator
from ..probes import memory as _memory
from ..probes import process as _probes
from .setup import SetupMeter, Token, not_read_notice


class Identity(NamedTuple):
    """What a binding knows of its UDF: nothing of the state that counts its calls."""

    key: str  # the registry key
    name: str  # ``udf=`` in events
    owner: str | None  # qualified name of the decorated class; None for a function
    source: str | None  # the file defining the UDF (memray attribution)
    methods: tuple[str, ...]  # per-call methods (memray attribution)


class Binding:
    """One UDF in one process, bound: everything a snapshot, a setup phase or a timer visit needs.

    Made by :meth:`create` from resolved settings; a failure there leaves the UDF unbound
    (the state warns once and stops trying). Nothing here raises into a call: each entry
    point is guarded by the state, which warns once.
    """

    def __init__(self, identity: Identity, settings: _settings.Settings, emitter: _emit.Emitter) -> None:
        self.identity = identity
        self.settings = settings
        self.emitter = emitter
        self.probes: _probes.Probes | None = None
        self.detector: Detector | None = None
        self.trimmer: Trimmer | None = None
        self.window = 0  # this UDF's window of the kernel's peak RSS
        self.baseline_mb: float | None = None  # private RSS (MiB) at the end of setup: growth counts from here
        self.last_call = 0  # the call of the last snapshot
        self.snapshots = 0  # snapshots taken: the index of the next in this UDF's series (the probes' floor)
        self.last_t = time.monotonic()  # when the last snapshot (or setup) was taken
        self.final_call = 0  # the call count of the last final snapshot
        self.watched: weakref.ref[Any] | None = None  # the UDF object whose release emits the final snapshot
        self.slope_said: float | None = None  # the detector's slope as last handed to the emitter
        self.not_read_said = False  # the fields this process cannot read were said (setup event or warning)

    @classmethod
    def create(cls, identity: Identity, options: _settings.Settings) -> Binding:
        """Resolve ``options`` against the environment and bind: emitter, probes, window, policies."""
        settings, problems = _settings.resolve(options)
        emitter = _emit.build(identity.name, settings)
        for problem in problems:
            emitter.warn_once(
                "bad-env",
                f"ignored {problem.var}={problem.value!r} ({problem.reason}); using {problem.default}",
                once_key=f"bad-env:{problem.var}={problem.value}",
                var=problem.var,
            )
        binding = cls(identity, settings, emitter)
        if settings.disable:
            return binding
        if settings.arena_max is not None:
            applied, caveat = _allocator.set_arena_max(settings.arena_max)
            if caveat or not applied:
                emitter.warn_once("arena-max", f"arena_max={settings.arena_max}: {caveat}")
        binding.probes = p = _probes.probes()
        if p.limits.problem:  # a bad Ray memory-monitor variable: Ray's default is what the worker meets
            emitter.warn_once("bad-env", f"limit: {p.limits.problem}", once_key=f"bad-env:limits:{p.limits.problem}")
        binding.window = p.windows.open()
        # closed by close() when the state lets the binding go, else when it is collected (not at
        # exit: the final snapshots at exit still read the window)
        weakref.finalize(binding, p.windows.close, binding.window).atexit = False
        binding.detector = Detector(_inspected_weakly(weakref.ref(binding))) if settings.suspect else None
        binding.trimmer = Trimmer(TrimPolicy(settings.trim), _trim_reading)
        binding.trimmer.rebase()  # before the first call: no retention yet
        binding.baseline_mb = _probes.mb(_memory.private(*p.resident()))
        return binding

    def close(self) -> None:
        """The state lets this binding go (a reset): close its window, stop its sinks' visits. Never raises."""
        p = self.probes
        if p is not None:
            p.windows.close(self.window)
        self.detector = None
        self.emitter.close()

    # -- events ------------------------------------------------------------------------

    def say(self, events: Iterable[Event]) -> None:
        """Emit what a policy decided: warnings once per process, the rest as they come."""
        emitter = self.emitter
        for event in events:
            if type(event) is Warning:
                emitter.warn_once(event.what, event.message, var=event.var)
                continue
            emitter.emit(event)
            if type(event) is Trim and self.detector is not None:
                self.detector.trimmed(event.released_mb)

    # -- snapshots ---------------------------------------------------------------------

    def snapshot(self, label: int, final: bool | None = None) -> None:
        """Read, emit one ``udfmem.snapshot`` labelled ``label``, let the policies observe it. The hot part.

        Written flat on purpose (no intermediate reading object): it must cost little more
        than a hand-written snapshot with the same reads (``benchmarks/bench_overhead.py``).
        """
        now = time.monotonic()
        p = self.probes
        if p is None:
            return
        at = self.snapshots  # this UDF's own index: another UDF's snapshots in the process must not shift it
        self.snapshots = at + 1
        if not at and not self.not_read_said:
            self.say_not_read()
        rss, shared, peak, lifetime, heap = p.snapshot_reads(self.window, at)
        if "pyarrow" in sys.modules:  # only if the user imported it: never import it here
            arrow_live, backend = _probes.arrow_live(), _probes.arrow_backend()
        else:
            arrow_live, backend = 0, None
        limit = p.limit
        usage = None if limit is None else p.cgroup_usage()
        blocks = p.blocks(at)  # on the snapshot's index, as the heap: its floor falls on kept points
        memory = _memory.block(rss, shared, peak, lifetime, arrow_live, backend, heap, limit, usage, blocks, p.fixed)
        private, base = memory.rss_anon_mb if shared is not None else memory.rss_mb, self.baseline_mb
        snapshot = _new(  # Snapshot(call, memory, growth_mb, window_calls, window_s, final), without a Python frame
            Snapshot,
            (
                label,
                memory,
                None if (private is None or base is None) else round(private - base, 1),
                label - self.last_call,
                int((now - self.last_t) * 1000 + 0.5) / 1000,
                final,
            ),
        )
        self.emitter.emit(snapshot)
        self.last_call = label
        self.last_t = now
        detector = self.detector
        if detector is not None:
            try:
                suspect = detector.observe(snapshot)
            except Exception as exc:
                self._detector_failed(exc)
            else:
                if suspect is not None:
                    self.emitter.emit(suspect)
                if detector.slope != self.slope_said:  # the slope changes only at a judgement
                    self.slope_said = detector.slope
                    self.emitter.note_slope(detector.slope)
        trimmer = self.trimmer
        if trimmer is not None and trimmer.policy.auto:
            headroom = None if (limit is None or usage is None) else limit - usage
            private_bytes = _memory.private(rss, shared)
            self.say(trimmer.at_snapshot(private_bytes, p.heap_in_use(heap), arrow_live, headroom, limit))

    def _detector_failed(self, exc: Exception) -> None:
        """The online detector raised: it is off from now on, with one warning (and no slope)."""
        self.detector = None
        self.slope_said = None
        self.emitter.note_slope(None)
        self.emitter.warn_once("suspect-failed", f"the online detector failed and is off: {exc!r}")

    def trim_every(self) -> bool:
        """The integer trim cadence came due: trim; False once the policy turned itself off."""
        trimmer = self.trimmer
        if trimmer is None or not trimmer.policy.every:
            return False
        self.say(trimmer.trim("every"))
        return bool(trimmer.policy.every)

    # -- setup phases ------------------------------------------------------------------

    def setup_start(self, meter: SetupMeter) -> Token:
        """The start of a measured setup phase."""
        p = self.probes
        if p is None:
            return meter.begin(None)
        p.windows.take(self.window)
        return meter.begin(p.rss())

    def setup_done(self, token: Token, method: str, error: str | None, meter: SetupMeter) -> None:
        """Emit ``udfmem.setup`` for a phase begun with :meth:`setup_start`; let the trim policy look."""
        p = self.probes
        if p is None:
            return
        peak, lifetime = p.windows.take(self.window)
        memory, rss = _memory.read(p, peak, lifetime, p.heap_budget())
        self.last_t = time.monotonic()
        not_read = None if self.not_read_said else not_read_notice(p.unreadable)  # the first setup event says it
        self.not_read_said = True
        self.emitter.emit(meter.end(token, method, error, memory, rss, not_read))
        if self.trimmer is not None:
            self.say(self.trimmer.after_setup())
        if self.last_call == 0:  # growth counts from the end of the setups before the first snapshot
            self.baseline_mb = _probes.mb(_memory.private(*p.resident()))

    def say_not_read(self) -> None:
        """Before a first snapshot that no setup event came before: say the fields not read, once, in a warning."""
        self.not_read_said = True
        p = self.probes
        notice = None if p is None else not_read_notice(p.unreadable)
        if notice is not None:
            self.emitter.emit(Warning(NOT_READ, notice))

    # -- memray and the UDF object -----------------------------------------------------

    def start_profiling(self, instance: Any, on_release: Any) -> int | None:
        """Open memray for this process if switched on; the call count after which to stop it, if any.

        ``instance`` is the UDF object of a method call: when it is released (Ray tears
        actors down before ``atexit``; Daft drops instances per partition) the tracker is
        closed while its memory is still allocated, so the file shows what it held.
        ``on_release`` is run when a watched UDF object is released (the final snapshot).
        """
        settings = self.settings
        if settings.disable:
            return None
        if self.identity.owner is not None:
            self.watch(instance, on_release)
        ident = self.identity
        target = _memray.Target(
            ident.key, ident.name, ident.methods, tuple(m for m in ("__init__", settings.setup) if m), ident.source
        )
        if not _memray.start(target, settings, _settings.memray_switch(settings), self.emitter):
            return None
        watched = self.watched() if self.watched is not None else None
        if watched is not None and watched is instance:  # the UDF object watch() found
            _memray.stop_when_released(watched)
        return settings.memray_calls

    def watch(self, instance: Any, on_release: Any) -> None:
        """Run ``on_release`` (the final snapshot) when ``instance``, a UDF object seen on the slow path, goes.

        Engines that keep one object per worker (Ray Data actors) release it and exit
        without running ``atexit``; engines that re-create objects (Daft, per partition)
        get a final snapshot per object that ran calls past the last snapshot.
        """
        self.watched = None
        mro = type(instance).__mro__ if instance is not None else ()
        if any(getattr(k, "__qualname__", None) == self.identity.owner for k in mro):
            with contextlib.suppress(TypeError):  # a class with __slots__ and no __weakref__
                self.watched = weakref.ref(instance)
                weakref.finalize(instance, on_release).atexit = False  # exit has its own hook

    def stop_profiling(self) -> None:
        """The memray call limit was reached: close this process's tracker if this UDF owns it."""
        if _memray.owns(self.identity.key):
            _memray.stop("calls")

    def inspected(self) -> tuple[Any, types.ModuleType | None]:
        """The UDF object (while alive) and its module, for the detector's attribute inspection."""
        watched = self.watched
        instance = watched() if watched is not None else None
        ident = self.identity
        name = ident.key.partition("#")[0]
        module = name[: -len(ident.owner) - 1] if ident.owner else name.rpartition(".")[0]
        return instance, sys.modules.get(module)


_new = tuple.__new__


def _inspected_weakly(ref: weakref.ref[Binding]) -> Any:
    """The detector's target, holding its binding weakly (no cycle: a dropped binding goes at once)."""

    def inspected() -> tuple[Any, types.ModuleType | None]:
        binding = ref()
        return binding.inspected() if binding is not None else (None, None)

    return inspected


def _trim_reading() -> tuple[int | None, int | None, int]:
    """Private RSS, malloc in-use (within the heap budget, else None) and Arrow live bytes now."""
    p = _probes.probes()
    return _memory.private(*p.resident()), p.heap_in_use(p.heap_budget()), _probes.arrow_live()
