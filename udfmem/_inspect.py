"""What grows: cheap size measures of a UDF object's attributes and its module's containers.

Used by the online detector (``udfmem.suspect``'s ``growing``) when a growth pattern is
flagged. Each measure is the length of a container, ``nbytes`` of a buffer (bytes,
bytearray, memoryview, NumPy, Arrow) or the built-in size otherwise; a large container's
bytes are estimated from a few sampled items. Two inspections are compared and the
attributes that grew most are named first, e.g. ``self.cache +1,200 items (~1.2 MiB);
module KEEP +96 items``.

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
SHOWN = 3
"""Growers named at most."""
MAX_SLOW = 1024
"""Types remembered as slow at most (beyond this, no new type's call is made)."""

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


def _instance_dict(obj: Any, cls: type, mro: tuple[type, ...]) -> dict[Any, Any] | None:
    """``obj``'s ``__dict__`` through the type's own C slot; None for a ``__slots__`` object or a property."""
    raw = _static(mro, "__dict__")
    if type(raw) not in _SLOTS:
        return None
    found = raw.__get__(obj, cls)
    return found if any(k is dict for k in _mro(type(found))) else None


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


def _nbytes(obj: Any, cls: type, mro: tuple[type, ...], clock: Clock) -> int | None:
    """A buffer's size: ``len`` of bytes and bytearray, a C ``nbytes`` (NumPy, Arrow, memoryview)."""
    for klass in mro:
        buffer_len = _BYTES_LEN.get(id(klass))
        if buffer_len is not None:
            return buffer_len(obj)
    raw = _static(mro, "nbytes")
    if type(raw) not in _SLOTS:
        return None
    if any(k is memoryview for k in mro):
        value = raw.__get__(obj, cls)
        return value if type(value) is int else None
    return _call(cls, "nbytes", lambda: raw.__get__(obj, cls), clock)


def _len(obj: Any, cls: type, mro: tuple[type, ...], clock: Clock) -> int | None:
    """The first C ``__len__`` slot on the MRO; a Python ``__len__`` is skipped, never called."""
    slot, owner = None, None
    for owner in mro:
        slot = _NAMESPACE.__get__(owner).get("__len__")
        if type(slot) is types.WrapperDescriptorType:
            break
    else:
        return None
    if id(owner) in _BUILTIN:
        n = slot(obj)
        return n if type(n) is int else None
    return _call(cls, "__len__", lambda: slot(obj), clock)


def _sizeof(obj: Any, cls: type, mro: tuple[type, ...]) -> int:
    """A built-in's ``__sizeof__`` (a subclass's storage too); a class of yours: its basic size, no call."""
    for klass in mro:
        sizeof = _SIZEOF.get(id(klass))
        if sizeof is not None:
            return sizeof(obj)
    if not _FLAGS.__get__(cls) & _HEAPTYPE and _MODULE.__get__(cls) == "builtins":
        return sys.getsizeof(obj, 0)
    basic: int = _BASICSIZE.__get__(cls)
    return basic


def _sample(obj: Any, mro: tuple[type, ...], n: int) -> list[Any]:
    """A few items of a built-in dict, list or tuple (by the built-in's own methods)."""
    for klass in mro:
        if klass is dict:
            return list(islice(dict.values(obj), SAMPLED))
        if klass is list or klass is tuple:
            get = klass.__getitem__
            return [get(obj, i) for i in range(0, n, max(1, n // SAMPLED))][:SAMPLED]
    return []


def _measure(obj: Any, clock: Clock, inner: bool) -> tuple[int | None, int]:
    cls = type(obj)
    mro = _mro(cls)
    nbytes = _nbytes(obj, cls, mro, clock)
    if nbytes is not None:
        return None, nbytes
    n = _len(obj, cls, mro, clock)
    if n is not None:
        sample = _sample(obj, mro, n)
        each = sum(_measure(x, clock, False)[1] for x in sample) / len(sample) if sample else 0
        return n, _sizeof(obj, cls, mro) + int(each * n)
    own = _instance_dict(obj, cls, mro) if inner else None
    size = _sizeof(obj, cls, mro)
    if own is None:
        return None, size
    items: int | None = None
    for value in islice(dict.values(own), INNER):  # a class of yours: what it holds, one level
        held, nbytes = _measure(value, clock, False)
        size += nbytes
        if held is not None:
            items = (items or 0) + held
    return items, size


def measure(obj: Any, clock: Clock = time.perf_counter) -> tuple[int | None, int]:
    """(items, estimated bytes) of ``obj``: a container by length and sampled items, a buffer by ``nbytes``."""
    return _measure(obj, clock, True)


def _skipped(value: Any) -> bool:
    return any(id(k) in _SKIP for k in _mro(type(value)))


def _is_container(value: Any) -> bool:
    return any(id(k) in _CONTAINERS for k in _mro(type(value)))


def _named(obj: Any) -> Iterable[tuple[Any, Any]]:
    """The first ``MAX_NAMES`` (name, value) pairs of ``obj``'s ``__dict__``, lazily; none without one."""
    cls = type(obj)
    own = _instance_dict(obj, cls, _mro(cls))
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
            if type(name) is str and not _skipped(value):
                _put(out, f"{prefix}.{name}", value, clock)
        for name, value in _named(module) if module is not None else ():
            if clock() > deadline:
                return out
            if type(name) is str and not name.startswith("__") and _is_container(value):
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
