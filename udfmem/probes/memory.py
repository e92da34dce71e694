"""From raw readings (bytes) to the memory block of events and to :class:`MemorySample`.

The one place where the MiB fields are computed: snapshots call :func:`block` with the
values they read, setup events go through :func:`read`, and :func:`sample` answers
``udfmem.sample()``.
"""

from __future__ import annotations

import dataclasses
import time

from ..events.schema import Memory
from .process import MIB, Probes, arrow_backend, arrow_live, probes

_TENTHS = 10 / MIB


@dataclasses.dataclass(frozen=True, slots=True)
class MemorySample:
    """One reading of this process's memory. Sizes are MiB; ``None`` means unknown.

    ``peak_rss_mb`` is the highest RSS since udfmem last reset the kernel's peak counter
    (each snapshot does), or since the process started when ``peak_is_lifetime``.
    ``gap_mb`` is RSS that Arrow does not account for: Python objects, native
    libraries, and memory the allocator holds after it was freed (``heap_free_mb``).
    ``rss_anon_mb`` is private memory (where leaks show); ``rss_shared_mb`` is
    file-backed and shared pages (mapped files, Ray's object store).
    """

    pid: int
    ts: float
    rss_mb: float | None
    peak_rss_mb: float | None
    peak_is_lifetime: bool
    arrow_live_mb: float
    arrow_backend: str | None
    gap_mb: float | None
    heap_in_use_mb: float | None
    heap_free_mb: float | None
    heap_mmap_mb: float | None
    limit_mb: float | None
    headroom_mb: float | None
    rss_anon_mb: float | None = None
    rss_shared_mb: float | None = None
    py_blocks: int | None = None


def read(p: Probes, peak: int | None, lifetime: bool, heap: tuple[int, int, int] | None) -> tuple[Memory, int | None]:
    """The memory block now, and the RSS it was read with; ``peak`` and ``heap`` come from the caller.

    The caller took the window peak (or the lifetime one) and the heap (budgeted or not).
    """
    rss, shared = p.resident()
    usage = p.cgroup_usage() if p.limit is not None else None
    memory = block(rss, shared, peak, lifetime, arrow_live(), arrow_backend(), heap, p.limit, usage, p.blocks())
    return memory, rss


def block(
    rss: int | None,
    shared: int | None,
    peak: int | None,
    lifetime: bool,
    arrow_live: int,
    backend: str | None,
    heap: tuple[int, int, int] | None,
    limit: int | None,
    usage: int | None,
    py_blocks: int | None = None,
) -> Memory:
    """The event's memory block (MiB, 0.1) from raw values in bytes: the one place these fields are computed."""
    k = _TENTHS  # int(x * k + 0.5) / 10 is round(x / MIB, 1) for x >= 0, at half the cost
    if peak is not None and rss is not None and rss > peak:
        peak = rss  # the kernel's high-water mark lags the current RSS a little
    if rss is not None and shared is not None and peak is not None and heap is not None and limit is None:
        return Memory(  # the common case on Linux, without a test per field
            int(rss * k + 0.5) / 10,
            int((rss - shared) * k + 0.5) / 10,
            int(shared * k + 0.5) / 10,
            int(peak * k + 0.5) / 10,
            True if lifetime else None,
            int(arrow_live * k + 0.5) / 10,
            backend,
            round((rss - arrow_live) / MIB, 1),
            int(heap[0] * k + 0.5) / 10,
            int(heap[1] * k + 0.5) / 10,
            int(heap[2] * k + 0.5) / 10,
            None,
            None,
            py_blocks,
        )
    return Memory(
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
        None if heap is None else int(heap[2] * k + 0.5) / 10,
        None if limit is None else int(limit * k + 0.5) / 10,
        None if (limit is None or usage is None) else round((limit - usage) / MIB, 1),
        py_blocks,
    )


def sample() -> MemorySample:
    """Read this process's memory now, every probe at once.

    Does not reset the window peak, so it never disturbs udfmem's own snapshots.
    """
    p = probes()
    memory, _ = read(p, p.peak(), not p.peak_was_reset, p.heap())
    fields = memory._asdict()
    fields["peak_is_lifetime"] = bool(memory.peak_is_lifetime)
    return MemorySample(pid=p.pid, ts=time.time(), **fields)


def private(rss: int | None, shared: int | None) -> int | None:
    """Private (anonymous) resident bytes; RSS where shared pages are unknown."""
    return rss - shared if (rss is not None and shared is not None) else rss
