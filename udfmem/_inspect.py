"""What grows: cheap size measures of a UDF object's attributes and its module's containers.

Used by the online detector (``udfmem.suspect``'s ``growing``) when a growth pattern is
flagged. Each measure is ``len()`` of a container, ``nbytes`` of a buffer (bytes,
bytearray, memoryview, NumPy, Arrow) or ``sys.getsizeof`` otherwise; a large container's
bytes are estimated from a few sampled items. Two inspections are compared and the
attributes that grew most are named first, e.g. ``self.cache +1,200 items (~1.2 MiB);
module KEEP +96 items``.

An inspection has a hard time budget (``BUDGET_S``: it stops where it is), keeps no
strong reference (names and numbers only), never raises, and calls no user code but
``__len__`` and ``nbytes``.
"""

from __future__ import annotations

import sys
import time
import types
from typing import Any

BUDGET_S = 0.001
"""An inspection stops after this long."""
SAMPLED = 8
"""Items sampled to estimate a large container's bytes."""
MAX_NAMES = 256
"""Attributes and module globals measured at most (the first ones found)."""
SHOWN = 3
"""Growers named at most."""

Measures = dict[str, tuple[int | None, int]]
"""Per name: (items, or None for a non-container; estimated bytes)."""

_CONTAINERS = (list, dict, set, frozenset, tuple)
_SKIP = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)


def _nbytes(obj: Any) -> int | None:
    """A buffer's size: ``nbytes`` of NumPy/Arrow/memoryview, ``len`` of bytes and bytearray."""
    if isinstance(obj, bytes | bytearray):
        return len(obj)
    nbytes = getattr(type(obj), "nbytes", None)
    if nbytes is None:
        return None
    value = getattr(obj, "nbytes", None)
    return value if isinstance(value, int) else None


def _sizeof(obj: Any) -> int:
    """``sys.getsizeof`` for built-in types; a user type's own ``__sizeof__`` is never called."""
    kind = type(obj)
    return sys.getsizeof(obj, 0) if kind.__module__ == "builtins" else kind.__basicsize__


def _item_bytes(obj: Any) -> int:
    nbytes = _nbytes(obj)
    return nbytes if nbytes is not None else _sizeof(obj)


def measure(obj: Any) -> tuple[int | None, int]:
    """(items, estimated bytes) of ``obj``: a container by ``len`` and sampled items, a buffer by ``nbytes``."""
    nbytes = _nbytes(obj)
    if nbytes is not None:
        return None, nbytes
    if isinstance(obj, _CONTAINERS) or (hasattr(type(obj), "__len__") and hasattr(type(obj), "__iter__")):
        try:
            n = len(obj)
        except Exception:
            return None, _sizeof(obj)
        sample: list[Any] = []
        if type(obj) is dict:  # exact built-ins only: sampling a subclass would run its code
            for i, v in enumerate(obj.values()):
                if i >= SAMPLED:
                    break
                sample.append(v)
        elif type(obj) in (list, tuple):
            step = max(1, n // SAMPLED)
            sample = [obj[i] for i in range(0, n, step)][:SAMPLED]
        each = sum(_item_bytes(x) for x in sample) / len(sample) if sample else 0
        return n, _sizeof(obj) + int(each * n)
    return None, _sizeof(obj)


def inspect(
    instance: Any, module: types.ModuleType | None, budget_s: float = BUDGET_S, prefix: str = "self"
) -> Measures:
    """Measure ``instance``'s attributes (``<prefix>.X``) and ``module``'s containers (``module X``), within budget."""
    out: Measures = {}
    deadline = time.perf_counter() + budget_s
    try:
        attrs = vars(instance) if instance is not None and hasattr(instance, "__dict__") else {}
        for name, value in list(attrs.items())[:MAX_NAMES]:
            if time.perf_counter() > deadline:
                return out
            if not isinstance(value, _SKIP):
                out[f"{prefix}.{name}"] = measure(value)
        if module is not None:
            for name, value in list(vars(module).items())[:MAX_NAMES]:
                if time.perf_counter() > deadline:
                    return out
                if isinstance(value, _CONTAINERS) and not name.startswith("__"):
                    out[f"module {name}"] = measure(value)
    except Exception:  # a hostile __len__ or __dict__: what was measured stands
        return out
    return out


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
