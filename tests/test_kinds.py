"""The wrapper keeps each method's kind, signature, hints, results and exceptions."""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import udfmem.testing
from udfmem import tracked


class Boom(Exception):
    """A distinctive exception raised by the UDFs under test."""


def make_udf() -> type:
    """A UDF class with one method of every kind (a fresh class per call)."""

    class Udf:
        def __init__(self, scale: int = 2) -> None:
            self.scale = scale

        def __call__(self, batch: list[int], *, offset: int = 0) -> list[int]:
            if offset < 0:
                raise Boom("negative offset")
            return [x * self.scale + offset for x in batch]

        def gen(self, n: int) -> Iterator[int]:
            total = 0
            for i in range(n):
                got = yield i * self.scale
                if got is not None:
                    total += got
            return total

        async def coro(self, x: int) -> int:
            await asyncio.sleep(0)
            if x < 0:
                raise Boom("negative")
            return x * self.scale

        async def agen(self, n: int) -> AsyncIterator[int]:
            for i in range(n):
                got = yield i * self.scale
                if got == "stop":
                    return

        @staticmethod
        def static(x: int) -> int:
            return x + 1

        @classmethod
        def klass(cls, x: int) -> str:
            return f"{cls.__name__}:{x}"

    return Udf


METHODS = ("__call__", "gen", "coro", "agen", "static", "klass")


@pytest.fixture
def pair() -> tuple[Any, Any]:
    """The same class twice: undecorated and decorated (every=1, so every call snapshots)."""
    plain = make_udf()
    deco = tracked(every=1, methods=METHODS, setup=None)(make_udf())
    return plain, deco


@pytest.mark.parametrize("method", METHODS)
def test_inspect_predicates_match(pair: tuple[Any, Any], method: str) -> None:
    """isgeneratorfunction / iscoroutinefunction / isasyncgenfunction answer as undecorated."""
    plain, deco = pair
    for predicate in (inspect.isgeneratorfunction, inspect.iscoroutinefunction, inspect.isasyncgenfunction):
        assert predicate(getattr(plain, method)) == predicate(getattr(deco, method))
        assert predicate(getattr(plain(), method)) == predicate(getattr(deco(), method))


@pytest.mark.parametrize("method", (*METHODS, "__init__"))
def test_signature_and_type_hints_match(pair: tuple[Any, Any], method: str) -> None:
    """inspect.signature and typing.get_type_hints see through the wrapper."""
    plain, deco = pair
    assert inspect.signature(getattr(plain, method)) == inspect.signature(getattr(deco, method))
    assert typing.get_type_hints(getattr(plain, method)) == typing.get_type_hints(getattr(deco, method))
    assert inspect.signature(plain) == inspect.signature(deco)


def test_plain_call_results_and_exceptions(pair: tuple[Any, Any]) -> None:
    """Results are identical; the user's exception propagates as the same object."""
    plain, deco = pair
    assert plain(3)([1, 2], offset=1) == deco(3)([1, 2], offset=1)
    with pytest.raises(Boom, match="negative offset") as info:
        deco()([1], offset=-1)
    assert type(info.value) is Boom
    assert "tests" in info.traceback[-1].path.as_posix()


def test_generator_send_return_and_close(pair: tuple[Any, Any]) -> None:
    """A generator method yields, accepts send(), returns its value and closes as the original."""
    plain, deco = pair

    def drive(obj: Any) -> tuple[list[int], int]:
        g = obj.gen(4)
        out = [next(g)]
        try:
            while True:
                out.append(g.send(10))
        except StopIteration as stop:
            return out, stop.value

    assert drive(plain()) == drive(deco())
    g = deco().gen(10)
    assert 0 == next(g)
    g.close()
    assert inspect.getgeneratorstate(g) == inspect.GEN_CLOSED


def test_generator_throw_reaches_the_user_generator() -> None:
    """throw() into the wrapper is delivered inside the user's generator."""
    seen: list[str] = []

    @tracked(every=1, methods=("gen",))
    class Udf:
        def gen(self) -> Iterator[int]:
            try:
                yield 1
            except Boom:
                seen.append("caught")
                yield 2

    g = Udf().gen()
    assert 1 == next(g)
    assert 2 == g.throw(Boom())
    assert ["caught"] == seen


def test_coroutine_results_and_exceptions(pair: tuple[Any, Any]) -> None:
    """An async method awaits to the same result and raises the same exception."""
    plain, deco = pair
    assert asyncio.run(plain().coro(4)) == asyncio.run(deco().coro(4))
    with pytest.raises(Boom):
        asyncio.run(deco().coro(-1))


def test_async_generator_asend_athrow_aclose(pair: tuple[Any, Any]) -> None:
    """An async generator method supports iteration, asend, athrow and aclose like the original."""
    plain, deco = pair

    async def collect(obj: Any) -> list[int]:
        return [x async for x in obj.agen(5)]

    async def early_stop(obj: Any) -> list[int]:
        ag = obj.agen(5)
        out = [await ag.__anext__(), await ag.asend(None)]
        with pytest.raises(StopAsyncIteration):
            await ag.asend("stop")
        return out

    async def thrown(obj: Any) -> str:
        ag = obj.agen(5)
        await ag.__anext__()
        try:
            await ag.athrow(Boom("in"))
        except Boom as exc:
            return str(exc)
        return "not raised"

    async def closed(obj: Any) -> None:
        ag = obj.agen(5)
        await ag.__anext__()
        await ag.aclose()
        with pytest.raises(StopAsyncIteration):
            await ag.__anext__()

    assert asyncio.run(collect(plain())) == asyncio.run(collect(deco()))
    assert asyncio.run(early_stop(plain())) == asyncio.run(early_stop(deco()))
    assert asyncio.run(thrown(plain())) == asyncio.run(thrown(deco()))
    asyncio.run(closed(deco()))


def test_static_and_class_methods(pair: tuple[Any, Any]) -> None:
    """staticmethod and classmethod stay what they were."""
    plain, deco = pair
    assert plain.static(1) == deco.static(1)
    assert isinstance(deco.__dict__["static"], staticmethod)
    assert isinstance(deco.__dict__["klass"], classmethod)
    assert "Udf:3" == deco.klass(3)


def test_same_class_identity_isinstance_super_and_subclassing() -> None:
    """tracked returns the very class: identity, isinstance, super() and subclassing unchanged."""

    class Base:
        def __call__(self, x: int) -> int:
            return x + 1

    class Udf(Base):
        def __call__(self, x: int) -> int:
            return super().__call__(x) * 10

    decorated = tracked(Udf)
    assert decorated is Udf
    assert isinstance(Udf(), Base)
    assert 20 == Udf()(1)

    class Child(Udf):
        pass

    assert 30 == Child()(2)
    with pytest.raises(TypeError, match="not tracked"):  # the base is not patched
        udfmem.testing.state_of(Base)


def test_plain_function_keeps_kind_and_result() -> None:
    """@tracked on a function returns a function of the same kind, name and result."""

    def double(x: int) -> int:
        return 2 * x

    async def adouble(x: int) -> int:
        return 2 * x

    t = tracked(double)
    ta = tracked(every=1)(adouble)
    assert 8 == t(4)
    assert "double" == t.__name__
    assert inspect.iscoroutinefunction(ta)
    assert 8 == asyncio.run(ta(4))
    assert inspect.signature(double) == inspect.signature(t)
