"""udfmem's events: one frozen type per event, the one definition every part shares.

The runtime builds these, the renderers write them (``_render``), parsers read them back
(``from_fields``), and analysis, diagnose, the detector and exporters consume them. Each
is an immutable ``NamedTuple`` (built in well under a microsecond, which a snapshot's
budget needs). ``Setup`` and ``Snapshot`` share one :class:`Memory` block, so both carry
the same memory fields. Sizes are MiB (``_mb``), rounded to 0.1; ``None`` means unknown
and is left out of a line.

Every line carries ``schema=SCHEMA_VERSION``; a line without it is version 1. A reader
skips lines of a schema it does not know rather than misreading them.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

SCHEMA_VERSION = 1
#: The fields every event carries, in line order (``schema`` ends the line).
HEAD = ("event", "udf", "pid", "host", "worker", "ts")


class Memory(NamedTuple):
    """The memory block of a setup or snapshot event (also :func:`udfmem.sample`'s source)."""

    rss_mb: float | None = None
    rss_anon_mb: float | None = None  # private (anonymous) resident memory: where leaks show
    rss_shared_mb: float | None = None  # file-backed and shared pages (Ray's object store, mapped models)
    peak_rss_mb: float | None = None
    peak_is_lifetime: bool | None = None  # only True is written: the window peak could not be reset
    arrow_live_mb: float = 0.0
    arrow_backend: str | None = None
    gap_mb: float | None = None
    heap_in_use_mb: float | None = None
    heap_free_mb: float | None = None
    heap_mmap_mb: float | None = None
    limit_mb: float | None = None
    headroom_mb: float | None = None
    py_blocks: int | None = None  # live Python object blocks (sys.getallocatedblocks), read within a budget


class _Setup(NamedTuple):
    method: str
    setup_s: float
    memory: Memory
    delta_mb: float | None = None
    setups: int = 1
    error: str | None = None


class Setup(_Setup):
    """``udfmem.setup``: one setup phase (``__init__`` or ``setup()``) measured."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.setup"


class _Snapshot(NamedTuple):
    call: int
    memory: Memory
    growth_mb: float | None = None  # anonymous RSS since the end of setup
    window_calls: int = 0
    window_s: float = 0.0
    final: bool | None = None  # only True is written: the last snapshot, at release or normal exit


class Snapshot(_Snapshot):
    """``udfmem.snapshot``: the process's memory every K calls."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.snapshot"


class _Trim(NamedTuple):
    reason: str
    released_mb: float
    malloc_released_mb: float
    arrow_released_mb: float
    took_ms: float
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    retained_mb: float | None = None
    skipped: str | None = None


class Trim(_Trim):
    """``udfmem.trim``: freed memory given back to the OS."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.trim"


class _Memray(NamedTuple):
    action: str
    path: str
    native: bool | None = None
    reason: str | None = None


class Memray(_Memray):
    """``udfmem.memray``: this process's memray tracker started or stopped."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.memray"


class _Warning(NamedTuple):
    what: str
    message: str
    var: str | None = None


class Warning(_Warning):
    """``udfmem.warning``: something udfmem could not do; the UDF runs on."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.warning"


class _Suspect(NamedTuple):
    pattern: str
    since_call: int
    slope_mb_per_100_calls: float | None = None
    calls_to_limit: int | None = None
    growing: str | None = None
    evidence: str | None = None
    fix: str | None = None


class Suspect(_Suspect):
    """``udfmem.suspect``: the worker's own verdict on its series (online detector)."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.suspect"


Event = Setup | Snapshot | Trim | Memray | Warning | Suspect
TYPES: tuple[Any, ...] = (Setup, Snapshot, Trim, Memray, Warning, Suspect)
BY_NAME: dict[str, Any] = {t.EVENT: t for t in TYPES}


def _kind(hint: Any) -> type[Any]:
    """The concrete type of a field hint (``float | None`` -> ``float``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint  # type: ignore[no-any-return]


#: Per type: (field, concrete kind, required) in line order; ``Memory`` fields nest.
SPECS: dict[type[Any], tuple[tuple[str, type[Any], bool], ...]] = {
    t: tuple(
        (name, _kind(hint), name not in t._field_defaults)
        for name, hint in typing.get_type_hints(t).items()
        if name in t._fields
    )
    for t in (Memory, *TYPES)
}


def to_fields(event: Event) -> dict[str, Any]:
    """The event's own fields, flat, ``None`` left out (``Memory`` spliced in place)."""
    out: dict[str, Any] = {}
    for name, value in zip(event._fields, event, strict=True):
        if isinstance(value, Memory):
            out.update((k, v) for k, v in zip(value._fields, value, strict=True) if v is not None)
        elif value is not None:
            out[name] = value
    return out


class SchemaError(ValueError):
    """Fields that are not a udfmem event of a known schema."""


def _coerce(name: str, kind: type[Any], value: Any) -> Any:
    if type(value) is kind:
        return value
    if kind is float and type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise SchemaError(f"{name}={value!r} is out of range") from None
    raise SchemaError(f"{name}={value!r} is not a {kind.__name__}")


def _build(cls: type[Any], fields: Mapping[str, Any]) -> Any:
    values: list[Any] = []
    for name, kind, required in SPECS[cls]:
        if kind is Memory:
            values.append(_build(Memory, fields))
        elif name in fields and fields[name] is not None:
            values.append(_coerce(name, kind, fields[name]))
        elif required:
            raise SchemaError(f"{cls.EVENT}: {name} missing")
        else:
            values.append(cls._field_defaults[name])
    return cls(*values)


def from_fields(fields: Mapping[str, Any]) -> Event:
    """The event in ``fields`` (a parsed line); raises :class:`SchemaError` if it is none.

    Head fields and fields this version does not know are ignored; a line of another
    ``schema`` is refused, since its fields may mean something else.
    """
    schema = fields.get("schema", 1)
    if schema != SCHEMA_VERSION:
        raise SchemaError(f"schema {schema!r} (this udfmem reads {SCHEMA_VERSION})")
    cls = BY_NAME.get(fields.get("event"))  # type: ignore[arg-type]
    if cls is None:
        raise SchemaError(f"unknown event {fields.get('event')!r}")
    event: Event = _build(cls, fields)
    return event
