"""udfmem never changes what the caller sees: users' decorators stay, deep stacks give way."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from conftest import run_python

from udfmem import TrackedUDF, tracked


def times10(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A user's decorator made with functools.wraps (which copies udfmem's marker attribute)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) * 10

    return wrapper


def test_a_users_decorator_around_an_inherited_tracked_method_is_kept() -> None:
    """A TrackedUDF subclass wrapping the inherited __call__ with times10 returns 20, not 2."""

    class Base(TrackedUDF):
        def __call__(self, x: int) -> int:
            return x

    class Child(Base):
        __call__ = times10(Base.__call__)

    assert 20 == Child()(2)
    assert 2 == Base()(2)


def test_tracking_a_decorated_tracked_function_keeps_the_decorator() -> None:
    """tracked(times10(tracked(g))) still multiplies by 10."""

    def g(x: int) -> int:
        return x

    assert 20 == tracked(times10(tracked(g)))(2)
    assert 20 == tracked(times10(g))(2)


def test_near_the_recursion_limit_a_tracked_call_behaves_as_the_untracked_one() -> None:
    """With every=1 at every depth up to one frame short of the limit, results and exceptions are the UDF's own.

    Real recursion in a fresh interpreter: the deepest depth at which the untracked call works is found
    first; the tracked call (one wrapper frame more) must then give the same result, or the UDF's own
    ValueError, at every depth below it.
    """
    proc = run_python(
        """
        import sys
        import udfmem

        def ok(x):
            return x + 1

        def bad(x):
            raise ValueError("the UDF's own")

        tracked_ok = udfmem.tracked(every=1, every_s=0)(ok)
        tracked_bad = udfmem.tracked(every=1, every_s=0)(bad)
        tracked_ok(0), udfmem.trim()  # bind first

        def at_depth(depth, fn):
            if depth:
                return at_depth(depth - 1, fn)
            try:
                return ("ok", fn(1))
            except RecursionError:
                return ("recursion",)
            except ValueError as exc:
                return ("value", str(exc))

        sys.setrecursionlimit(300)
        deepest = 0
        for depth in range(200, 300):
            try:
                if at_depth(depth, ok) == ("ok", 2):
                    deepest = depth
            except RecursionError:
                break
        wrong = []
        for depth in range(150, deepest - 1):  # the wrapper itself takes one frame
            for plain, tracked in ((ok, tracked_ok), (bad, tracked_bad)):
                try:
                    got, want = at_depth(depth, tracked), at_depth(depth, plain)
                except RecursionError:
                    continue  # the test's own frames hit the limit: not udfmem's
                if got != want:
                    wrong.append((depth, plain.__name__, got, want))
        print("DEEPEST", deepest, "WRONG", wrong)
        """
    )
    deepest = int(proc.stdout.split("DEEPEST")[1].split()[0])
    assert deepest > 150
    assert "WRONG []" in proc.stdout
