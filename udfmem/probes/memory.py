"""From raw readings (bytes) to the memory block of events and to :class:`MemorySample`.

The one place where the MiB fields are computed: snapshots call :func:`block` with the
values they read, setup events go through :func:`read`, and :func:`sample` answers
``udfmem.sample()``.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from typing import TYPE_CHECKING, Any

from ..events.schema import Memory
from .process import MIB, Heap, Probes, arrow_backend, arrow_live, probes

_TENTHS = 10 / MIB
_new = tuple.__new__  # builds a Memory from all its values with no Python frame (no defaults filled in)
if len(Memory._fields) != 17:  # pragma: no cover - a field added to the schema: block() must fill it too
    raise TypeError(f"block() writes 17 memory fields, the schema has {len(Memory._fields)}: fill the new one")
Fixed = tuple["str | None", "str | None", "float | None"]
"""What a process's memory block carries unchanged: the allocator's name, the limit's source, memory.high (MiB)."""
NO_FIXED: Fixed = (None, None, None)


_SAMPLE_DOC = """One reading of this process's memory: ``pid``, ``ts`` (epoch seconds), then every field of
the memory block (:class:`udfmem.events.schema.Memory`, where each is defined once). Sizes
are MiB; ``None`` means unknown.

``peak_rss_mb`` is the highest RSS since udfmem last reset the kernel's peak counter
(each snapshot does), or since the process started when ``peak_is_lifetime`` (here a bool).
``gap_mb`` is RSS that Arrow does not account for: Python objects, native
libraries, and memory the allocator holds after it was freed (``heap_free_mb``).
``rss_anon_mb`` is private memory (where leaks show); ``rss_shared_mb`` is
file-backed and shared pages (mapped files, Ray's object store).
"""

if TYPE_CHECKING:

    class MemorySample:
        """Type checkers' view of :class:`MemorySample` (generated from ``Memory`` at run time)."""

        pid: int
        ts: float
        peak_is_lifetime: bool

        def __init__(self, pid: int, ts: float, *memory: Any) -> None:
            """``pid``, ``ts``, then the memory block's fields in its order."""

        def __getattr__(self, name: str) -> Any:
            """A field of the memory block (``rss_mb``, ``heap_in_use_mb``, ...)."""

else:
    MemorySample = dataclasses.make_dataclass(
        "MemorySample",
        [
            ("pid", int),
            ("ts", float),
            *(
                (
                    name,
                    bool if name == "peak_is_lifetime" else hint,
                    dataclasses.field(default=Memory._field_defaults[name]),
                )
                for name, hint in typing.get_type_hints(Memory).items()
            ),
        ],
        frozen=True,
        slots=True,
    )
    MemorySample.__doc__, MemorySample.__module__ = _SAMPLE_DOC, __name__


def read(p: Probes, peak: int | None, lifetime: bool, heap: Heap | None) -> tuple[Memory, int | None]:
    """The memory block now, and the RSS it was read with; ``peak`` and ``heap`` come from the caller.

    The caller took the window peak (or the lifetime one) and the heap (budgeted or not).
    """
    rss, shared = p.resident()
    usage = p.cgroup_usage() if p.limit is not None else None
    memory = block(
        rss, shared, peak, lifetime, arrow_live(), arrow_backend(), heap, p.limit, usage, p.blocks(), p.fixed
    )
    return memory, rss


def block(
    rss: int | None,
    shared: int | None,
    peak: int | None,
    lifetime: bool,
    arrow_live: int,
    backend: str | None,
    heap: Heap | None,
    limit: int | None,
    usage: int | None,
    py_blocks: int | None = None,
    fixed: Fixed = NO_FIXED,
) -> Memory:
    """The event's memory block (MiB, 0.1) from raw values in bytes: the one place these fields are computed.

    ``heap`` is (in use, freed but held, mmapped or None) of the allocator serving malloc;
    ``usage`` the working set charged against ``limit``; ``fixed`` what the process's
    block always carries (:data:`Fixed`).
    """
    k = _TENTHS  # int(x * k + 0.5) / 10 is round(x / MIB, 1) for x >= 0, at half the cost
    if peak is not None and rss is not None and rss > peak:
        peak = rss  # the kernel's high-water mark lags the current RSS a little
    if rss is not None and shared is not None and peak is not None and heap is not None and usage is not None:
        mmapped = heap[2]  # glibc's only: None under jemalloc and tcmalloc
        return _new(  # the common case on Linux, without a test per field (tuple.__new__: no Python frame)
            Memory,
            (
                int(rss * k + 0.5) / 10,
                int((rss - shared) * k + 0.5) / 10,
                int(shared * k + 0.5) / 10,
                int(peak * k + 0.5) / 10,
                True if lifetime else None,
                int(arrow_live * k + 0.5) / 10 if arrow_live else 0.0,
                backend,
                round((rss - arrow_live) / MIB, 1),
                int(heap[0] * k + 0.5) / 10,
                int(heap[1] * k + 0.5) / 10,
                None if mmapped is None else int(mmapped * k + 0.5) / 10,
                fixed[0],
                None if limit is None else int(limit * k + 0.5) / 10,
                None if limit is None else round((limit - usage) / MIB, 1),
                fixed[1],
                fixed[2],
                py_blocks,
            ),
        )
    return _new(
        Memory,
        (
            None if rss is None else int(rss * k + 0.5) / 10,
            None if (rss is None or shared is None) else int((rss - shared) * k + 0.5) / 10,
            None if shared is None else int(shared * k + 0.5) / 10,
            None if peak is None else int(peak * k + 0.5) / 10,
            True if lifetime else None,
            int(arrow_live * k + 0.5) / 10,
            backend,
            None if rss is None else round((rss - arrow_live) / MIB, 1),
            None if heap is None else int(heap[0] * k + 0.5) / 10,
            None if heap is None else int(heap[1] * k + 0.5) / 10,
            None if (heap is None or heap[2] is None) else int(heap[2] * k + 0.5) / 10,
            fixed[0],
            None if limit is None else int(limit * k + 0.5) / 10,
            None if (limit is None or usage is None) else round((limit - usage) / MIB, 1),
            fixed[1],
            fixed[2],
            py_blocks,
        ),
    )


def sample() -> MemorySample:
    """Read this process's memory now, every probe at once.

    Does not reset the window peak, so it never disturbs udfmem's own snapshots.
    """
    p = probes()
    memory, _ = read(p, p.peak(), not p.peak_was_reset, p.heap())
    return MemorySample(p.pid, time.time(), *memory._replace(peak_is_lifetime=bool(memory.peak_is_lifetime)))


def private(rss: int | None, shared: int | None) -> int | None:
    """Private (anonymous) resident bytes; RSS where shared pages are unknown."""
    return rss - shared if (rss is not None and shared is not None) else rss
