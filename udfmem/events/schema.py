"""udfmem's events: one frozen type per event, and the ONE list of the snapshot's fields.

The runtime builds these, :mod:`~udfmem.events.render` writes them, :mod:`~udfmem.events.parse`
reads them back (:func:`from_fields` gives the typed event), and analysis, diagnose, the
detector and exporters consume them. Each is an immutable ``NamedTuple`` (built in well
under a microsecond, which a snapshot's budget needs). ``Setup`` and ``Snapshot`` share one
:class:`Memory` block, so both carry the same memory fields. Sizes are MiB (``_mb``),
rounded to 0.1; ``None`` means unknown and is left out of a line.

Each field of the memory block and of the snapshot is declared once, on one line: its
name, type, default, meaning and the analysis ``Point`` figure it fills (:class:`Field`).
Everything else derives from these lines: the renderer's templates, the log reader's
pattern and fast path (``udfmem.commands._logs``), the analysis point
(:mod:`udfmem.events.point`), ``MemorySample``, the gauges' paths (:func:`path`) and
:func:`field_table`. Adding a snapshot field is one line here plus the probe that fills it.

Every line carries ``schema=SCHEMA_VERSION``; a line without it is version 1. A reader
skips lines of a schema it does not know rather than misreading them.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, NamedTuple

SCHEMA_VERSION = 1
#: The fields every event carries, in line order (``schema`` ends the line).
HEAD = ("event", "udf", "pid", "host", "worker", "ts")


class Field(NamedTuple):
    """What a field of the memory block or the snapshot means, and the analysis ``Point`` figure it fills."""

    doc: str
    point: str | None = None  # the udfmem.analysis.series.Point attribute it fills (None: analysis reads it not)


# Each field is ONE line: its name, type, meaning and Point figure. The renderer, the parsers
# and the log reader's fast path, the analysis point, MemorySample and the gauges derive from these.
class Memory(NamedTuple):
    """The memory block of a setup or snapshot event (also :func:`udfmem.sample`'s source)."""

    rss_mb: Annotated[float | None, Field("resident memory now (as the OOM killer counts it)", "rss")] = None
    rss_anon_mb: Annotated[float | None, Field("private (anonymous) RSS: where leaks show", "private")] = None
    rss_shared_mb: Annotated[float | None, Field("file-backed and shared pages (object store, mapped models)")] = None
    peak_rss_mb: Annotated[float | None, Field("highest RSS since the previous snapshot", "peak")] = None
    peak_is_lifetime: Annotated[bool | None, Field("True: the window peak could not be reset")] = None
    arrow_live_mb: Annotated[float, Field("bytes allocated by Arrow's memory pool", "arrow")] = 0.0
    arrow_backend: Annotated[str | None, Field("Arrow's memory pool backend")] = None
    gap_mb: Annotated[float | None, Field("RSS that Arrow does not account for (rss - arrow_live)")] = None
    heap_in_use_mb: Annotated[float | None, Field("bytes in use in the allocator serving malloc", "heap")] = None
    heap_free_mb: Annotated[float | None, Field("freed memory that allocator still holds resident", "free")] = None
    heap_mmap_mb: Annotated[float | None, Field("glibc malloc bytes in mmapped chunks")] = None
    allocator: Annotated[str | None, Field("the allocator serving malloc (glibc, jemalloc, tcmalloc, ...)")] = None
    limit_mb: Annotated[float | None, Field("the memory limit whose kill comes first", "limit")] = None
    headroom_mb: Annotated[float | None, Field("memory left under that limit (its working set's)", "headroom")] = None
    limit_source: Annotated[str | None, Field("where limit_mb comes from: cgroup:<dir>, ray-monitor:<share>, node")] = (
        None
    )
    limit_high_mb: Annotated[float | None, Field("cgroup v2 memory.high: throttled and reclaimed above it")] = None
    py_blocks: Annotated[int | None, Field("live Python object blocks", "blocks")] = None


class _Setup(NamedTuple):
    method: str
    setup_s: float
    memory: Memory
    delta_mb: float | None = None
    setups: int = 1
    error: str | None = None
    not_read: str | None = None


class Setup(_Setup):
    """``udfmem.setup``: one setup phase (``__init__`` or ``setup()``) measured."""

    __slots__ = ()
    EVENT: ClassVar[str] = "udfmem.setup"


class _Snapshot(NamedTuple):
    call: Annotated[int, Field("the multiple of every that was crossed", "call")]
    memory: Memory
    growth_mb: Annotated[float | None, Field("private RSS growth since the end of setup")] = None
    window_calls: Annotated[int, Field("calls since the previous snapshot")] = 0
    window_s: Annotated[float, Field("seconds since the previous snapshot")] = 0.0
    final: Annotated[bool | None, Field("True: the last snapshot (release, exit)", "final")] = None


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
    method: str | None = None  # the release called: malloc_trim, jemalloc's arena purge, tcmalloc's ReleaseFreeMemory


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


class Spec(NamedTuple):
    """One field of an event's line, in line order, with what it means and where analysis reads it."""

    name: str
    kind: type[Any]  # float, int, str or bool (``None`` aside)
    required: bool
    doc: str
    point: str | None  # the analysis Point attribute it fills, if any
    memory: bool  # a field of the Memory block (``event.memory[at]``), else ``event[at]``
    at: int  # its position in its tuple


def _specs(cls: type[Any]) -> tuple[Spec, ...]:
    """``cls``'s fields in line order, the ``Memory`` block's spliced in where it sits."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: list[Spec] = []
    for at, (name, kind, required) in enumerate(SPECS[cls]):
        if kind is Memory:
            out += [s._replace(memory=True) for s in _specs(Memory)]
            continue
        meta = next((m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Field)), Field(""))
        out.append(Spec(name, kind, required, meta.doc, meta.point, False, at))
    return tuple(out)


#: Per type: its fields in line order, ``Memory``'s spliced in (the renderer's and the readers' order).
FIELDS: dict[type[Any], tuple[Spec, ...]] = {t: _specs(t) for t in (Memory, *TYPES)}
#: The snapshot's fields analysis reads into its ``Point``, in line order.
POINT_FIELDS: tuple[Spec, ...] = tuple(s for s in FIELDS[Snapshot] if s.point is not None)


def path(name: str) -> str:
    """The attribute path of a snapshot field on a ``Snapshot`` (``memory.rss_mb``, ``growth_mb``)."""
    spec = next(s for s in FIELDS[Snapshot] if s.name == name)
    return f"memory.{name}" if spec.memory else name


def field_table(cls: type[Any] = Snapshot) -> str:
    """A Markdown table of ``cls``'s fields (name, meaning) in line order, for the README."""
    rows = [f"| `{s.name}` | {s.doc} |" for s in FIELDS[cls]]
    return "\n".join(["| field | meaning |", "| --- | --- |", *rows])


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
