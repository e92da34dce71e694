"""``tracked`` and ``TrackedUDF``: patch a UDF's methods in place with udfmem's wrappers.

The class is patched, never proxied or subclassed: the same object, ``isinstance``,
``super()`` and pickling. Each per-call method gets a counting wrapper and each setup
phase a measuring one (:mod:`udfmem.runtime.wrappers`), all sharing the UDF's state,
made here under a deterministic key (:mod:`udfmem.runtime.registry`). A bad decorator
argument, a missing method or the wrong decorator order raise here, at decoration time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, overload

from .. import _settings
from .registry import new_state
from .state import UDFState
from .wrappers import MARK, is_ours, wrap_call, wrap_setup

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_ORDER_HINT = "put @tracked innermost: directly on the class or function, under the engine's decorator"


def find_state(udf: Any) -> UDFState:
    """The state of a tracked class, one of its instances, or a tracked function (``testing.state_of`` shows it).

    Found through udfmem's own wrappers, recognised by their code: a user's decorator that
    copied ``__udfmem_state__`` onto itself is looked through, never taken for ours.

    Raises:
        TypeError: ``udf`` is not tracked by udfmem.
    """
    if is_ours(udf):
        state: UDFState = getattr(udf, MARK)
        return state
    klass = udf if isinstance(udf, type) else type(udf)
    for owner in klass.__mro__:
        for value in vars(owner).values():
            raw = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if is_ours(raw):
                found: UDFState = getattr(raw, MARK)
                return found
    raise TypeError(f"udfmem: {getattr(udf, '__qualname__', type(udf).__qualname__)} is not tracked by udfmem")


def _unwrap(obj: Any) -> Any:
    """The original function under udfmem's own wrappers (or ``obj`` itself); a user's decorator stays."""
    while is_ours(obj):
        obj = obj.__wrapped__
    return obj


def _engine_of(obj: Any) -> str | None:
    """Name the engine decorator that produced ``obj``, without importing any engine."""
    candidates = [type(obj)] + (list(obj.__mro__) if isinstance(obj, type) else [])
    for klass in candidates:
        top = (getattr(klass, "__module__", "") or "").partition(".")[0]
        if top == "daft":
            return "daft.cls" if isinstance(obj, type) else "daft.func"
        if top == "geneva":
            return "geneva.udf"
    if not isinstance(obj, type) and isinstance(getattr(obj, "__wrapped__", None), type):
        return "geneva.udf (or another decorator that replaced the class)"  # a function standing in for it
    return None


def _find(cls: type, name: str) -> tuple[Any, bool]:
    """The raw class-dict entry for ``name`` along the MRO (excluding ``object``)."""
    for klass in cls.__mro__:
        if klass is object:
            break
        if name in klass.__dict__:
            return klass.__dict__[name], True
    return None, False


def _patch(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    raw, _ = _find(cls, name)
    if isinstance(raw, (staticmethod, classmethod)):
        setattr(cls, name, type(raw)(make(_unwrap(raw.__func__))))
    elif inspect.isfunction(raw):
        setattr(cls, name, make(_unwrap(raw)))
    else:
        raise TypeError(f"udfmem: {cls.__name__}.{name} is a {type(raw).__name__}, not a method udfmem can wrap")


def _track_class(cls: type[T], settings: _settings.Settings, lenient: bool = False) -> type[T]:
    present = [m for m in settings.methods if _find(cls, m)[1]]
    missing = [m for m in settings.methods if m not in present]
    if missing and not lenient:
        hint = " (pass methods=('name', ...) to choose which)" if settings.methods == ("__call__",) else ""
        raise ValueError(f"udfmem: {cls.__name__} has no method {', '.join(missing)}{hint}")
    if not present:
        return cls
    st = new_state(UDFState, f"{cls.__module__}.{cls.__qualname__}", settings, _source(cls), cls.__qualname__)
    for method in present:
        _patch(cls, method, lambda fn: wrap_call(fn, st))
    phases = ["__init__"] + ([settings.setup] if settings.setup is not None else [])
    for phase in phases:  # engines run __init__; users call setup() themselves
        raw, found = _find(cls, phase)
        # a C-level __init__ (dict, list, Exception bases) is not measured: nothing of the UDF's runs there
        if found and (inspect.isfunction(raw) or isinstance(raw, (staticmethod, classmethod))):
            _patch(cls, phase, lambda fn, phase=phase: wrap_setup(fn, st, phase))  # type: ignore[misc]
    return cls


def _source(target: Any) -> str | None:
    """The file defining ``target`` (for memray attribution), if known."""
    try:
        return inspect.getsourcefile(target)
    except (TypeError, OSError):
        return None


def _track(target: Any, kwargs: dict[str, Any], lenient: bool = False) -> Any:
    engine = _engine_of(target)
    if engine is not None:
        raise TypeError(f"udfmem: @tracked got the output of {engine}; {_ORDER_HINT}")
    if isinstance(target, type):
        settings = _settings.from_decorator(**{**kwargs, "name": kwargs.get("name") or target.__name__})
        return _track_class(target, settings, lenient)
    if inspect.isfunction(target):
        fn = _unwrap(target)
        settings = _settings.from_decorator(**{**kwargs, "name": kwargs.get("name") or fn.__name__})
        return wrap_call(fn, new_state(UDFState, f"{fn.__module__}.{fn.__qualname__}", settings, _source(fn)))
    raise TypeError(f"udfmem: @tracked takes a class or a function, got {type(target).__name__}")


def _check(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Validate decorator keywords now, before a target is known; drop ``name=None``."""
    if kwargs.get("name", "") is None:
        kwargs = {k: v for k, v in kwargs.items() if k != "name"}
    _settings.from_decorator(**kwargs)
    return kwargs


@overload
def tracked(obj: F, /) -> F: ...


@overload
def tracked(
    *,
    every: int = ...,
    every_s: float = ...,
    name: str | None = ...,
    methods: tuple[str, ...] = ...,
    setup: str | None = ...,
    trim: str | int = ...,
    arena_max: int | None = ...,
    suspect: bool = ...,
    metrics: str | tuple[str, ...] = ...,
    memray_env: str = ...,
) -> Callable[[F], F]: ...


def tracked(obj: Any = None, /, **kwargs: Any) -> Any:
    """Track a UDF class (or function): count calls and log a memory snapshot every K.

    Use as ``@tracked`` or ``@tracked(every=16, name="embed")``, innermost, directly on
    the class (under ``@daft.cls`` or ``@geneva.udf``). The class is patched in place
    and returned: same object, same ``isinstance``, ``super()`` and pickling.

    Keyword arguments (the decorator rows of the settings table, see the README):
        every: snapshot every this many calls (per process; ``UDFMEM_EVERY`` overrides).
        every_s: also snapshot at the first call after this many seconds (0: never).
        name: the ``udf=`` name in events; defaults to the class or function name.
        methods: the per-call methods to wrap; default ``("__call__",)``.
        setup: the setup method measured as ``udfmem.setup`` (``__init__`` is measured
            too, as its own phase). ``None``: measure ``__init__`` only.
        trim: give freed memory back to the OS: ``"auto"`` (trim when a snapshot finds
            enough freed-but-resident memory, and when the UDF goes idle), ``"off"``, or
            every N calls. ``UDFMEM_TRIM`` overrides.
        arena_max: cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``) when the UDF is
            first used in a process; a ``udfmem.warning`` says when that is too late.
            For spawned workers prefer ``worker_env(arena_max=N)``.
        suspect: the online detector (``udfmem.suspect`` events); ``UDFMEM_SUSPECT``
            overrides. Default on.
        metrics: export the snapshot's figures as gauges: ``"off"`` (default),
            ``"ray"``, ``"otel"`` or ``"ray,otel"``; ``UDFMEM_METRICS`` overrides.
        memray_env: the environment variable whose value, a directory, switches memray
            on in the worker (``UDFMEM_MEMRAY_DIR`` by default, and as a fallback).

    Raises:
        TypeError, ValueError: at decoration time, for a bad argument, a missing method,
            or when applied on top of an engine's decorator.
    """
    kwargs = _check(kwargs)
    if obj is None:
        return lambda target: _track(target, kwargs)
    return _track(obj, kwargs)


_DEFAULTS = {**_settings.DEFAULTS, "name": None}  # None: the class or function name
tracked.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("obj", inspect.Parameter.POSITIONAL_ONLY, default=None)]
    + [
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=_DEFAULTS[key])
        for key in _settings.DECORATOR_KEYS
    ]
)


class TrackedUDF:
    """Mixin base: ``class Embed(TrackedUDF, every=16): ...`` tracks every subclass.

    Class keyword arguments are those of :func:`tracked`. All but ``name`` are inherited
    by further subclasses; each subclass is named after itself unless it passes ``name=``.
    A subclass lacking the tracked methods (an abstract base) is left as is.
    """

    __slots__ = ()
    __udfmem_kwargs__: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, /, **kwargs: Any) -> None:
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in _settings.DECORATOR_KEYS}
        super().__init_subclass__(**kwargs)
        inherited = {k: v for k, v in cls.__udfmem_kwargs__.items() if k != "name"}
        merged = _check({**inherited, **ours})
        cls.__udfmem_kwargs__ = merged
        _track(cls, merged, lenient=True)
