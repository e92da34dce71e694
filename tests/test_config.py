"""Decorator arguments fail loudly at decoration time; env values override and never raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Events

from udfmem import TrackedUDF, tracked

Reader = Callable[..., Events]


class Plain:
    """A minimal UDF class."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every": 0}, ValueError, "every must be >= 1"),
        ({"every": 2.5}, TypeError, "every must be an int"),
        ({"every": True}, TypeError, "every must be an int"),
        ({"every_s": -1}, ValueError, "every_s must be >= 0"),
        ({"every_s": float("nan")}, ValueError, "every_s"),
        ({"every_s": "60"}, TypeError, "every_s must be a number"),
        ({"name": ""}, TypeError, "name must be a non-empty str"),
        ({"methods": "__call__"}, TypeError, "not a str"),
        ({"methods": ()}, TypeError, "non-empty tuple"),
        ({"methods": ("__call__", "__call__")}, ValueError, "twice"),
        ({"methods": ("not a name",)}, TypeError, "method names"),
        ({"setup": 3}, TypeError, "setup must be a method name"),
        ({"setup": "__call__"}, ValueError, "both the setup method and a tracked method"),
        ({"trim": "sometimes"}, TypeError, "trim must be 'auto', 'off' or an int"),
        ({"trim": 0}, ValueError, "trim must be >= 1"),
        ({"trim": True}, TypeError, "trim must be"),
        ({"arena_max": 0}, ValueError, "arena_max must be >= 1"),
        ({"arena_max": "2"}, TypeError, "arena_max must be an int"),
    ],
)
def test_bad_decorator_argument_raises_at_decoration_time(kwargs: dict[str, Any], error: type, match: str) -> None:
    """A bad argument raises when tracked(...) is called, before any UDF call."""
    with pytest.raises(error, match=match):
        tracked(**kwargs)


def test_missing_method_raises_with_a_hint() -> None:
    """A class without the tracked method is rejected, naming the option to use."""

    class NoCall:
        def process(self, x: int) -> int:
            return x

    with pytest.raises(ValueError, match=r"NoCall has no method __call__ \(pass methods="):
        tracked(NoCall)
    assert tracked(methods=("process",))(NoCall) is NoCall


def test_non_callable_target_raises() -> None:
    """Only classes and functions can be tracked."""
    with pytest.raises(TypeError, match="takes a class or a function"):
        tracked(42)  # type: ignore[call-overload]


def test_mixin_bad_class_kwarg_raises_at_class_creation() -> None:
    """TrackedUDF validates its class keyword arguments when the class statement runs."""
    with pytest.raises(ValueError, match="every must be >= 1"):

        class Bad(TrackedUDF, every=0):
            def __call__(self) -> None:
                pass


def test_env_every_overrides_the_decorator(monkeypatch: pytest.MonkeyPatch, stderr_events: Reader) -> None:
    """UDFMEM_EVERY, read in the worker on first use, overrides every=."""
    monkeypatch.setenv("UDFMEM_EVERY", "3")
    udf = tracked(every=1000)(type("EnvEvery", (Plain,), {}))
    for i in range(7):
        udf()(i)
    assert [3, 6] == [s["call"] for s in stderr_events("udfmem.snapshot")]


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("UDFMEM_EVERY", "often"),
        ("UDFMEM_EVERY", "0"),
        ("UDFMEM_EVERY_S", "-5"),
        ("UDFMEM_LOG_FORMAT", "xml"),
        ("UDFMEM_DISABLE", "maybe"),
    ],
)
def test_bad_env_value_warns_once_and_uses_the_default(
    monkeypatch: pytest.MonkeyPatch, stderr_events: Reader, var: str, value: str
) -> None:
    """A bad env value yields exactly one udfmem.warning naming it; the UDF runs with defaults."""
    monkeypatch.setenv(var, value)
    udf = tracked(every=2)(type(f"Bad{var}", (Plain,), {}))
    for i in range(4):
        assert i == udf()(i)
    events = stderr_events()
    warnings = [e for e in events if e["event"] == "udfmem.warning"]
    assert [var] == [w["var"] for w in warnings]
    assert value in warnings[0]["message"]
    assert [2, 4] == [e["call"] for e in events if e["event"] == "udfmem.snapshot"]


def test_disable_makes_a_silent_pass_through(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """UDFMEM_DISABLE=1: results unchanged, nothing at all logged (no setup, no snapshot)."""
    monkeypatch.setenv("UDFMEM_DISABLE", "1")

    @tracked(every=1)
    class Udf:
        def setup(self) -> None:
            self.k = 2

        def __call__(self, x: int) -> int:
            return x * self.k

    udf = Udf()
    udf.setup()
    assert [0, 2, 4] == [udf(i) for i in range(3)]
    assert "" == capsys.readouterr().err


def test_tracked_over_daft_cls_raises_the_ordering_error() -> None:
    """@tracked on top of @daft.cls output says to put @tracked innermost."""
    daft = pytest.importorskip("daft")
    wrapped = daft.cls(type("DaftUdf", (Plain,), {}))
    with pytest.raises(TypeError, match=r"output of daft\.cls.*put @tracked innermost"):
        tracked(wrapped)


def test_tracked_over_daft_func_raises_the_ordering_error() -> None:
    """@tracked on top of @daft.func output says to put @tracked innermost."""
    daft = pytest.importorskip("daft")

    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"output of daft\.func.*innermost"):
        tracked(daft.func(f))


def test_tracked_over_geneva_udf_raises_the_ordering_error() -> None:
    """@tracked on top of @geneva.udf output (class or function) says to put @tracked innermost."""
    geneva = pytest.importorskip("geneva")
    pa = pytest.importorskip("pyarrow")
    on_class = geneva.udf(data_type=pa.int64())(type("GenevaUdf", (Plain,), {}))
    with pytest.raises(TypeError, match=r"geneva\.udf.*innermost"):
        tracked(on_class)

    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"geneva\.udf.*innermost"):
        tracked(geneva.udf(data_type=pa.int64())(f))


def test_bad_env_warning_is_once_per_process(monkeypatch: pytest.MonkeyPatch, stderr_events: Reader) -> None:
    """Two UDFs binding in the same process with the same bad value give one warning, not two."""
    monkeypatch.setenv("UDFMEM_EVERY", "twice")
    first = tracked(every=2)(type("OnceA", (Plain,), {}))
    second = tracked(every=2)(type("OnceB", (Plain,), {}))
    first()(1)
    second()(1)
    warnings = stderr_events("udfmem.warning")
    assert [("bad-env", "UDFMEM_EVERY")] == [(w["what"], w["var"]) for w in warnings]
