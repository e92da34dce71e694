"""``udfmem.testing`` and the pytest plugin: a per-call leak fails a unit test; clean UDFs pass, every time."""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import pytest

from udfmem import tracked
from udfmem.analysis import growth
from udfmem.testing import GrowthReport, assert_no_growth, check_growth, parse_size

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from growth_udfs import ArrowKept, Bounded, Cache, Closures, Noisy  # bench_testing's UDFs

pytest_plugins = ["pytester"]
KIB = 1024
KEEP: list[Any] = []


def test_sizes_use_binary_multipliers() -> None:
    """A size of "64 KB" is 65,536 bytes, "1.5 MB" 1,572,864; ints are bytes; nonsense is a ValueError."""
    assert (65_536, 1_572_864, 100, 1 << 30) == tuple(map(parse_size, ("64 KB", "1.5 MB", 100, "1GiB")))
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_the_growth_rule_wants_every_window_and_a_last_one_still_rising() -> None:
    """Growth in every window above the noise, the last above 0.2 of the overall rate: else none (as diagnose)."""
    assert [True, False, False, False, False, False] == [
        growth.grows([10.0, 10.0, 10.0, 10.0], 10.0),
        growth.grows([10.0, 0.0, 10.0, 10.0], 7.5),  # a window that did not grow: noise
        growth.grows([10.0, 10.0, 10.0, 1.0], 7.75),  # the last window a trickle: a plateau
        growth.grows([10.0, 10.0, 10.0, None], 10.0),  # a window unknown
        growth.grows([20.0, 20.0, 20.0, 20.0], 20.0, noise=20.0),  # no window above the noise
        growth.grows([], 0.0),
    ]


@pytest.mark.parametrize(
    ("udf", "pattern", "named"),
    [
        (Cache, "heap-leak", "self.cache"),
        (Closures, "heap-leak", "self.callbacks"),
        (ArrowKept, "arrow-leak", "self.batches"),
    ],
)
def test_each_leak_shape_is_caught_with_what_grew(udf: type, pattern: str, named: str) -> None:
    """64 KiB per call, each shape: the pattern, ~64 KiB per call, the attribute named first; the check fails."""
    report = check_growth(udf, range(10_000))
    assert (pattern, False) == (report.pattern, report.passed("32 KB"))
    assert report.per_call_kib == pytest.approx(64, rel=0.25)
    assert report.growing is not None and report.growing.startswith(named + " +")


def test_a_module_level_list_is_named() -> None:
    """A function UDF appending to a module-level list: module KEEP named."""

    class Appender:
        def __call__(self, i: int) -> int:
            KEEP.append(bytearray(b"x") * (64 * KIB))
            return i

    Appender.__module__ = __name__
    try:
        report = check_growth(Appender, range(10_000))
        assert report.growing is not None and report.growing.startswith("module KEEP +")
    finally:
        KEEP.clear()


@pytest.mark.parametrize("udf", [Noisy, Bounded])
def test_clean_udfs_pass_every_time(udf: type) -> None:
    """Noisy transients and a cache that fills and stops: healthy in 5 repeats out of 5."""
    reports = [check_growth(udf, range(10_000), calls=128, warmup=16) for _ in range(5)]
    assert ["healthy"] * 5 == [r.pattern for r in reports]
    assert all(r.passed() for r in reports)


def test_tracked_classes_factories_and_callable_inputs_work() -> None:
    """A tracked class, a zero-argument factory and inputs given as i -> input all work; the report says so."""
    Tracked = tracked(every=1000)(Cache)
    report: GrowthReport = check_growth(lambda: Tracked(), lambda i: i, calls=64, warmup=8)
    assert ("heap-leak", 64) == (report.pattern, report.calls)


def test_assert_no_growth_names_pattern_figure_and_attribute() -> None:
    """The AssertionError says heap-leak, the KiB per call and self.cache."""
    with pytest.raises(AssertionError, match=r"heap-leak: 6\d\.\d ± .* KiB per call .*growing: self\.cache \+"):
        assert_no_growth(Cache, range(10_000), max_per_call="16 KB")
    assert assert_no_growth(Noisy, range(10_000), calls=64).passed()


def test_the_marker_fails_a_leaking_test_body_and_passes_a_clean_one(pytester: pytest.Pytester) -> None:
    """In a real pytest run: the leaking body fails with the one-line reason and the udfmem-growth section."""
    pytester.makepyfile(
        """
        import pytest

        class Udf:
            def __init__(self):
                self.cache = []

            def __call__(self, batch):
                self.cache.append(bytearray(b"x") * (64 * 1024))
                return batch

        @pytest.fixture(scope="module")
        def udf():
            return Udf()

        @pytest.mark.limit_growth_per_call("16 KB", calls=64, warmup=8)
        def test_leaks(udf):
            udf([1, 2, 3])

        @pytest.mark.limit_growth_per_call("16 KB", calls=64, warmup=8)
        def test_clean():
            scratch = bytearray(1 << 20)
            del scratch

        def test_unmarked_runs_once(udf):
            assert len(udf.cache) == 72  # 8 + 64 runs of test_leaks, none from here
        """
    )
    result = pytester.runpytest_subprocess("-rA")  # a fresh pytest: the plugin loads itself (pytest11)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*udfmem: heap-leak: *KiB per call over 64 calls (limit 16.0 KiB); growing: udf.cache +64 items*"]
    )
    result.stdout.fnmatch_lines(["*udfmem-growth*"])


def test_the_fixture_is_check_growth(pytester: pytest.Pytester) -> None:
    """``udfmem_growth`` is check_growth."""
    pytester.makepyfile(
        """
        def test_fixture(udfmem_growth):
            report = udfmem_growth(lambda: (lambda i: i), range(100), calls=32, warmup=4)
            assert report.pattern == "healthy"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_stacks_name_the_allocating_line_and_never_start_a_second_tracker(tmp_path: Any) -> None:
    """stacks=True: memray names Cache.__call__'s line; inside another active tracker, no stacks (and no error)."""
    import inspect

    import memray

    line = next(i for i, text in enumerate(inspect.getsourcelines(Cache)[0]) if "self.cache[i] =" in text)
    where = f"__call__ ({Path(inspect.getfile(Cache)).name}:{inspect.getsourcelines(Cache)[1] + line})"
    report = check_growth(Cache, range(10_000), calls=64, warmup=8, stacks=True)
    assert where in report.stacks[0]
    assert where in report.reason("16 KB")
    with memray.Tracker(str(tmp_path / "outer.bin")):
        inside = check_growth(Cache, range(10_000), calls=64, warmup=8, stacks=True)
    assert ("heap-leak", ()) == (inside.pattern, inside.stacks)


class Raises:
    """Raises at its 40th call (in the counted calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, i: int) -> int:
        """One call."""
        self.calls += 1
        if self.calls == 40:
            raise ValueError("call 40")
        return i


def test_the_collector_is_left_as_found_even_on_error() -> None:
    """Nothing stays frozen after a check, also when the UDF raises; a process's own frozen objects stay frozen."""
    check_growth(Noisy, range(10_000), calls=32, warmup=8)
    with pytest.raises(ValueError, match="call 40"):
        check_growth(Raises, range(10_000), calls=64, warmup=8)
    assert 0 == gc.get_freeze_count()
    mine: list[Any] = [[]]  # tracked by the collector
    gc.freeze()
    try:
        report = check_growth(Cache, range(10_000), calls=64, warmup=8)
        still_frozen = not any(o is mine for o in gc.get_objects())  # get_objects() leaves the frozen out
        assert ("heap-leak", True) == (report.pattern, still_frozen)
    finally:
        gc.unfreeze()
