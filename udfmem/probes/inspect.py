"""What grows: cheap size measures of a UDF object's attributes and its module's containers.

Used by the online detector (``udfmem.suspect``'s ``growing``) when a growth pattern is
flagged. Each measure is the length of a container, ``nbytes`` of a buffer (bytes,
bytearray, memoryview, NumPy, Arrow) or the built-in size otherwise; a large container's
bytes are estimated from a few sampled items (``LEVELS`` levels deep at most). Two
inspections are compared and the attributes that grew most are named first, e.g.
``self.cache +1,200 items (~1.2 MiB); module KEEP +96 items``.

An inspection keeps no strong reference (names and numbers only), never raises, and runs
no Python code but udfmem's own. Types and attributes are read the way
``inspect.getattr_static`` reads them: ``type(obj)``, the class namespaces along the MRO,
the instance ``__dict__`` through the type's own slot — never ``isinstance`` (a lazy
proxy's ``__class__`` property), ``hasattr``/``getattr`` (a ``__getattr__``) or
``__sizeof__``. The only calls are C-implemented ones: the first ``__len__`` slot on the
MRO (a ``dict`` subclass is counted by ``dict``'s own) and an ``nbytes`` getset (NumPy,
Arrow, memoryview); a Python ``__len__`` or ``nbytes`` (your class, ``ChainMap``) is never
called: such an object is measured through the attributes it holds (``INNER``, one level).

Limits are in wall time (``clock``). An inspection looks at ``MAX_NAMES`` names at most,
iterating lazily, and stops when its ``BUDGET_S`` is spent (checked between attributes).
A call that is not a built-in container's is timed, and a type whose ``len`` or ``nbytes``
once took longer than ``SLOW_S`` (an Arrow Table of 100k chunks) is never called for it
again in this process: a call cannot be interrupted, so the worst stall is one such call
per type and attribute.
"""

from __future__ import annotations

import collections
import sys
import time
import types
import weakref
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

BUDGET_S = 0.001
"""An inspection stops after this long (wall time)."""
SLOW_S = 0.001
"""A type's ``len``/``nbytes`` that took longer than this once is never called again in the process."""
SAMPLED = 8
"""Items sampled to estimate a large container's bytes."""
MAX_NAMES = 256
"""Attributes and module globals measured at most (the first ones found)."""
INNER = 8
"""Attributes of an object without a C-implemented length that are measured for it (one level)."""
LEVELS = 2
"""Levels looked into below a measured value (its sampled items, a class of yours' attributes, and
theirs); deeper ones count by their own size: a nested or self-holding container costs at most
``SAMPLED`` x ``SAMPLED`` measures, never one per item."""
SHOWN = 3
"""Growers named at most."""
MAX_SLOW = 1024
"""Types remembered as slow at most (beyond this, no new type's call is made)."""
MAX_PLANS = 4096
"""Types whose way of measuring is kept (then all are forgotten and found again)."""

Measures = dict[str, tuple[int | None, int]]
"""Per name: (items, or None for a non-container; estimated bytes)."""
Clock = Callable[[], float]
"""Seconds, for the budget and the timing of calls (``time.perf_counter``; tests inject one)."""

_NAMESPACE = type.__dict__["__dict__"]  # a class's own namespace, whatever its metaclass says
_MRO = type.__dict__["__mro__"]
_BASICSIZE = type.__dict__["__basicsize__"]
_FLAGS = type.__dict__["__flags__"]
_MODULE = type.__dict__["__module__"]
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement (may define __sizeof__)
_SLOTS = (types.GetSetDescriptorType, types.MemberDescriptorType)  # C-implemented attributes
_WRAPPER = types.WrapperDescriptorType  # a C slot such as __len__
_BUILTIN: dict[int, type] = {
    id(k): k for k in (dict, list, tuple, set, frozenset, bytes, bytearray, str, memoryview, collections.deque)
}
"""Built-in containers: O(1) ``len`` and ``__sizeof__``, called untimed (a subclass's storage too)."""
_CONTAINERS = frozenset(id(k) for k in (list, dict, set, frozenset, tuple))
_SKIP = frozenset(
    id(k) for k in (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
)
_slow: dict[int, tuple[weakref.ref[type], set[str]]] = {}  # by id(type): no hashing of a user class


def _mro(cls: type) -> tuple[type, ...]:
    mro: tuple[type, ...] = _MRO.__get__(cls)
    return mro


def _static(mro: tuple[type, ...], name: str) -> Any:
    """The raw class attribute ``name`` (no descriptor run), first on ``mro``; None if none."""
    for klass in mro:
        namespace = _NAMESPACE.__get__(klass)
        if name in namespace:
            return namespace[name]
    return None


_SIZEOF: dict[int, Callable[[Any], int]] = {key: _static(_mro(k), "__sizeof__") for key, k in _BUILTIN.items()}
_BYTES_LEN: dict[int, Callable[[Any], int]] = {id(k): _static(_mro(k), "__len__") for k in (bytes, bytearray)}


class _Plan:
    """How a type is measured: found once from its class namespaces (no code of the type runs)."""

    __slots__ = (
        "basic",
        "buffer_len",
        "container",
        "length",
        "nbytes",
        "own_dict",
        "sampler",
        "sizeof",
        "skip",
        "timed_len",
        "timed_nbytes",
    )

    def __init__(self, cls: type) -> None:
        mro = _mro(cls)
        ids = [id(k) for k in mro]
        # bytes, bytearray (a subclass's storage too): the length is the size
        self.buffer_len: Callable[[Any], int] | None = next((_BYTES_LEN[i] for i in ids if i in _BYTES_LEN), None)
        nbytes = _static(mro, "nbytes")
        self.nbytes: Any = nbytes if type(nbytes) in _SLOTS else None  # a C getset, or None
        self.timed_nbytes = not any(k is memoryview for k in mro)  # an extension type's: timed, never again once slow
        lengths = [(k, _NAMESPACE.__get__(k).get("__len__")) for k in mro]
        owner, length = next(((k, slot) for k, slot in lengths if type(slot) is _WRAPPER), (None, None))
        self.length: Any = length  # the first C __len__ slot on the MRO, or None
        self.timed_len = id(owner) not in _BUILTIN  # an extension type's len (not a built-in container's)
        self.sampler = next((k for k in mro if k is dict or k is list or k is tuple), None)  # sampled by its methods
        self.sizeof: Callable[[Any], int] | None = next((_SIZEOF[i] for i in ids if i in _SIZEOF), None)
        static_builtin = not _FLAGS.__get__(cls) & _HEAPTYPE and _MODULE.__get__(cls) == "builtins"
        self.basic: int | None = None if static_builtin else _BASICSIZE.__get__(cls)  # None: sys.getsizeof
        own_dict = _static(mro, "__dict__")
        self.own_dict: Any = own_dict if type(own_dict) in _SLOTS else None  # the instance __dict__'s C slot
        self.skip = any(i in _SKIP for i in ids)  # a module, function, method or class: not measured
        self.container = any(i in _CONTAINERS for i in ids)  # a module global worth measuring


_plans: dict[int, tuple[weakref.ref[type], _Plan]] = {}  # by id(type): no hashing of a user class


def _plan(cls: type) -> _Plan:
    """``cls``'s plan, made once (kept for at most ``MAX_PLANS`` types, then made again)."""
    entry = _plans.get(id(cls))
    if entry is not None and entry[0]() is cls:
        return entry[1]
    plan = _Plan(cls)
    if len(_plans) >= MAX_PLANS:
        _plans.clear()
    _plans[id(cls)] = (weakref.ref(cls), plan)
    return plan


def _instance_dict(obj: Any) -> dict[Any, Any] | None:
    """``obj``'s ``__dict__`` through the type's own C slot; None for a ``__slots__`` object or a property."""
    cls = type(obj)
    slot = _plan(cls).own_dict
    if slot is None:
        return None
    found = slot.__get__(obj, cls)
    return found if _plan(type(found)).sampler is dict else None


def _was_slow(cls: type, name: str) -> bool:
    entry = _slow.get(id(cls))
    return entry is not None and entry[0]() is cls and name in entry[1]


def _remember_slow(cls: type, name: str) -> None:
    entry = _slow.get(id(cls))
    if entry is None or entry[0]() is not cls:
        if len(_slow) >= MAX_SLOW:
            for key in [key for key, (ref, _) in _slow.items() if ref() is None]:
                del _slow[key]
        entry = _slow[id(cls)] = (weakref.ref(cls), set())
    entry[1].add(name)


def _call(cls: type, name: str, call: Callable[[], object], clock: Clock) -> int | None:
    """``call()`` (an extension type's C ``len``/``nbytes``), timed; never again for ``cls`` once slow."""
    if _was_slow(cls, name) or len(_slow) >= MAX_SLOW:
        return None
    start = clock()
    try:
        value = call()
    finally:
        if clock() - start > SLOW_S:
            _remember_slow(cls, name)
    return value if type(value) is int else None


def _sizeof(obj: Any, plan: _Plan) -> int:
    """A built-in's ``__sizeof__`` (a subclass's storage too); a class of yours: its basic size, no call."""
    if plan.sizeof is not None:
        return plan.sizeof(obj)
    return sys.getsizeof(obj, 0) if plan.basic is None else plan.basic


def _sample(obj: Any, sampler: type, n: int) -> list[Any]:
    """A few items of a built-in dict, list or tuple (by the built-in's own methods)."""
    if sampler is dict:
        return list(islice(dict.values(obj), SAMPLED))
    get = list.__getitem__ if sampler is list else tuple.__getitem__
    return [get(obj, i) for i in range(0, n, max(1, n // SAMPLED))][:SAMPLED]


def _measure(obj: Any, clock: Clock, inner: bool, levels: int = LEVELS) -> tuple[int | None, int]:
    """(items, bytes) of ``obj``, looking ``levels`` levels into what it holds (``inner``: a class of yours' too)."""
    cls = type(obj)
    plan = _plan(cls)
    if plan.buffer_len is not None:
        return None, plan.buffer_len(obj)
    getset, slot = plan.nbytes, plan.length
    if getset is not None:
        nbytes = (
            _call(cls, "nbytes", lambda: getset.__get__(obj, cls), clock) if plan.timed_nbytes else getset.__get__(obj)
        )
        if type(nbytes) is int:
            return None, nbytes
    n = None
    if slot is not None:
        n = _call(cls, "__len__", lambda: slot(obj), clock) if plan.timed_len else slot(obj)
    if type(n) is int:
        sample = _sample(obj, plan.sampler, n) if plan.sampler is not None and levels > 0 else []
        each = sum(_measure(x, clock, False, levels - 1)[1] for x in sample) / len(sample) if sample else 0
        return n, _sizeof(obj, plan) + int(each * n)
    size = _sizeof(obj, plan)
    own = _instance_dict(obj) if inner and levels > 0 else None
    if own is None:
        return None, size
    items: int | None = None
    for value in islice(dict.values(own), INNER):  # a class of yours: what it holds, one level
        held, nbytes = _measure(value, clock, False, levels - 1)
        size += nbytes
        if held is not None:
            items = (items or 0) + held
    return items, size


def measure(obj: Any, clock: Clock = time.perf_counter) -> tuple[int | None, int]:
    """(items, estimated bytes) of ``obj``: a container by length and sampled items, a buffer by ``nbytes``."""
    return _measure(obj, clock, True)


def _named(obj: Any) -> Iterable[tuple[Any, Any]]:
    """The first ``MAX_NAMES`` (name, value) pairs of ``obj``'s ``__dict__``, lazily; none without one."""
    own = _instance_dict(obj)
    return islice(dict.items(own), MAX_NAMES) if own is not None else ()


def inspect(
    instance: Any,
    module: types.ModuleType | None,
    budget_s: float = BUDGET_S,
    prefix: str = "self",
    clock: Clock = time.perf_counter,
) -> Measures:
    """Measure ``instance``'s attributes (``<prefix>.X``) and ``module``'s containers (``module X``), within budget."""
    out: Measures = {}
    deadline = clock() + budget_s
    try:
        for name, value in _named(instance) if instance is not None else ():
            if clock() > deadline:
                return out
            if type(name) is str and not _plan(type(value)).skip:
                _put(out, f"{prefix}.{name}", value, clock)
        for name, value in _named(module) if module is not None else ():
            if clock() > deadline:
                return out
            if type(name) is str and not name.startswith("__") and _plan(type(value)).container:
                _put(out, f"module {name}", value, clock)
    except Exception:  # a dict changed size under another thread: what was measured stands
        return out
    return out


def _put(out: Measures, name: str, value: Any, clock: Clock) -> None:
    """``value``'s measure under ``name``; none if measuring failed (a list shrank, an extension raised)."""
    try:
        measured = _measure(value, clock, True)
    except Exception:
        return
    out[name] = measured


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def growing(before: Measures, now: Measures) -> str | None:
    """The attributes that grew from ``before`` to ``now``, most bytes first, in one line; None if none."""
    grown: list[tuple[int, str]] = []
    for name, (items, nbytes) in now.items():
        old = before.get(name)
        if old is None:
            continue
        old_items, old_bytes = old
        d_items = (items or 0) - (old_items or 0) if items is not None and old_items is not None else 0
        d_bytes = nbytes - old_bytes
        if d_items <= 0 and d_bytes <= 0:
            continue
        text = f"+{d_items:,} items (~{_size(max(d_bytes, 0))})" if d_items > 0 else f"+{_size(d_bytes)}"
        grown.append((max(d_bytes, 0) + d_items, f"{name} {text}"))
    grown.sort(key=lambda g: -g[0])
    return "; ".join(text for _, text in grown[:SHOWN]) or None
