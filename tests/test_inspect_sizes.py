"""``growing`` says how much grew, within 2x, for the shapes users keep — and runs none of their code to say it.

Real objects: NumPy batches, pandas DataFrames, Arrow slices, ``functools.lru_cache``. The true
retained size of each shape is measured independently of udfmem: the bytes ``tracemalloc`` sees
allocated (NumPy and pandas report their buffers to it) plus those of Arrow's memory pool, kept
after the temporaries are dropped.
"""

from __future__ import annotations

import functools
import gc
import itertools
import re
import sys
import tracemalloc
import types
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
from conftest import parse_events, run_python

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

from udfmem.probes import inspect as _inspect  # noqa: E402

MIB = 1 << 20
KEPT = 64
"""Items each shape keeps between the two inspections."""


frozen = itertools.repeat(0.0).__next__
"""A clock that never advances (C, no Python frame): no budget runs out and no call looks slow, whatever the
machine's load (a timed call preempted for over ``SLOW_S`` would mark its type slow for the whole test process)."""


class Udf:
    """A UDF object whose attributes are inspected."""

    seen: list[Any]
    cache: Any
    on_commit: list[Callable[[], object]]


@contextmanager
def true_bytes() -> Iterator[list[int]]:
    """The bytes allocated and still held when the block ends: tracemalloc's plus Arrow's pool (a one-item list)."""
    out: list[int] = []
    gc.collect()
    tracemalloc.start()
    arrow = pa.total_allocated_bytes()
    try:
        yield out
        gc.collect()
        out.append(tracemalloc.get_traced_memory()[0] + pa.total_allocated_bytes() - arrow)
    finally:
        tracemalloc.stop()


def growth(udf: Any, module: types.ModuleType | None, keep: Callable[[int], object]) -> tuple[str, int, int]:
    """Inspect, run ``keep`` for ``KEPT`` items, inspect again: (the first grower's name, its estimated bytes, true)."""
    before = _inspect.inspect(udf, module, clock=frozen)
    with true_bytes() as true:
        for i in range(KEPT):
            keep(i)
    now = _inspect.inspect(udf, module, clock=frozen)
    grown = _inspect.growing(before, now)
    assert grown is not None
    name = grown.split(" +")[0]
    return name, now[name][1] - before.get(name, (0, 0))[1], true[0]


def within_2x(estimated: int, true: int) -> bool:
    """Whether ``estimated`` is within a factor of 2 of ``true``."""
    return true / 2 <= estimated <= true * 2


def test_kept_dataframes_are_sized_by_their_blocks() -> None:
    """64 DataFrames of 10,000 x 9 floats kept on self (~44 MiB): growing says ~44 MiB, not the 4 KiB of headers."""
    udf = Udf()
    udf.seen = []
    name, estimated, true = growth(udf, None, lambda i: udf.seen.append(pd.DataFrame(np.random.rand(10_000, 9))))
    assert "self.seen" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_closures_over_batches_are_sized_by_what_they_hold() -> None:
    """Callbacks holding a 100-row view of a 1 MiB batch (and the UDF object): the batches count, self does not."""
    udf = Udf()
    udf.on_commit = []

    def keep(i: int) -> None:
        view = np.random.rand(128 * 1024)[:100]  # the view pins its 1 MiB base
        udf.on_commit.append(lambda: (udf, view.sum()))

    name, estimated, true = growth(udf, None, keep)
    assert "self.on_commit" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_default_argument_closures_and_partials_count_what_they_bind() -> None:
    """``lambda b=batch: ...`` and ``functools.partial(f, batch)``: the bound batches count."""
    udf = Udf()
    udf.on_commit = []

    def keep(i: int) -> None:
        batch = np.random.rand(64 * 1024)
        udf.on_commit.append((lambda b=batch: b.sum()) if i % 2 else functools.partial(np.sum, batch))

    name, estimated, true = growth(udf, None, keep)
    assert "self.on_commit" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_a_hook_rewrapped_at_every_call_is_still_named() -> None:
    """A hook re-wrapped 3,000 times (a chain of closures): measured to a depth, never a recursion error.

    Each wrapper that holds another costs a level, so the chain ends after ``LEVELS``; the
    attribute is named with what it could measure, and the others beside it too.
    """
    udf = Udf()

    def hook(x: int) -> int:
        return x

    for _ in range(3000):
        hook = (lambda prev: lambda x: prev(x) + 1)(hook)
    udf.hooks = [hook]
    udf.small = [1, 2, 3]
    measures = _inspect.inspect(udf, None, budget_s=0.05)
    assert {"self.hooks", "self.small"} <= set(measures)
    assert 1 == measures["self.hooks"][0]


def test_arrow_slices_are_sized_by_the_parents_they_pin() -> None:
    """A 10-row slice of each 1.25 MiB record batch (~80 MiB pinned): growing says ~80 MiB, not the slices' bytes."""
    udf = Udf()
    udf.seen = []

    def keep(i: int) -> None:
        parent = pa.record_batch({"x": np.random.rand(160_000), "y": pa.array(np.arange(160_000) % 7)})
        udf.seen.append(parent.slice(0, 10) if i % 2 else pa.Table.from_batches([parent]).slice(5, 10))

    name, estimated, true = growth(udf, None, keep)
    assert "self.seen" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


@pytest.mark.parametrize("maxsize", [None, 256])
def test_a_module_lru_cache_of_arrays_is_named_and_sized(maxsize: int | None) -> None:
    """A module-level ``lru_cache`` returning 1 MiB arrays (unbounded and bounded): named, its entries sized."""
    module = types.ModuleType("embeddings")

    @functools.lru_cache(maxsize=maxsize)
    def embed(key: int) -> Any:
        return np.random.rand(128 * 1024)

    module.embed = embed  # type: ignore[attr-defined]
    module.TABLE = [1, 2, 3]  # type: ignore[attr-defined]
    name, estimated, true = growth(None, module, embed)
    assert "module embed" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"
    assert (KEPT, estimated) == (_inspect.inspect(None, module, clock=frozen)["module embed"][0], estimated)


def test_an_lru_cache_method_is_named_on_the_udf() -> None:
    """``@functools.lru_cache`` on a method of the UDF's class: named ``self.<method>``; the key's self counts once."""

    class Cached:
        @functools.cache  # noqa: B019 - the leak under test
        def embed(self, key: int) -> Any:
            return np.random.rand(64 * 1024)

    udf = Cached()
    name, estimated, true = growth(udf, None, udf.embed)
    assert "self.embed" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_a_dict_cache_of_bytes_counts_keys_and_values() -> None:
    """A dict of 100 KiB bytes values keyed by text: the newest entries sampled, keys and values."""
    udf = Udf()
    udf.cache = {}

    def keep(i: int) -> None:
        udf.cache[f"document {i} " * 50] = bytes(100 * 1024)

    name, estimated, true = growth(udf, None, keep)
    assert "self.cache" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_the_newest_items_are_sampled() -> None:
    """A deque whose old items are small and new ones 1 MiB arrays: the growth is the new ones', not an average."""
    udf = Udf()
    udf.cache = deque(range(1000))
    name, estimated, true = growth(udf, None, lambda i: udf.cache.append(np.random.rand(128 * 1024)))
    assert "self.cache" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_views_of_one_batch_count_it_once() -> None:
    """500 ten-value views of one 8 MiB array in a list: the array counts once, not once per view."""
    batch = np.random.rand(1 << 20)
    udf = Udf()
    udf.seen = [batch[i : i + 10] for i in range(0, 5000, 10)]
    items, estimated = _inspect.inspect(udf, None, clock=frozen)["self.seen"]
    assert 500 == items
    assert within_2x(estimated, batch.nbytes), f"estimated {estimated:,} for {batch.nbytes:,}"


def test_rows_of_batches_kept_one_by_one_count_each_batch_once() -> None:
    """``self.seen.extend(embeddings)``: 100 rows (views) of each 300 KiB batch; each batch counts once."""
    udf = Udf()
    udf.seen = []
    name, estimated, true = growth(udf, None, lambda i: udf.seen.extend(np.random.rand(100, 768).astype(np.float32)))
    assert "self.seen" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_rows_kept_in_a_dict_count_each_batch_once() -> None:
    """The same rows as values of a dict (beyond the walked newest entries too): each batch counts once."""
    udf = Udf()
    udf.cache = {}

    def keep(i: int) -> None:
        for j, row in enumerate(np.random.rand(100, 768).astype(np.float32)):
            udf.cache[i, j] = row

    name, estimated, true = growth(udf, None, keep)
    assert "self.cache" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


def test_one_row_slices_of_record_batches_count_each_parent_once() -> None:
    """A 1-row Arrow slice per row of each 80 KB record batch: each parent counts once, not once per slice."""
    udf = Udf()
    udf.seen = []

    def keep(i: int) -> None:
        parent = pa.record_batch({"x": np.random.rand(10_000)})
        udf.seen.extend(parent.slice(j, 1) for j in range(100))

    name, estimated, true = growth(udf, None, keep)
    assert "self.seen" == name
    assert within_2x(estimated, true), f"estimated {estimated:,} for {true:,}"


class Hostile:
    """Records every Python-level look: ``__len__``, ``__sizeof__``, ``__getattr__``, a property, ``__hash__``."""

    calls: ClassVar[list[str]] = []

    def __len__(self) -> int:
        Hostile.calls.append("__len__")
        raise RuntimeError("no len")

    def __sizeof__(self) -> int:
        Hostile.calls.append("__sizeof__")
        raise RuntimeError("no sizeof")

    def __getattr__(self, name: str) -> Any:
        Hostile.calls.append(f"__getattr__({name})")
        raise AttributeError(name)

    def __hash__(self) -> int:
        Hostile.calls.append("__hash__")
        return 1

    @property
    def nbytes(self) -> int:
        """Recorded."""
        Hostile.calls.append("nbytes")
        return 0


class RecordingArray(np.ndarray):  # type: ignore[misc]
    """An ndarray subclass whose ``base`` and ``nbytes`` are Python properties: never called."""

    @property
    def base(self) -> Any:  # type: ignore[override]
        """Recorded."""
        Hostile.calls.append("base")
        return None

    @property
    def nbytes(self) -> int:  # type: ignore[override]
        """Recorded."""
        Hostile.calls.append("array nbytes")
        return 0


class RecordingFrame(pd.DataFrame):  # type: ignore[misc]
    """A DataFrame subclass that records ``memory_usage``, ``__len__`` and ``__sizeof__``."""

    def memory_usage(self, *args: Any, **kwargs: Any) -> Any:
        """Recorded."""
        Hostile.calls.append("memory_usage")
        return super().memory_usage(*args, **kwargs)

    def __len__(self) -> int:
        Hostile.calls.append("frame __len__")
        return super().__len__()

    def __sizeof__(self) -> int:
        Hostile.calls.append("frame __sizeof__")
        return 0


def python_code_run(action: Callable[[], object]) -> list[types.CodeType]:
    """The code objects of the Python functions that ran inside ``action``, udfmem's own left out."""
    seen: list[types.CodeType] = []
    own = _inspect.__file__.rsplit("/", 2)[0]

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "call" and code is not action.__code__ and not code.co_filename.startswith(own):
            seen.append(code)

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return seen


def test_no_code_of_yours_runs_while_measuring_deeply() -> None:
    """Closures, partials, arrays, frames and caches holding hostile objects: none of their Python code runs.

    The only Python code run is functools' own named tuple (``cache_info()``'s result); the
    cached function is never called.
    """
    called: list[int] = []

    @functools.cache
    def cached(key: Any) -> Any:
        called.append(1)
        return [Hostile()]

    @functools.lru_cache(maxsize=8)
    def bounded(key: Any) -> Any:
        called.append(1)
        return Hostile()

    hostile = Hostile()
    for i in range(4):
        cached((hostile, i))
        bounded((hostile, i))
    module = types.ModuleType("m")
    module.cached, module.bounded = cached, bounded  # type: ignore[attr-defined]
    udf = Udf()
    udf.on_commit = [lambda: hostile, functools.partial(print, hostile), lambda h=hostile: h]
    udf.seen = [np.arange(10.0).view(RecordingArray), RecordingFrame({"a": [1, 2]}), {"k": hostile}, deque([hostile])]
    udf.cache = {hostile}
    Hostile.calls.clear()
    called.clear()
    measured: list[_inspect.Measures] = []
    ran = python_code_run(lambda: measured.append(_inspect.inspect(udf, module, clock=frozen)))
    assert [] == Hostile.calls
    assert [] == called
    assert set() == {code for code in ran if code is not functools._CacheInfo.__new__.__code__}  # type: ignore[attr-defined]
    assert {"self.on_commit", "self.seen", "self.cache", "module cached", "module bounded"} == set(measured[0])


def test_deep_sampling_stops_at_the_budget() -> None:
    """A budget spent after the first sampled DataFrame: fewer items measured, the estimate still scales to all.

    The injected clock reads 0 until the deadline is passed, then 1 s; it counts its readings
    (one per sampled item once sampling started), so the items measured are seen without timing.
    """
    udf = Udf()
    udf.seen = [pd.DataFrame(np.random.rand(10_000, 9)) for _ in range(32)]
    true = 32 * 10_000 * 9 * 8

    def run(readings_before_deadline: int) -> tuple[int, int]:
        readings = [0]

        def clock() -> float:
            readings[0] += 1
            return 0.0 if readings[0] <= readings_before_deadline else 1.0

        measures = _inspect.inspect(udf, None, budget_s=0.5, clock=clock)
        return readings[0], measures["self.seen"][1]

    cut_readings, cut = run(3)  # the start, the first attribute, the first sampled item
    full_readings, full = run(1000)
    assert cut_readings < full_readings
    assert within_2x(cut, true) and within_2x(full, true), (cut, full, true)


def per_item(stderr: str, name: str) -> tuple[int, float]:
    """The first ``udfmem.suspect`` event's ``growing`` for ``name``: (items grown, bytes per item)."""
    found = [e for e in parse_events(stderr, "udfmem.suspect") if e.get("growing")]
    assert found, stderr[-2000:]
    grown = str(found[0]["growing"])
    match = re.match(re.escape(name) + r" \+([\d,]+) items \(~([\d.,]+) (KiB|MiB|GiB)\)", grown)
    assert match is not None, grown
    items = int(match[1].replace(",", ""))
    size = float(match[2].replace(",", "")) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[match[3]]
    return items, size / items


def test_a_tracked_udf_keeping_dataframes_names_their_size() -> None:
    """A real tracked UDF keeping a 0.7 MiB DataFrame per call: ``growing`` says ~0.7 MiB per item kept."""
    stderr = run_python(
        """
        import numpy as np, pandas as pd, udfmem
        @udfmem.tracked(every=8)
        class Drift:
            def __init__(self):
                self.seen = []
            def __call__(self, i):
                df = pd.DataFrame(np.random.default_rng(i).random((10_000, 9)))
                self.seen.append(df)
                return float(df.iloc[0, 0])
        udf = Drift()
        for i in range(200):
            udf(i)
        """
    ).stderr
    _, each = per_item(stderr, "self.seen")
    assert within_2x(int(each), 10_000 * 9 * 8), each


def test_a_tracked_udf_behind_a_module_lru_cache_names_it() -> None:
    """A real tracked UDF whose module-level ``lru_cache`` keeps a 512 KiB array per key: named, ~512 KiB each."""
    stderr = run_python(
        """
        import functools, numpy as np, udfmem
        @functools.lru_cache(maxsize=None)
        def embed(key):
            return np.random.default_rng(key).random(64 * 1024)
        @udfmem.tracked(every=8)
        class Embed:
            def __call__(self, i):
                return float(embed(i).sum())
        udf = Embed()
        for i in range(300):
            udf(i)
        """
    ).stderr
    _, each = per_item(stderr, "module embed")
    assert within_2x(int(each), 64 * 1024 * 8), each
