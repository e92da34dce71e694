"""What grows: cheap size measures of a UDF object's attributes and its module's containers.

Used by the online detector (``udfmem.suspect``'s ``growing``) when a growth pattern is
flagged. Each measure is the length of a container, ``nbytes`` of a buffer (bytes,
bytearray, memoryview, NumPy, Arrow) or the built-in size otherwise; a large container's
bytes are estimated from a few sampled items, the newest ones (the end of a list, deque or
dict: where a leak appends), each measured deeply (``LEVELS`` levels at most). Two
inspections are compared and the attributes that grew most are named first, e.g.
``self.cache +1,200 items (~1.2 MiB); module KEEP +96 items``.

What an item retains, not its own header: a NumPy array by the owner of its memory (its
``.base`` chain: a view of a 1 GiB batch retains the batch), an Arrow array, chunked array,
record batch or table by the buffers it references (``get_total_buffer_size``: a slice
pins its parent's buffers), a pandas DataFrame or Series by its blocks' arrays and its
index (what ``memory_usage(deep=False)`` counts, read from the block manager without
building a Series), a closure by what its cells and defaults hold, a ``functools.partial``
by its arguments. Views sharing an owner (the rows of a batch kept one by one, 1-row Arrow
slices) count it once: each counts its share of the owner, over the run of neighbours that
share it. The UDF object itself, met again in a closure or a cache key, is not counted. A
``functools.lru_cache`` in the module (or on the UDF's class) is measured too: its
``cache_info().currsize`` entries, the newest sampled deeply.

An inspection keeps no strong reference (names and numbers only), never raises, and runs
no Python code of yours. Types and attributes are read the way
``inspect.getattr_static`` reads them: ``type(obj)``, the class namespaces along the MRO,
the instance ``__dict__`` through the type's own slot — never ``isinstance`` (a lazy
proxy's ``__class__`` property), ``hasattr``/``getattr`` (a ``__getattr__``) or
``__sizeof__``. The only calls are C-implemented ones: the first ``__len__`` slot on the
MRO (a ``dict`` subclass is counted by ``dict``'s own), an ``nbytes`` getset (NumPy,
Arrow, memoryview), and a library's own accessors, only on objects whose type really is
that library's (found in ``sys.modules``, never imported here, compared by identity, and
not overridden on the MRO): NumPy's ``base``, Arrow's ``get_total_buffer_size``, pandas'
block manager fields, a C ``lru_cache``'s ``cache_info`` (whose result is functools' own
named tuple) and its entries as ``gc.get_referents`` lists them (C). A Python ``__len__``
or ``nbytes`` (your class, ``ChainMap``) is never called: such an object is measured
through the attributes it holds (``INNER``, one level).

Limits are in wall time (``clock``). An inspection looks at ``MAX_NAMES`` names at most,
iterating lazily, and stops when its ``BUDGET_S`` is spent (checked between attributes and
between sampled items: a container measured when the budget ran out is estimated from the
items sampled so far). A call that is not a built-in container's is timed, and a type whose
``len`` or size call once took longer than ``SLOW_S`` (an Arrow Table of 100k chunks) is
never called for it again in this process: a call cannot be interrupted, so the worst
stall is one such call per type and attribute.
"""

from __future__ import annotations

import collections
import functools
import gc
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
"""Items sampled from a set (unordered) or the newest entries of a bounded ``lru_cache`` to estimate their bytes."""
MAX_WALK = 255
"""Items of a dict or deque walked at most from the newest end to sample it (:func:`_sampled`)."""
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
OWNER_DEPTH = 16
"""``.base`` links followed at most to the owner of a NumPy array's memory."""
MAX_BLOCKS = 32
"""A pandas frame's blocks measured at most (more are estimated from these)."""
MAX_LRU_WALK = 4096
"""A bounded ``lru_cache``'s entries are sampled only up to this ``maxsize`` (listing them costs one
pointer per key and result); a larger one is counted by its ``currsize`` alone."""

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
_SAMPLERS = frozenset(id(k) for k in (dict, list, tuple, collections.deque, set, frozenset))
_DEQUE_REVERSED = collections.deque.__dict__["__reversed__"]
_SKIP = frozenset(
    id(k) for k in (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)
)
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
_CLOSURE = types.FunctionType.__dict__["__closure__"]
_DEFAULTS = types.FunctionType.__dict__["__defaults__"]
_CELL = types.CellType.__dict__["cell_contents"]
_PARTIAL_ARGS = functools.partial.__dict__["args"]
_PARTIAL_KEYWORDS = functools.partial.__dict__["keywords"]
_LRU: Any = functools._lru_cache_wrapper
_LRU = _LRU if type(_LRU) is type else None  # the C wrapper (None: functools' Python fallback, not measured)
_CACHE_INFO: Any = _LRU.__dict__["cache_info"] if _LRU is not None else None
_CACHE_INFO_TYPE: Any = functools._CacheInfo
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


def _is_class(obj: Any) -> bool:
    """Whether ``obj`` is a class (its type's MRO holds ``type``; no ``isinstance``, no ``__class__``)."""
    return any(k is type for k in _mro(type(obj)))


def _library_class(module: str, name: str) -> type | None:
    """Class ``name`` of library ``module`` if that is imported already (never imported here); else None."""
    found = sys.modules.get(module)
    if type(found) is not types.ModuleType:
        return None
    cls = _MODULE_DICT.__get__(found).get(name)
    return cls if _is_class(cls) else None


def _kind(cls: type, mro: tuple[type, ...]) -> tuple[str, Any] | None:
    """How a library type is measured for what it retains (module docstring); None for anything else."""
    if cls is types.FunctionType:
        return "function", None
    if cls is functools.partial:
        return "partial", None
    if _LRU is not None and cls is _LRU:
        return "lru", None
    array = _library_class("numpy", "ndarray")
    if array is not None and any(k is array for k in mro):
        own = _mro(array)
        base, nbytes = _static(own, "base"), _static(own, "nbytes")
        if type(base) in _SLOTS and _static(mro, "base") is base and _static(mro, "nbytes") is nbytes:
            return "ndarray", (base, nbytes)
        return None
    for name, step in (("RecordBatch", "column"), ("Table", "column"), ("ChunkedArray", "chunk"), ("Array", "buffers")):
        arrow = _library_class("pyarrow", name)
        if arrow is not None and any(k is arrow for k in mro):
            method = _static(_mro(arrow), "get_total_buffer_size")
            if method is None or _static(mro, "get_total_buffer_size") is not method:
                return None
            inward = _static(_mro(arrow), step)  # towards its first buffer: what tells its parent
            return "arrow", (method, step, inward if inward is not None and _static(mro, step) is inward else None)
    buffer = _library_class("pyarrow", "Buffer")
    if buffer is not None and any(k is buffer for k in mro):
        address = _static(_mro(buffer), "address")
        return ("buffer", address) if type(address) in _SLOTS and _static(mro, "address") is address else None
    for name in ("DataFrame", "Series"):
        frame = _library_class("pandas", name)
        if frame is not None and any(k is frame for k in mro):
            return "frame", None
    return None


_SIZEOF: dict[int, Callable[[Any], int]] = {key: _static(_mro(k), "__sizeof__") for key, k in _BUILTIN.items()}
_BYTES_LEN: dict[int, Callable[[Any], int]] = {id(k): _static(_mro(k), "__len__") for k in (bytes, bytearray)}


class _Plan:
    """How a type is measured: found once from its class namespaces (no code of the type runs)."""

    __slots__ = (
        "basic",
        "buffer_len",
        "container",
        "fields",
        "kind",
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
        self.sampler = next((k for k in mro if id(k) in _SAMPLERS), None)  # sampled by its own methods
        self.sizeof: Callable[[Any], int] | None = next((_SIZEOF[i] for i in ids if i in _SIZEOF), None)
        static_builtin = not _FLAGS.__get__(cls) & _HEAPTYPE and _MODULE.__get__(cls) == "builtins"
        self.basic: int | None = None if static_builtin else _BASICSIZE.__get__(cls)  # None: sys.getsizeof
        own_dict = _static(mro, "__dict__")
        self.own_dict: Any = own_dict if type(own_dict) in _SLOTS else None  # the instance __dict__'s C slot
        self.skip = any(i in _SKIP for i in ids)  # a module, function, method or class: not measured
        self.kind = _kind(cls, mro)  # a library type measured by what it retains, or None
        self.fields: dict[str, Any] = {}  # a library's C slots by name, found when first read (None: none)
        self.container = any(i in _CONTAINERS for i in ids) or (self.kind is not None and self.kind[0] == "lru")


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


class _Walk:
    """One attribute's measure: the clock, the inspection's deadline, and what was counted already."""

    __slots__ = ("clock", "deadline", "seen")

    def __init__(self, clock: Clock, deadline: float, seen: Iterable[int] = ()) -> None:
        self.clock = clock
        self.deadline = deadline
        self.seen: set[int] = set(seen)  # ids of objects counted (or never to count: the UDF object)

    def first(self, obj: Any) -> bool:
        """Whether ``obj`` is met for the first time in this measure (then it is counted)."""
        key = id(obj)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _plan_strata(n: int, walk_limit: int) -> list[tuple[int, int, int]]:
    """(sampled index, first index, last index) from the newest end, per stratum of ``n`` items (:func:`_sampled`)."""
    out: list[tuple[int, int, int]] = []
    start, size = 0, 1
    while start < n:
        if start >= walk_limit:  # the rest, sampled at its newest end (no walking further)
            out.append((start, start, n - 1))
            break
        end = min(start + size, n)  # this stratum: newest indices start .. end - 1
        out.append((start + (end - 1 - start) // 2, start, end - 1))
        start, size = end, size * 2
    return out


def _newest(obj: Any, sampler: type, n: int) -> tuple[Callable[[int], Any], int, int]:
    """An accessor to the ``i``-th newest item of an ordered container, how many it reaches, and the walk limit.

    A list or tuple is indexed (all ``n``); a dict's (key, value) or a deque's item comes from
    the newest ``MAX_WALK + 1``, walked once.
    """
    if sampler is list or sampler is tuple:
        get = list.__getitem__ if sampler is list else tuple.__getitem__
        return (lambda i: get(obj, n - 1 - i)), n, n
    if sampler is dict:
        window = list(islice(reversed(dict.items(obj)), MAX_WALK + 1))
    else:
        window = list(islice(_DEQUE_REVERSED(obj), MAX_WALK + 1))
    return window.__getitem__, len(window), MAX_WALK


def _arrow_key(obj: Any) -> int | None:
    """The address of an Arrow object's first buffer (its first column's, first chunk's): shared by its slices."""
    for _ in range(3):
        kind = _plan(type(obj)).kind
        if kind is None or kind[0] != "arrow" or kind[1][2] is None:
            return None
        _, step, inward = kind[1]
        try:
            if step != "buffers":
                obj = inward(obj, 0)
                continue
            for buffer in inward(obj):
                found = _plan(type(buffer)).kind
                if found is not None and found[0] == "buffer":
                    address = found[1].__get__(buffer, type(buffer))
                    return address if type(address) is int else None
        except Exception:  # no column, no chunk
            return None
        return None
    return None


def _owner(obj: Any) -> tuple[int, Any] | None:
    """(key, owner) of what a view's memory belongs to; None for anything else (not a view).

    A NumPy view: the array owning its memory (``.base`` chain). An Arrow array, chunked
    array, record batch or table: its first buffer's address, the object itself standing for
    its parent (a slice pins its parent's buffers: ``get_total_buffer_size``).
    """
    kind = _plan(type(obj)).kind
    if kind is not None and kind[0] == "arrow":
        address = _arrow_key(obj)
        return (address, obj) if address is not None else None
    if kind is None or kind[0] != "ndarray":
        return None
    owner = obj
    for _ in range(OWNER_DEPTH):
        base = kind[1][0].__get__(owner, type(owner))
        if base is None:
            break
        owner, kind = base, _plan(type(base)).kind
        if kind is None or kind[0] != "ndarray":
            break
    return (id(owner), owner) if owner is not obj else None


def _owner_bytes(owner: Any, walk: _Walk) -> int:
    """The bytes of a view's owner: an array's ``nbytes``, Arrow's parent buffers, else its own measure (bytes)."""
    kind = _plan(type(owner)).kind
    if kind is not None and kind[0] == "arrow":
        return _measure(owner, walk, False, 0)[1]
    if kind is not None and kind[0] == "ndarray":
        nbytes = kind[1][1].__get__(owner, type(owner))
        return nbytes if type(nbytes) is int else 0
    return _measure(owner, walk, False, 0)[1]


def _reach(same: Callable[[int], bool], at: int, limit: int) -> int:
    """How many items beyond ``at`` toward ``limit`` share its owner (a contiguous run), by galloping then bisecting."""
    step_sign = 1 if limit >= at else -1
    span = abs(limit - at)
    good, step = 0, 1
    while step <= span and same(at + step_sign * step):
        good, step = step, step * 2
    bad = min(step, span + 1)
    while bad - good > 1:
        middle = (good + bad) // 2
        if same(at + step_sign * middle):
            good = middle
        else:
            bad = middle
    return good


def _sampled(obj: Any, plan: _Plan, n: int, walk: _Walk, levels: int) -> int:
    """Bytes of a container's ``n`` items estimated from a few of them, within budget.

    Ordered containers are read from their newest end (where a leak appends) in strata that
    double in size: the newest item, the next two, the next four..., each sampled at its
    middle and standing for its stratum. A block of new items at the end is then counted
    within half a stratum (itself at most as large as the block), however different the old
    items are. A list or tuple is indexed; a dict or deque is walked ``MAX_WALK`` items at
    most from its newest end (one sample then stands for all older ones). A dict's item is
    its key and value; a set is unordered (``SAMPLED`` items, each standing for one). When
    the budget runs out, the items not reached count as the average of those measured.

    Views sharing one owner (the rows of a batch, kept one by one) are not counted once per
    item: around a sampled view the run of neighbours sharing its owner is found (galloping
    then bisecting, within the items reached), and each view of its stratum counts its share
    of the owner (``owner bytes / run``): the shares of a run add up to its owner once.
    """
    if plan.sampler is None or levels <= 0 or n <= 0:
        return 0
    total = covered = 0.0
    if plan.sampler is set or plan.sampler is frozenset:
        iterate: Any = _NAMESPACE.__get__(plan.sampler)["__iter__"]  # set's or frozenset's own: no order
        for item in islice(iterate(obj), SAMPLED):
            total += _measure(item, walk, True, levels - 1)[1]
            covered += 1
            if walk.clock() > walk.deadline:
                break
        return int(total * n / covered) if covered else 0
    get, reached, limit = _newest(obj, plan.sampler, n)
    pairs = plan.sampler is dict  # a dict's item is (key, value): the value may be a view
    longest = 1  # the longest run of views sharing an owner found so far
    keys: dict[int, int | None] = {}  # the owner key of each item looked at (the runs of strata overlap)
    for at, first, last in _plan_strata(n, limit):
        if at >= reached:
            break
        item = get(at)
        held = item if pairs else (item,)
        owned = _owner(held[-1])
        weight = last - first + 1
        plain = held[:-1] if owned is not None else held
        stratum: float = weight * sum(_measure(x, walk, True, levels - 1)[1] for x in plain)
        if owned is not None:
            key, owner = owned

            def same(i: int, key: int = key) -> bool:
                if i not in keys:
                    if walk.clock() > walk.deadline:
                        return False
                    found = _owner(get(i)[-1] if pairs else get(i))
                    keys[i] = found[0] if found is not None else None
                return keys[i] == key

            older = _reach(same, at, reached - 1)
            run = 1 + _reach(same, at, 0) + older  # the views sharing this owner
            if at + older == reached - 1 < n - 1:  # cut by the end of the walk: as long as the longest seen
                run = max(run, longest)
            longest = max(longest, run)
            stratum += weight * _owner_bytes(owner, walk) / run  # each view: its share of the owner
        if walk.clock() > walk.deadline:  # the rest of the items as the average of those measured
            if not covered:
                total, covered = stratum, weight
            break
        total += stratum
        covered += weight
    return int(total * n / covered) if covered else 0


def _array(obj: Any, walk: _Walk) -> int:
    """A NumPy array's retained bytes: those of the owner of its memory (``.base`` chain), once per measure."""
    owner = obj
    for _ in range(OWNER_DEPTH):
        kind = _plan(type(owner)).kind
        if kind is None or kind[0] != "ndarray":  # memory owned by another object (bytes, mmap, Arrow)
            return _measure(owner, walk, False, 0)[1] if walk.first(owner) else 0
        base = kind[1][0].__get__(owner, type(owner))
        if base is None:
            break
        owner = base
    if _plan(type(owner)).kind is None or not walk.first(owner):
        return 0
    nbytes = _plan(type(owner)).kind[1][1].__get__(owner, type(owner))  # type: ignore[index]
    return nbytes if type(nbytes) is int else 0


def _field(obj: Any, name: str, library: str) -> Any:
    """Data attribute ``name`` of a ``library`` object: in its instance ``__dict__``, or a C slot of the library's."""
    own = _instance_dict(obj)
    if own is not None:
        found = dict.get(own, name)
        if found is not None:
            return found
    cls = type(obj)
    fields = _plan(cls).fields
    if name not in fields:
        fields[name] = None
        for klass in _mro(cls):
            namespace = _NAMESPACE.__get__(klass)
            if name in namespace:
                slot, module = namespace[name], _MODULE.__get__(klass)
                if type(slot) in _SLOTS and type(module) is str and module.partition(".")[0] == library:
                    fields[name] = slot
                break
    slot = fields[name]
    return slot.__get__(obj, cls) if slot is not None else None


def _frame(obj: Any, walk: _Walk) -> int | None:
    """A pandas DataFrame's or Series' retained bytes: its blocks' arrays and its index; None if unreadable."""
    manager = _field(obj, "_mgr", "pandas")
    blocks = _field(manager, "blocks", "pandas") if manager is not None else None
    if type(blocks) is not tuple and type(blocks) is not list:
        return None
    n = len(blocks)
    total = 0
    shown = blocks[:MAX_BLOCKS]
    for block in shown:
        values = _field(block, "values", "pandas")
        if values is not None:
            total += _measure(values, walk, True, 1)[1]
    total = total * n // max(1, len(shown))
    axes = _field(manager, "axes", "pandas")
    if type(axes) is list or type(axes) is tuple:
        for index in axes[:2]:
            data = _field(index, "_data", "pandas")
            if data is not None:
                total += _measure(data, walk, False, 0)[1]
    return total


_WRAPPERS = (types.FunctionType, functools.partial)
"""Callables whose held values are measured (:func:`_function`, :func:`_partial`)."""


def _function(obj: Any, cls: type, walk: _Walk, levels: int) -> int:
    """A closure's retained bytes: what its cells and defaults hold (the UDF object itself not again).

    What a closure holds is measured at the closure's own level, like an object's attributes:
    the batch it keeps is what it retains (a cycle through closures is cut by ``walk.first``).
    """
    held: list[Any] = []
    closure = _CLOSURE.__get__(obj, cls)
    if type(closure) is tuple:
        for cell in closure[:INNER]:
            if type(cell) is types.CellType:
                try:  # noqa: SIM105 - contextlib.suppress is Python code: none runs here but udfmem's
                    held.append(_CELL.__get__(cell, types.CellType))
                except ValueError:  # an empty cell
                    pass
    defaults = _DEFAULTS.__get__(obj, cls)
    if type(defaults) is tuple:
        held.extend(defaults[:INNER])
    return sum(
        _measure(value, walk, True, _held_levels(value, levels))[1]
        for value in held[:INNER]
        if id(value) not in walk.seen
    )


def _partial(obj: Any, walk: _Walk, levels: int) -> int:
    """A ``functools.partial``'s retained bytes: its arguments."""
    held = (_PARTIAL_ARGS.__get__(obj, functools.partial), _PARTIAL_KEYWORDS.__get__(obj, functools.partial))
    return sum(_measure(value, walk, True, _held_levels(value, levels))[1] for value in held)


def _held_levels(value: Any, levels: int) -> int:
    """The levels a callable's held ``value`` is measured at: its own, one fewer for a callable it wraps.

    A closure's batch is measured at the closure's level (what it keeps is what it
    retains); a closure that wraps another (a hook re-wrapped at every call) costs a level,
    so a chain of 3,000 wrappers ends after ``LEVELS`` instead of in a ``RecursionError``.
    """
    return levels - 1 if type(value) in _WRAPPERS else levels


def _lru(obj: Any, walk: _Walk, levels: int) -> tuple[int | None, int]:
    """A C ``lru_cache``: (its entries, their bytes from the newest sampled)."""
    info = _CACHE_INFO(obj)
    if type(info) is not _CACHE_INFO_TYPE:
        return None, 0
    maxsize, currsize = tuple.__getitem__(info, 2), tuple.__getitem__(info, 3)
    if type(currsize) is not int or currsize <= 0 or levels <= 0:
        return currsize if type(currsize) is int else None, 0
    if maxsize is not None and (type(maxsize) is not int or maxsize > MAX_LRU_WALK):
        return currsize, 0
    own = _instance_dict(obj)
    wrapped = dict.get(own, "__wrapped__") if own is not None else None
    cache: Any = None
    entries: list[Any] = []  # a bounded cache's keys and results, newest first
    refs = gc.get_referents(obj)  # C: the cache's fields and, bounded, every key and result (oldest first)
    for ref in reversed(refs):
        kind = type(ref)
        if kind is dict and ref is not own and (cache is None or dict.__len__(ref) == currsize):
            cache = ref
        elif not (kind is type or kind is object or ref is wrapped or ref is own):
            entries.append(ref)
            if len(entries) >= 2 * SAMPLED and (maxsize is not None or cache is not None):
                break
    if maxsize is None and cache is not None:  # unbounded: the dict maps keys to results
        return currsize, _sizeof(cache, _plan(dict)) + _sampled(cache, _plan(dict), currsize, walk, levels)
    newest = entries[: 2 * SAMPLED]
    if not newest:
        return currsize, 0
    total = measured = 0
    for item in newest:
        total += _measure(item, walk, True, levels - 1)[1]
        measured += 1
        if walk.clock() > walk.deadline:
            break
    return currsize, int(total * 2 * currsize / measured)  # the entries measured, of 2 per item (key, result)


def _retained(obj: Any, cls: type, plan: _Plan, walk: _Walk, levels: int) -> tuple[int | None, int] | None:
    """(items, bytes) of a library type by what it retains (module docstring); None: measure it plainly."""
    kind, detail = plan.kind  # type: ignore[misc]
    if kind == "ndarray":
        return None, _array(obj, walk)
    if kind == "arrow":
        size = _call(cls, "nbytes", lambda: detail[0](obj), walk.clock)  # slow once: neither it nor nbytes again
        return (None, size) if size is not None else None
    if kind == "buffer":
        return None
    if kind == "frame":
        size = _frame(obj, walk)
        return (None, _sizeof(obj, plan) + size) if size is not None else None
    if kind == "lru":
        items, size = _lru(obj, walk, levels)
        return items, _sizeof(obj, plan) + size
    if not walk.first(obj):  # a callable met again (a recursive closure, one callback held twice): once
        return None, 0
    if levels < 0 or walk.clock() > walk.deadline:  # deep in a chain of wrappers, or out of time: itself only
        return None, _sizeof(obj, plan)
    size = _function(obj, cls, walk, levels) if kind == "function" else _partial(obj, walk, levels)
    return None, _sizeof(obj, plan) + size


def _measure(obj: Any, walk: _Walk, inner: bool, levels: int = LEVELS) -> tuple[int | None, int]:
    """(items, bytes) of ``obj``, looking ``levels`` levels into what it holds (``inner``: a class of yours' too)."""
    cls = type(obj)
    plan = _plan(cls)
    if plan.buffer_len is not None:
        return None, plan.buffer_len(obj)
    if plan.kind is not None:
        found = _retained(obj, cls, plan, walk, levels)
        if found is not None:
            return found
    getset, slot = plan.nbytes, plan.length
    if getset is not None:
        nbytes = (
            _call(cls, "nbytes", lambda: getset.__get__(obj, cls), walk.clock)
            if plan.timed_nbytes
            else getset.__get__(obj)
        )
        if type(nbytes) is int:
            return None, nbytes
    n = None
    if slot is not None:
        n = _call(cls, "__len__", lambda: slot(obj), walk.clock) if plan.timed_len else slot(obj)
    if type(n) is int:
        return n, _sizeof(obj, plan) + _sampled(obj, plan, n, walk, levels)
    size = _sizeof(obj, plan)
    own = _instance_dict(obj) if inner and levels > 0 and not plan.skip and walk.first(obj) else None
    if own is None:
        return None, size
    items: int | None = None
    for value in islice(dict.values(own), INNER):  # a class of yours: what it holds, one level
        held, nbytes = _measure(value, walk, False, levels - 1)
        size += nbytes
        if held is not None:
            items = (items or 0) + held
    return items, size


def measure(obj: Any, clock: Clock = time.perf_counter) -> tuple[int | None, int]:
    """(items, estimated bytes) of ``obj``: a container by length and sampled items, a buffer by what it retains."""
    return _measure(obj, _Walk(clock, float("inf")), True)


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
    """Measure ``instance``'s attributes (``<prefix>.X``) and ``module``'s containers (``module X``), within budget.

    ``lru_cache`` wrappers are measured too: the module's functions and the methods of the instance's class.
    """
    out: Measures = {}
    deadline = clock() + budget_s
    skip = [id(instance)] if instance is not None else []  # the UDF object, met again in a closure: never twice
    try:
        for name, value in _named(instance) if instance is not None else ():
            if clock() > deadline:
                return out
            if type(name) is str and not _plan(type(value)).skip:
                _put(out, f"{prefix}.{name}", value, _Walk(clock, deadline, skip))
        for name, value in _cached_methods(instance) if instance is not None else ():
            if clock() > deadline:
                return out
            _put(out, f"{prefix}.{name}", value, _Walk(clock, deadline, skip))
        for name, value in _named(module) if module is not None else ():
            if clock() > deadline:
                return out
            if type(name) is str and not name.startswith("__") and _plan(type(value)).container:
                _put(out, f"module {name}", value, _Walk(clock, deadline, skip))
    except Exception:  # a dict changed size under another thread: what was measured stands
        return out
    return out


def _cached_methods(instance: Any) -> Iterable[tuple[str, Any]]:
    """The ``lru_cache`` wrappers in the namespace of ``instance``'s own class (``@lru_cache`` methods)."""
    if _LRU is None:
        return ()
    namespace = _NAMESPACE.__get__(type(instance))
    return (
        (name, value)
        for name, value in islice(namespace.items(), MAX_NAMES)
        if type(value) is _LRU and type(name) is str
    )


def _put(out: Measures, name: str, value: Any, walk: _Walk) -> None:
    """``value``'s measure under ``name``; none if measuring failed (a list shrank, an extension raised)."""
    try:
        measured = _measure(value, walk, True)
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
