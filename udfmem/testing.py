"""Catch a per-call leak in a unit test: :func:`check_growth` and :func:`assert_no_growth`.

A UDF that keeps 4 MiB of one batch passes a one-batch test and holds 40 GiB eight
hours into a backfill. These helpers call the UDF many times, the way a worker does, and
measure what stays per call: malloc in-use + Arrow live + Python object blocks — not RSS,
which allocator retention and warm-up move — with a warm-up first, the counted calls cut
into sub-windows, and the growth rule ``udfmem diagnose`` applies too
(:mod:`udfmem.analysis.growth`: CPython's refleak rule, a leak grows in every window, and a
plateau rule, a bounded cache that fills passes). ``growing`` names the attribute that
grew, as ``udfmem.suspect`` does.

The heap alive before the counted calls is frozen (``gc.freeze()``) while they run, so
each window's full collection walks only what the calls made; the interpreter's freeze
state is restored afterwards, also on error (in a process that froze objects itself,
nothing is frozen or unfrozen: the check collects without the freeze).

Python object blocks (``sys.getallocatedblocks()``; small objects live in pymalloc's
arenas, which malloc's figures do not see) count at ``BLOCK_BYTES`` each, the size of a
typical small object: the per-call figure of a small-object leak is an estimate.

"malloc" is whichever allocator serves it (:mod:`udfmem.probes.allocators`): glibc's
``mallinfo2``, or the in-use figure of a preloaded jemalloc or tcmalloc. Where none can be
read (musl, an allocator udfmem does not know) the check judges by private RSS and the
Python blocks instead, and where the blocks are not measured (``PYTHONMALLOC=malloc``,
mimalloc) it leaves them out; :attr:`GrowthReport.note` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import itertools
import math
import re
import statistics
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _drive
from .analysis import growth
from .analysis import patterns as P
from .probes import inspect as _inspect
from .probes import memory as _memory
from .probes import process as _probes

__all__ = [
    "BLOCK_BYTES",
    "GrowthReport",
    "StateView",
    "assert_no_growth",
    "capture",
    "check_growth",
    "measure",
    "parse_size",
    "reset",
    "state_of",
]

BLOCK_BYTES = 64
"""Bytes counted per live Python object block (a typical small object)."""
WINDOWS = P.SUB_WINDOWS
"""Counted calls are cut into this many windows (the growth rule's sub-windows)."""
RSS_NOISE_BYTES = 256 * 1024
"""Where private RSS is judged, its growth in a window must pass this (it moves in pages and allocator chunks)."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(size: str | int) -> int:
    """Bytes in ``size``: an int, or ``"<N> [KMGT]B"`` with binary multipliers (``"64 KB"`` is 65,536)."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 0:
            raise ValueError(f"a size must be >= 0, got {size}")
        return size
    match = _SIZE.match(size) if isinstance(size, str) else None
    if match is None:
        raise ValueError(f'not a size: {size!r} (expected e.g. "64 KB", "1.5 MB" or an int of bytes)')
    return int(float(match[1]) * _UNITS[match[2].upper()])


@dataclasses.dataclass(frozen=True)
class GrowthReport:
    """What :func:`check_growth` measured. ``per_call_kib`` ± ``uncertainty_kib`` is the growth per counted call."""

    per_call_kib: float
    uncertainty_kib: float
    pattern: str
    growing: str | None
    calls: int
    evidence: str
    window_kib: tuple[float, ...]  # growth per call in each window
    stacks: tuple[str, ...] = ()  # with stacks=True: where what stayed was allocated (memray), largest first
    note: str | None = None  # what was not measured here and what was judged instead (the allocator's figures, blocks)

    def passed(self, limit: str | int = "64 KB") -> bool:
        """Whether the UDF stays under ``limit`` bytes per call (a plateau or noise always passes)."""
        return self.pattern == P.HEALTHY or self.per_call_kib * 1024 <= parse_size(limit)

    def reason(self, limit: str | int = "64 KB") -> str:
        """One line: the pattern, the per-call figure against the limit, what grew."""
        text = (
            f"{self.pattern}: {self.per_call_kib:,.1f} ± {self.uncertainty_kib:,.1f} KiB per call over "
            f"{self.calls} calls (limit {parse_size(limit) / 1024:,.1f} KiB)"
        )
        text += f"; growing: {self.growing}" if self.growing else ""
        text += f"; note: {self.note}" if self.note else ""
        return text + (f"; allocated at: {self.stacks[0]}" if self.stacks else "")


Mark = tuple["int | None", int, int, "int | None"]
"""(malloc in-use or None where unreadable, Arrow live, Python blocks or 0 where not counted, private RSS)."""


def _live(blocks: bool) -> Mark:
    """The live figures now, after a full collection (``blocks``: whether the Python blocks count)."""
    gc.collect()
    p = _probes.probes()
    heap = p.heap()
    return (
        None if heap is None else heap[0],
        _probes.arrow_live(),
        sys.getallocatedblocks() if blocks else 0,
        _memory.private(*p.resident()),
    )


def _judged() -> tuple[bool, bool, str | None]:
    """(count the Python blocks, judge private RSS too, the note saying so) for this process."""
    p = _probes.probes()
    notes = []
    rss = False
    if p.mallinfo2 is None and p.allocator.read is None:
        why = p.allocator.unreadable or f"{p.allocator.name}: no heap figures"
        notes.append(f"malloc's figures cannot be read here ({why}): judged by private RSS and Python blocks")
        rss = True
    objects = p.python_objects
    if objects.blocks_unreadable is not None:
        notes.append(f"Python blocks not measured ({objects.blocks_unreadable})")
        if objects.allocator == "mimalloc" and not rss:  # Python objects outside malloc and uncounted
            notes.append("judged by private RSS too")
            rss = True
    return objects.blocks_unreadable is None, rss, "; ".join(notes) or None


def _instance(udf: Any) -> Any:
    """An instance from an instance, a class or a zero-argument factory."""
    if isinstance(udf, type):
        return udf()
    if isinstance(udf, types.FunctionType) and not _takes_args(udf):
        return udf()
    return udf


def _takes_args(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` has a named positional parameter, in its public signature.

    ``inspect.signature`` follows ``__wrapped__``: udfmem's ``(*args, **kwargs)`` wrapper of a
    ``@tracked`` function (or a user's ``functools.wraps`` decorator) shows the real parameters.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the code's own count
        code = getattr(fn, "__code__", None)
        return code is not None and code.co_argcount > 0
    named = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in named for p in params)


def _inputs(inputs: Iterable[Any] | Callable[[int], Any]) -> Callable[[int], Any]:
    if callable(inputs) and not isinstance(inputs, list | tuple):
        return inputs
    it = iter(inputs)
    cached: list[Any] = []

    def nth(i: int) -> Any:
        try:
            value = next(it)
        except StopIteration:
            if not cached:
                raise ValueError("inputs is empty") from None
            return cached[i % len(cached)]
        if len(cached) < 1024:
            cached.append(value)
        return value

    return nth


def check_growth(
    udf: Any,
    inputs: Iterable[Any] | Callable[[int], Any],
    *,
    calls: int = 256,
    warmup: int = 32,
    method: str = "__call__",
    stacks: bool = False,
) -> GrowthReport:
    """Call ``udf`` ``warmup + calls`` times and measure what stays per counted call.

    ``udf`` is an instance, a class, a function taking the input, or a zero-argument
    factory (tracked or not: a function's real signature decides which); ``inputs``
    an iterable (recycled when shorter than the calls) or a callable ``i -> input``, so
    every call can get a fresh input as in a backfill. ``method`` is called with the
    input and its body is run to the end: a coroutine is awaited (one event loop for the
    whole check; from inside a running loop it refuses with ``RuntimeError``), an async
    generator, a generator or any returned iterator (``map``, a custom ``__next__``) is
    drained; a returned container (list, dict, array) is a result, left as it is. The
    pattern is ``heap-leak``, ``arrow-leak`` or ``healthy`` (no growth, a plateau, or noise).

    ``stacks=True``: when a leak is found and memray is installed, ``calls // 4`` more
    calls run under a memray tracker and the report names where what they left was
    allocated (:attr:`GrowthReport.stacks`). Never while another tracker is active
    (pytest-memray's, say): then the stacks are left out.
    """
    obj = _instance(udf)
    fn = getattr(obj, method)
    nth = _inputs(inputs)
    loop = _drive.Loop()
    module = obj.__module__ if isinstance(obj, types.FunctionType) else type(obj).__module__

    def call(i: int) -> None:
        _drive.consume(fn(nth(i)), loop)

    try:
        report = measure(call, range(warmup + calls), calls, warmup, {"self": obj}, module)
        if stacks and report.pattern != P.HEALTHY:
            found = _stacks(call, range(warmup + calls, warmup + calls + max(1, calls // 4)))
            report = dataclasses.replace(report, stacks=found)
    finally:
        loop.close()
    return report


def _stacks(call: Callable[[int], Any], indices: Iterable[int], top: int = 3) -> tuple[str, ...]:
    """Where the memory left by ``call`` over ``indices`` was allocated (memray), largest first; () if unknowable."""
    import os
    import tempfile

    try:
        import memray
    except ImportError:
        return ()
    from .analysis.profile import user_frames
    from .commands._profile_reader import leaks

    with tempfile.TemporaryDirectory(prefix="udfmem-testing-") as tmp:
        path = os.path.join(tmp, "growth.bin")
        try:
            with memray.Tracker(path, trace_python_allocators=True):
                for i in indices:
                    call(i)
        except RuntimeError:  # another tracker is active (pytest-memray's): never two
            return ()
        with leaks(path) as (_, records):  # our own fresh file: read here, not in report's child
            largest = sorted(records, key=lambda r: -r.size)[:top]
        return tuple(
            f"{r.size / 1024:,.0f} KiB in {r.allocations} allocations: {' <- '.join(user_frames(r.stack)[:3])}"
            for r in largest
        )


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """The heap alive now moved out of the collector's sight for the block (``gc.freeze()``), then back.

    A full collection then walks only what the block made. Refcounting still frees what the
    block drops; only cyclic garbage among the frozen waits until the unfreeze. When the
    process froze objects itself, nothing is touched (``gc.unfreeze()`` would release its
    objects too).
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def measure(
    call: Callable[[int], Any],
    indices: Iterable[int],
    calls: int,
    warmup: int,
    targets: dict[str, Any],
    module: str | None,
) -> GrowthReport:
    """The core of :func:`check_growth` (and the pytest marker): ``call(i)`` for each index, measured.

    ``targets`` are the objects whose attributes are inspected for ``growing`` (named
    ``<key>.<attribute>``), ``module`` the module whose containers are.
    """
    if calls < WINDOWS or warmup < 0:
        raise ValueError(f"calls must be >= {WINDOWS} and warmup >= 0")
    order = iter(indices)
    for _ in range(warmup):
        call(next(order))
    mod = sys.modules.get(module) if module else None
    before = _inspected(targets, mod)
    per_window = calls // WINDOWS
    blocks, rss, note = _judged()
    with _frozen():
        marks = [_live(blocks)]
        for _ in range(WINDOWS):
            for _ in range(per_window):
                call(next(order))
            marks.append(_live(blocks))
    grown = _inspect.growing(before, _inspected(targets, mod))
    return _report(marks, per_window, per_window * WINDOWS, grown, rss, note)


def _inspected(targets: dict[str, Any], module: types.ModuleType | None) -> _inspect.Measures:
    """The attributes of every target (``<key>.<attribute>``) and the module's containers."""
    out: _inspect.Measures = {}
    for key, target in targets.items():
        out.update(_inspect.inspect(target, None, budget_s=0.01, prefix=key))
    if module is not None:
        out.update(_inspect.inspect(None, module, budget_s=0.01))
    return out


def _report(
    marks: list[Mark],
    per_window: int,
    counted: int,
    grown: str | None,
    rss: bool = False,
    note: str | None = None,
) -> GrowthReport:
    """The report from the live figures at each window boundary.

    The measure is malloc in-use + Arrow live + Python blocks; where malloc's figure is
    unknown, Arrow live + Python blocks. With ``rss``, private RSS is judged too (by the same
    rule, over ``RSS_NOISE_BYTES``): either growing is growth, and the larger per-call
    figure of those that grew is reported.
    """
    first, last = marks[0], marks[-1]
    heap_known = all(m[0] is not None for m in marks)

    def total(m: Mark) -> int:
        return ((m[0] or 0) if heap_known else 0) + m[1] + m[2] * BLOCK_BYTES

    measures = [([total(b) - total(a) for a, b in itertools.pairwise(marks)], P.CHECK_NOISE_BYTES)]
    rss_known = rss and all(m[3] is not None for m in marks)
    if rss_known:
        measures.append(([(b[3] or 0) - (a[3] or 0) for a, b in itertools.pairwise(marks)], RSS_NOISE_BYTES))
    judged = [(growth.grows(d, sum(d) / len(d), noise=noise), sum(d), d) for d, noise in measures]
    grew, _, deltas = max(judged, key=lambda j: (j[0], j[1]))  # a growing measure first, then the larger
    rates = [d / per_window / 1024 for d in deltas]
    per_call = sum(deltas) / counted / 1024
    spread = statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else 0.0
    arrow = last[1] - first[1]
    blocks = (last[2] - first[2]) * BLOCK_BYTES
    if heap_known:
        heap = (last[0] or 0) - (first[0] or 0) + blocks
    else:  # what private RSS gained that Arrow did not
        heap = blocks if not rss_known else max(blocks, (last[3] or 0) - (first[3] or 0) - arrow)
    leak = P.ARROW_LEAK if arrow > heap else P.HEAP_LEAK
    pattern = leak if grew else P.HEALTHY
    name = _probes.probes().allocator.name
    evidence = (
        f"{counted} calls in {len(deltas)} windows: KiB per call "
        + ", ".join(f"{r:,.1f}" for r in rates)
        + (
            f"; malloc in-use ({name}) {((last[0] or 0) - (first[0] or 0)) / 1024 / counted:+,.1f}"
            if heap_known
            else f"; malloc in-use ({name}) unknown"
        )
        + f", Arrow {arrow / 1024 / counted:+,.1f} KiB per call"
        + (
            f", private RSS {((last[3] or 0) - (first[3] or 0)) / 1024 / counted:+,.1f} KiB per call"
            if rss_known
            else ""
        )
        + f"; py_blocks {last[2] - first[2]:+,}"
    )
    return GrowthReport(
        round(per_call, 2), round(spread, 2), pattern, grown, counted, evidence, tuple(rates), note=note
    )


def assert_no_growth(
    udf: Any, inputs: Iterable[Any] | Callable[[int], Any], max_per_call: str | int = "64 KB", **kw: Any
) -> GrowthReport:
    """:func:`check_growth`, and ``AssertionError`` naming the pattern, the figure and what grew when over the limit."""
    limit = parse_size(max_per_call)
    report = check_growth(udf, inputs, **kw)
    if not report.passed(limit):
        raise AssertionError(f"udfmem: {report.reason(limit)}. {report.evidence}")
    return report


# -- public test hooks: observe udfmem, and start afresh, without private pokes --------------


def capture() -> contextlib.AbstractContextManager[list[dict[str, Any]]]:
    """Collect every udfmem event emitted in this process while the block runs (like structlog's ``capture_logs``).

    Yields a list that receives each event as the flat field dict a parser of its line
    would return (``event``, ``udf``, ``pid``, ``host``, ``worker``, ``ts``, the event's own
    fields). The lines are written to the sinks as usual. Safe to nest and to use from
    several threads::

        with udfmem.testing.capture() as events:
            udf(batch)
        assert [] == [e for e in events if e["event"] == "udfmem.warning"]
    """
    from .emit.capture import capture as _capture

    return _capture()


def reset() -> None:
    """Forget what udfmem remembers in this process, as if it had just started.

    Every tracked UDF counts from 0 again and binds again at its next call (reading the
    environment anew), and warnings said once per process are said again. What only a new
    process lacks stays: the probes' file descriptors, the timer thread, a running memray
    tracker. Call it between tests, not while tracked calls run on other threads.
    """
    from . import _process

    _process.reset()


if TYPE_CHECKING:
    from .runtime.state import StateView
else:

    def __getattr__(name: str) -> Any:
        """``StateView`` on first use (it lives with the runtime, which this module does not import up front)."""
        if name == "StateView":
            from .runtime.state import StateView

            return StateView
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def state_of(udf: Any) -> StateView:
    """What udfmem holds for ``udf`` (a tracked class, one of its instances, or a tracked function) in this process.

    A read-only copy (:class:`StateView`): its key and name, the calls counted, whether it is
    bound and enabled, whether a snapshot runs now and how many wait on it, the trim policy.

    Raises:
        TypeError: ``udf`` is not tracked by udfmem.
    """
    from .runtime.decorator import find_state

    return find_state(udf).view()
