"""The attribute inspection behind ``growing`` runs none of your Python code and has a real (wall-time) limit."""

from __future__ import annotations

import array
import collections
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from conftest import parse_events, run_python

import udfmem
from udfmem.events.schema import Memory, Snapshot
from udfmem.policies.detector import Detector
from udfmem.probes import inspect as _inspect

UDFMEM_DIR = str(Path(udfmem.__file__).parent)


def python_calls(action: Callable[[], object]) -> list[str]:
    """The Python functions (``file:name``) that ran inside ``action``, udfmem's own left out."""
    seen: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "call" and code is not action.__code__ and not code.co_filename.startswith(UDFMEM_DIR):
            seen.append(f"{code.co_filename}:{code.co_name}")

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return seen


class Lazy:
    """A lazy proxy (like Django's ``SimpleLazyObject``): its ``__class__``, attributes and len load the target."""

    loads: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.wrapped: Any = None

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        Lazy.loads.append("__class__")
        return list

    def __getattr__(self, name: str) -> Any:
        Lazy.loads.append(f"__getattr__({name})")
        raise AttributeError(name)

    def __len__(self) -> int:
        Lazy.loads.append("__len__")
        return 0

    def __iter__(self) -> Any:
        Lazy.loads.append("__iter__")
        return iter(())

    @property
    def nbytes(self) -> int:
        """Would load the target."""
        Lazy.loads.append("nbytes")
        return 0


def test_a_lazy_proxy_is_never_loaded() -> None:
    """A proxy attribute and a proxy UDF object: no __class__, __getattr__, __len__ or nbytes of theirs runs."""

    class Udf:
        def __init__(self) -> None:
            self.model = Lazy()
            self.cache = [1, 2, 3]

    Lazy.loads.clear()
    udf, proxy = Udf(), Lazy()
    measured: list[_inspect.Measures] = []
    assert [] == python_calls(
        lambda: measured.extend([_inspect.inspect(udf, None, 60), _inspect.inspect(proxy, None, 60)])
    )
    assert [] == Lazy.loads
    assert (3, measured[0]["self.cache"][1]) == measured[0]["self.cache"]
    assert "self.model" in measured[0]


class Slotted:
    """A ``__slots__`` class (no ``__dict__``) whose ``__getattr__`` records every question."""

    __slots__ = ("items",)
    asked: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.items = [1, 2]

    def __getattr__(self, name: str) -> Any:
        Slotted.asked.append(name)
        raise AttributeError(name)


def test_a_slots_object_is_never_asked_for_its_dict() -> None:
    """A __slots__ UDF object and a __slots__ attribute: their __getattr__ is never called."""

    class Udf:
        def __init__(self) -> None:
            self.thing = Slotted()

    Slotted.asked.clear()
    udf, slotted = Udf(), Slotted()
    assert [] == python_calls(lambda: (_inspect.inspect(slotted, None, 60), _inspect.inspect(udf, None, 60)))
    assert [] == Slotted.asked


class Recording(dict[str, Any]):
    """An instance ``__dict__`` that records every Python-level look at it."""

    looks: ClassVar[list[str]] = []

    def items(self) -> Any:  # type: ignore[override]
        """Recorded."""
        Recording.looks.append("items")
        return super().items()

    def keys(self) -> Any:  # type: ignore[override]
        """Recorded."""
        Recording.looks.append("keys")
        return super().keys()

    def __iter__(self) -> Any:
        Recording.looks.append("__iter__")
        return super().__iter__()


def test_three_million_attributes_are_not_copied() -> None:
    """3M attributes: a bounded number is measured, nothing is copied (traced peak < 1 MiB), no dict method runs."""

    class Huge:
        pass

    huge = Huge()
    huge.__dict__ = Recording((f"a{i}", i) for i in range(3_000_000))
    Recording.looks.clear()
    tracemalloc.start()
    try:
        measures = _inspect.inspect(huge, None, budget_s=60.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [] == Recording.looks
    assert _inspect.MAX_NAMES == len(measures)
    assert peak < 1 << 20, f"the inspection allocated {peak:,} bytes"


def test_a_chainmap_len_is_never_called() -> None:
    """ChainMap's __len__ is Python (a set of every key: 1 s at 4M keys); the inspection never runs it."""
    chain = collections.ChainMap({i: i for i in range(50_000)}, {-i: i for i in range(50_000)})

    class Udf:
        def __init__(self) -> None:
            self.chain = chain

    udf = Udf()
    measured: list[_inspect.Measures] = []
    calls = python_calls(lambda: measured.extend(_inspect.inspect(udf, None, 60) for _ in range(3)))
    assert [] == [c for c in calls if c.endswith(":__len__")]
    assert 3 == sum("self.chain" in m for m in measured)


def test_a_blocking_len_in_a_leaking_udf_runs_at_most_once() -> None:
    """A real leaking UDF whose cache's __len__ blocks 0.2 s: over 20 snapshots it runs at most once.

    The leak is still named: ``growing`` counts the built-in containers the cache holds.
    """
    stderr = run_python(
        """
        import sys, time, udfmem
        CALLS = []
        class SlowCache:
            def __init__(self):
                self.entries = []
            def __len__(self):
                CALLS.append(1)
                time.sleep(0.2)  # a database-backed count, a lock
                return len(self.entries)
            def __iter__(self):
                return iter(self.entries)
        @udfmem.tracked(every=8)
        class Embed:
            def __init__(self):
                self.cache = SlowCache()
            def __call__(self, x):
                time.sleep(0.0005)
                self.cache.entries.append(bytearray(b"x") * (1 << 20))
                return x
        udf = Embed()
        for i in range(160):
            udf(i)
        print(f"len-calls={len(CALLS)}", file=sys.stderr)
        """
    ).stderr
    calls = int(stderr.rpartition("len-calls=")[2].split()[0])
    found = [e for e in parse_events(stderr, "udfmem.suspect") if e["pattern"] == "heap-leak"]
    assert calls <= 1, f"__len__ ran {calls} times"
    assert found and str(found[0]["growing"]).startswith("self.cache +")


def test_a_slow_arrow_nbytes_is_called_once_per_process() -> None:
    """Table.nbytes walks every chunk (seconds at 100k chunks): once slow (an injected clock), never called again.

    The clock makes every timed call take 1 s, deterministically; the Table's type is remembered for
    the process (a subprocess), so a later inspection with the real clock measures another Table
    without its nbytes, while a ChunkedArray (another type) is still measured by its own.
    """
    out = run_python(
        """
        import itertools, pyarrow as pa
        from udfmem.probes import inspect as _inspect
        chunks = [pa.array([i, i]) for i in range(1000)]
        class Udf:
            def __init__(self):
                self.table = pa.table({"x": pa.chunked_array(chunks)})
        slow = itertools.count(0.0, 1.0)
        first = _inspect.inspect(Udf(), None, budget_s=1e9, clock=lambda: next(slow))
        udf = Udf()
        udf.column = pa.chunked_array(chunks)
        later = _inspect.inspect(udf, None, budget_s=60)
        print(first["self.table"][1] == udf.table.nbytes, later["self.table"][1] == udf.table.nbytes,
              later["self.column"][1] == udf.column.nbytes)
        """
    ).stdout
    assert "True False True" == out.strip()


def test_a_blocked_inspection_holds_the_next_judgements_back() -> None:
    """Time blocked while inspecting counts (wall time): after two slow judgements, no third for a while.

    Stand-in: the detector's target sleeps 0.2 s, for a C-implemented ``len``/``nbytes`` that blocks
    off the CPU (none is at hand here); counting thread CPU time, the detector would block at every
    judgement of a leak. The wall time the budget shares is an injected clock (25 ms of the UDF's work
    between snapshots), so a loaded machine's slow sleeps cannot earn extra judgements.
    """
    blocked: list[float] = []
    now = [0.0]

    class Udf:
        def __init__(self) -> None:
            self.cache = [1]

    udf = Udf()

    def target() -> tuple[Any, None]:
        blocked.append(time.monotonic())
        time.sleep(0.2)
        return udf, None

    detector = Detector(target, clock=lambda: now[0])
    for i in range(1, 49):
        now[0] += 0.025  # the UDF's work between snapshots: the time a judgement's budget is a share of
        mib = 100.0 + 8 * i
        memory = Memory(rss_mb=mib, rss_anon_mb=mib, peak_rss_mb=mib, heap_in_use_mb=mib - 50)
        detector.observe(Snapshot(8 * i, memory))
    assert "heap-leak" == detector.said
    assert len(blocked) <= 3, f"blocked {len(blocked)} times"  # the baseline, then two timed judgements


class Holder:
    """A UDF object: what it holds is inspected."""

    cache: Any
    loop: Any


def _nested(depth: int, leaf: Any, width: int = 8) -> Any:
    """``depth`` levels of lists, each holding ``leaf`` and ``width - 1`` lists of the level below."""
    node: Any = leaf
    for _ in range(depth):
        node = [leaf] + [node] * (width - 1)
    return node


def test_measuring_a_nested_container_costs_the_same_at_any_depth() -> None:
    """Sampling stops a few levels down: a list nested 6 deep costs no more calls than one nested 3 deep.

    Each level holds an ``array.array``, whose C ``len`` is timed: the injected clock counts
    those calls (two readings each), so the count is the number of arrays measured. Without
    a depth limit it grows as 7 to the depth (117,649 lists at 6: a second of a call).
    """
    leaf = array.array("b", bytes(16))

    def readings(depth: int) -> int:
        ticks = [0]

        def clock() -> float:
            ticks[0] += 1
            return 0.0

        holder = Holder()
        holder.cache = _nested(depth, leaf)
        _inspect.inspect(holder, None, budget_s=60.0, clock=clock)
        return ticks[0]

    assert readings(3) == readings(6)


def test_a_container_that_holds_itself_is_measured() -> None:
    """A list holding itself eight times is measured (sampling never recurses without end), not left out."""
    loop: list[Any] = []
    loop.extend([loop] * 8)
    holder = Holder()
    holder.loop = loop
    measured = _inspect.inspect(holder, None, budget_s=60.0)
    assert ["self.loop"] == list(measured)
    assert 8 == measured["self.loop"][0]
