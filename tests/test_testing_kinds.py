"""``udfmem.testing`` runs every kind of UDF body: async, async generators, lazy iterators, tracked functions.

A check that does not run the body cannot see its leak: each leaking kind here must be reported as growing, each
clean one as healthy, and what cannot be run is refused with a clear error, never passed. The pytest marker fails
with its one-line reason, also under ``-W error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from udfmem import tracked
from udfmem.testing import assert_no_growth, check_growth

pytest_plugins = ["pytester"]
KIB = 1024
KEEP: list[Any] = []


class AsyncKeeps:
    """An ``async def __call__`` keeping 256 KiB per call."""

    def __init__(self) -> None:
        self.kept: list[bytearray] = []

    async def __call__(self, i: int) -> int:
        """One call: an await, then 256 KiB kept."""
        await asyncio.sleep(0)
        self.kept.append(bytearray(b"x") * (256 * KIB))
        return i


class AsyncGenKeeps:
    """An async generator ``__call__`` keeping 256 KiB per call."""

    def __init__(self) -> None:
        self.kept: list[bytearray] = []

    async def __call__(self, i: int) -> AsyncIterator[int]:
        """One call: two items; 256 KiB kept after the first."""
        yield i
        await asyncio.sleep(0)
        self.kept.append(bytearray(b"x") * (256 * KIB))
        yield i + 1


class MapKeeps:
    """Returns ``map(...)``: 64 KiB kept per item, only when the map is consumed."""

    def __init__(self) -> None:
        self.kept: list[bytearray] = []

    def _row(self, j: int) -> int:
        self.kept.append(bytearray(b"x") * (64 * KIB))
        return j

    def __call__(self, i: int) -> Iterator[int]:
        """One call: a lazy map over four rows."""
        return map(self._row, range(i, i + 4))


class Rows:
    """A hand-written iterator (``__iter__`` returns self, ``__next__``) keeping 64 KiB per row into ``kept``."""

    def __init__(self, kept: list[bytearray], n: int) -> None:
        self.kept = kept
        self.left = n

    def __iter__(self) -> Rows:
        return self

    def __next__(self) -> int:
        if self.left == 0:
            raise StopIteration
        self.left -= 1
        self.kept.append(bytearray(b"x") * (64 * KIB))
        return self.left


class IteratorKeeps:
    """Returns a custom iterator keeping 64 KiB per row, four rows per call."""

    def __init__(self) -> None:
        self.kept: list[bytearray] = []

    def __call__(self, i: int) -> Rows:
        """One call: a lazy four-row iterator."""
        return Rows(self.kept, 4)


class AsyncClean:
    """An ``async def __call__`` with 1 MiB of scratch that it drops."""

    async def __call__(self, i: int) -> int:
        """One call."""
        scratch = bytearray(b"x") * (1 << 20)
        await asyncio.sleep(0)
        return len(scratch) + i


class AsyncGenClean:
    """An async generator ``__call__`` with scratch it drops."""

    async def __call__(self, i: int) -> AsyncIterator[int]:
        """One call: three items."""
        for j in range(3):
            scratch = bytearray(b"x") * (256 * KIB)
            await asyncio.sleep(0)
            yield len(scratch) + j


class ReturnsList:
    """Returns a list and a string: containers are results, never consumed as a lazy body."""

    def __call__(self, i: int) -> tuple[list[int], str]:
        """One call."""
        return [i, i + 1], "row"


@pytest.mark.parametrize(
    ("udf", "named"),
    [
        (AsyncKeeps, "self.kept"),
        (AsyncGenKeeps, "self.kept"),
        (MapKeeps, "self.kept"),
        (IteratorKeeps, "self.kept"),
    ],
)
def test_a_leak_in_a_body_run_lazily_is_caught(udf: type, named: str) -> None:
    """Async, async generator, map and custom iterator bodies are run: their leak is heap-leak, named, and fails."""
    report = check_growth(udf, range(10_000), calls=64, warmup=8)
    assert ("heap-leak", False) == (report.pattern, report.passed("64 KB"))
    assert report.per_call_kib == pytest.approx(256, rel=0.25)
    assert report.growing is not None and report.growing.startswith(named + " +")
    with pytest.raises(AssertionError, match="heap-leak"):
        assert_no_growth(udf, range(10_000), max_per_call="64 KB", calls=64, warmup=8)


@pytest.mark.parametrize("udf", [AsyncClean, AsyncGenClean, ReturnsList])
def test_clean_async_bodies_and_returned_containers_stay_healthy(udf: type) -> None:
    """Clean async and async-generator UDFs (and one returning a list) are healthy in 3 repeats out of 3."""
    reports = [check_growth(udf, range(10_000), calls=64, warmup=8) for _ in range(3)]
    assert ["healthy"] * 3 == [r.pattern for r in reports]


def test_every_async_call_runs_its_body_once() -> None:
    """The body of an async UDF and of an async generator runs once per call, to its end."""
    runs: list[int] = []

    class Counted:
        async def __call__(self, i: int) -> int:
            await asyncio.sleep(0)
            runs.append(i)
            return i

    class CountedGen:
        async def __call__(self, i: int) -> AsyncIterator[int]:
            yield i
            runs.append(i)

    for udf in (Counted, CountedGen):
        runs.clear()
        check_growth(udf, range(10_000), calls=8, warmup=2)
        assert list(range(10)) == runs


def test_inside_a_running_event_loop_it_refuses_and_runs_nothing() -> None:
    """From an async test (a loop already running in this thread): a clear error naming the way out; no body ran."""
    runs: list[int] = []

    class Counted:
        async def __call__(self, i: int) -> int:
            runs.append(i)
            return i

    async def main() -> None:
        check_growth(Counted, range(100), calls=8, warmup=2)

    with pytest.raises(RuntimeError, match=r"running event loop.*asyncio\.to_thread"):
        asyncio.run(main())
    assert [] == runs


def test_an_awaitable_it_cannot_drive_is_an_error_not_a_pass() -> None:
    """An awaitable that yields what asyncio cannot drive (another framework's trap): an error, never a report."""

    class Trap:
        def __await__(self) -> Iterator[Any]:
            yield "another framework's trap"

    class Foreign:
        def __call__(self, i: int) -> Trap:
            return Trap()

    with pytest.raises(RuntimeError, match="cannot run"):
        check_growth(Foreign, range(100), calls=8, warmup=2)


@tracked(every=1000)
def tracked_leaky(i: int) -> int:
    """A tracked function keeping 64 KiB per call in a module list."""
    KEEP.append(bytearray(b"x") * (64 * KIB))
    return i


@tracked(every=1000)
def tracked_clean(i: int) -> int:
    """A tracked function keeping nothing."""
    return len(bytearray(b"x") * (64 * KIB)) + i


def test_a_tracked_function_is_called_with_each_input() -> None:
    """A @tracked function is a UDF, not a zero-argument factory: its leak is caught and named; a clean one passes."""
    try:
        report = check_growth(tracked_leaky, range(10_000), calls=64, warmup=8)
        assert "heap-leak" == report.pattern
        assert report.per_call_kib == pytest.approx(64, rel=0.25)
        assert report.growing is not None and report.growing.startswith("module KEEP +")
    finally:
        KEEP.clear()
    assert "healthy" == check_growth(tracked_clean, range(10_000), calls=64, warmup=8).pattern


def test_a_tracked_zero_argument_factory_is_still_a_factory() -> None:
    """A @tracked function taking no argument is a factory: called once, its result is the UDF."""
    made: list[int] = []

    @tracked(every=1000)
    def factory() -> Any:
        made.append(1)
        return lambda i: i

    assert "healthy" == check_growth(factory, range(100), calls=8, warmup=2).pattern
    assert [1] == made


def test_the_marker_fails_with_its_reason_under_warnings_as_errors(pytester: pytest.Pytester) -> None:
    """``pytest -W error``: the leaking test fails with udfmem's one-line reason; no PluggyTeardownRaisedWarning."""
    pytester.makepyfile(
        """
        import pytest

        KEPT = []

        @pytest.mark.limit_growth_per_call("16 KB", calls=64, warmup=8)
        def test_leaks():
            KEPT.append(bytearray(b"x") * (64 * 1024))

        @pytest.mark.limit_growth_per_call("16 KB", calls=64, warmup=8)
        def test_clean():
            scratch = bytearray(1 << 20)
            del scratch
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert 1 == result.ret
    result.assert_outcomes(passed=1, failed=1)
    reason = "udfmem: heap-leak: *KiB per call over 64 calls (limit 16.0 KiB); growing: module KEPT +*"
    # the failure is the reason itself: the line right under the test's header, no traceback before it
    result.stdout.fnmatch_lines(["*_ test_leaks _*", reason], consecutive=True)
    assert "PluggyTeardownRaisedWarning" not in output
    assert "hookwrapper" not in output  # no hook machinery in the report: the reason is the whole failure
