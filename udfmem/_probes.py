"""Memory probes: what this process holds now, and where that memory lives.

Each reader is cheap (measured on Linux: statm ~2 µs, window peak ~2 µs, Arrow 36 ns,
mallinfo2 0.5-20 µs) and degrades to ``None`` ("unknown") instead of raising. Kept file
descriptors belong to the process that opened them: after ``fork`` they are reopened,
because a ``/proc/self`` fd opened by the parent keeps reading the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from ._events import Memory

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]

MIB = 1024 * 1024
_UNLIMITED = 1 << 60  # cgroup v1 says "no limit" with values near 2**63
T = TypeVar("T")
_TENTHS = 10 / MIB
_NEVER = float("-inf")  # a budget that never holds a read back
RETIME = 16


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


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _find_mallinfo2() -> Any:
    """Resolve glibc's ``mallinfo2`` in this process's own symbols (no library name assumed)."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None  # musl, macOS, Windows, glibc < 2.33
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


def cgroup_files(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[str | None, str | None]:
    """Return (limit file, usage file) of this process's memory cgroup (v2, else v1), if any."""
    try:
        with open(proc_cgroup, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    for line in lines:
        hier, controllers, path = line.split(":", 2)
        if hier == "0" and controllers == "":
            for base in (f"{root}{path}", root):
                if os.path.exists(f"{base}/memory.max"):
                    return f"{base}/memory.max", f"{base}/memory.current"
        elif "memory" in controllers.split(","):
            for base in (f"{root}/memory{path}", f"{root}/memory"):
                if os.path.exists(f"{base}/memory.limit_in_bytes"):
                    return f"{base}/memory.limit_in_bytes", f"{base}/memory.usage_in_bytes"
    return None, None


def read_limit(path: str | None) -> int | None:
    """A cgroup memory limit in bytes; None for none (``max``, or v1's ~2**63)."""
    limit = _read_int(path) if path else None
    return limit if limit is not None and limit < _UNLIMITED else None


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            raw = f.read().strip()
        return None if raw == b"max" else int(raw)
    except (OSError, ValueError):
        return None


class Probes:
    """The readers of one process. Create with :func:`probes`; never share across fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._statm = self._open("/proc/self/statm", os.O_RDONLY)
        self._clear_refs = self._open("/proc/self/clear_refs", os.O_WRONLY)
        self._mallinfo2 = _find_mallinfo2()
        self._psutil: Any = None
        self.peak_was_reset = False
        limit_file, usage_file = cgroup_files()
        self.limit = read_limit(limit_file)
        self._usage = self._open(usage_file, os.O_RDONLY) if (usage_file and self.limit) else None
        self.heap_budget = Budget(self.heap)
        self.windows = PeakWindows(self)

    @staticmethod
    def _open(path: str, flags: int) -> int | None:
        try:
            return os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None

    def close(self) -> None:
        """Close the kept descriptors (they may belong to a parent after fork)."""
        for fd in (self._statm, self._clear_refs, self._usage):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._statm = self._clear_refs = self._usage = None

    @property
    def can_reset_peak(self) -> bool:
        """Whether the kernel's peak-RSS counter can be reset (Linux ``clear_refs``)."""
        return self._clear_refs is not None

    def rss(self) -> int | None:
        """Current resident set size in bytes."""
        return self.resident()[0]

    def resident(self) -> tuple[int | None, int | None]:
        """Resident and shared (file-backed or shared-memory) bytes now; ~2 µs from statm."""
        if self._statm is not None:
            try:
                fields = os.pread(self._statm, 64, 0).split()
                return int(fields[1]) * self.page, int(fields[2]) * self.page
            except (OSError, ValueError, IndexError):
                return None, None
        try:
            if self._psutil is None:
                import psutil

                self._psutil = psutil.Process()
            info = self._psutil.memory_info()
            return int(info.rss), getattr(info, "shared", None)
        except Exception:
            return None, None

    def peak(self) -> int | None:
        """Peak RSS in bytes since the last :meth:`reset_peak` (or process start)."""
        if _resource is None:
            return None
        try:
            maxrss = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
        except OSError:
            return None
        return maxrss if sys.platform == "darwin" else maxrss * 1024

    def reset_peak(self) -> bool:
        """Reset the kernel's peak RSS to the current RSS; False where impossible."""
        if self._clear_refs is None:
            return False
        try:
            os.write(self._clear_refs, b"5")
        except OSError:
            return False
        self.peak_was_reset = True
        return True

    def snapshot_reads(self, wid: int) -> tuple[int | None, int | None, int | None, bool, tuple[int, int, int] | None]:
        """A snapshot's reads in one call: RSS, shared, window ``wid``'s peak, lifetime flag, budgeted heap.

        The same as :meth:`resident`, ``windows.take(wid)`` and ``heap_budget()`` in turn,
        in one frame: a snapshot runs every K calls and must cost little more than a
        hand-written one (``benchmarks/bench_overhead.py``); the calls it saves are a
        fifth of that margin.
        """
        rss = shared = None
        if self._statm is not None:
            try:
                fields = os.pread(self._statm, 64, 0).split()
                rss, shared = int(fields[1]) * self.page, int(fields[2]) * self.page
            except (OSError, ValueError, IndexError):
                pass
        else:
            rss, shared = self.resident()
        peak, lifetime = self.windows.take(wid)
        if peak is not None and rss is not None and rss > peak:
            peak = rss  # the kernel's high-water mark lags the current RSS a little
        budget = self.heap_budget
        return rss, shared, peak, lifetime, budget() if budget.due() else None

    def heap(self) -> tuple[int, int, int] | None:
        """glibc malloc: (in use, freed but held, mmapped) bytes, or None off glibc."""
        if self._mallinfo2 is None:
            return None
        try:
            info = self._mallinfo2()
        except Exception:
            return None
        return info.uordblks + info.hblkhd, info.fordblks, info.hblkhd

    def cgroup_usage(self) -> int | None:
        """Bytes charged to this process's memory cgroup, when it has a limit."""
        if self._usage is None:
            return None
        try:
            return int(os.pread(self._usage, 32, 0))
        except (OSError, ValueError):
            return None


def arrow_live() -> int:
    """Arrow's live bytes (0 unless the user already imported pyarrow); 36 ns."""
    pa = sys.modules.get("pyarrow")
    if pa is None:
        return 0
    try:
        return int(pa.total_allocated_bytes())
    except Exception:
        return 0


def arrow_backend() -> str | None:
    """Arrow's default pool backend (``mimalloc``, ``jemalloc``, ``system``), if pyarrow is imported."""
    pa = sys.modules.get("pyarrow")
    if pa is None:
        return None
    try:
        return str(pa.default_memory_pool().backend_name)
    except Exception:
        return None


class Budget(Generic[T]):
    """Reads an expensive probe only as often as keeps it under ``share`` of wall time.

    ``mallinfo2()`` walks every free chunk of every arena under the arena's lock: ~5 µs on
    a small heap, 20 ms at 1 GiB fragmented, 130 ms at 6 GiB. Each read is timed; the
    next is allowed once ``cost / share`` seconds have passed, so the probe's share of
    the worker's time stays at most ``share`` (0.5%) however large the heap, and other
    threads' ``malloc`` waits on those locks that rarely. Between reads it returns None
    (the field is left out of the event). The cost estimate is the cheaper of the last
    two reads, so one read slowed by preemption or cold caches does not gate the next;
    a probe estimated under ``free_below`` (100 µs: a few snapshots' worth) is read
    every time.
    """

    def __init__(
        self,
        read: Callable[[], T | None],
        share: float = 0.005,
        free_below: float = 100e-6,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._read = read
        self.share = share
        self.free_below = free_below
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget past costs: the next read happens."""
        self.cost = 0.0  # the estimate: the cheaper of the last two reads, in seconds
        self._last = 0.0
        self._next = _NEVER
        self._reads = 0
        self._cheap = False  # measured under free_below: read untimed, re-timed every RETIME reads

    def due(self) -> bool:
        """Whether a read now stays within the budget (a cheap check before the call)."""
        return self._next is _NEVER or self._clock() >= self._next

    def __call__(self) -> T | None:
        """The probe's value now, or None when reading it now would exceed the budget.

        A probe known to be cheap is timed again every ``RETIME``-th read only (a clock
        pair costs a tenth of a cheap read); one that is not is timed every read.
        """
        self._reads += 1
        if self._cheap and self._reads % RETIME:
            return self._read()
        start = self._clock()
        if start < self._next:
            return None
        value = self._read()
        took = self._clock() - start
        self.cost, self._last = (min(took, self._last) if self._last else took), took
        self._cheap = took < self.free_below  # a slow read is followed by timed ones
        self._next = _NEVER if self.cost < self.free_below else start + self.cost / self.share
        return value


class PeakWindows:
    """Window peaks of several UDFs in one process over one kernel counter.

    Reading a window resets the kernel's peak (``clear_refs``), so before that the
    kernel's peak is folded into every other open window: each UDF's ``peak_rss_mb``
    covers everything since its own previous window began.
    """

    def __init__(self, probes: Probes) -> None:
        self._probes = probes
        self._peaks: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def open(self) -> int:
        """A new window; its id."""
        wid = next(self._ids)
        self._peaks[wid] = 0
        return wid

    def take(self, wid: int) -> tuple[int | None, bool]:
        """Peak RSS since window ``wid`` last began, and whether it is the lifetime peak; restart it."""
        p = self._probes
        with self._lock:
            kernel_peak = p.peak()
            lifetime = not p.reset_peak()
            peaks = self._peaks
            if kernel_peak is not None and len(peaks) > 1:
                for key, value in peaks.items():
                    if value < kernel_peak:
                        peaks[key] = kernel_peak
            peak = peaks.get(wid) or kernel_peak
            peaks[wid] = 0
        return peak, lifetime


_probes: Probes | None = None


def probes() -> Probes:
    """The :class:`Probes` of this process (re-created after fork)."""
    global _probes
    current = _probes
    if current is None or current.pid != os.getpid():
        if current is not None:
            current.close()
        current = _probes = Probes()
    return current


def _forget_after_fork() -> None:
    global _probes
    if _probes is not None:
        _probes.close()
    _probes = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class Reading(NamedTuple):
    """Raw probe values in bytes (None: unknown, or not read this time)."""

    rss: int | None
    shared: int | None
    peak: int | None
    peak_is_lifetime: bool
    arrow_live: int
    heap: tuple[int, int, int] | None
    usage: int | None
    limit: int | None

    @property
    def anon(self) -> int | None:
        """Private resident bytes: RSS less shared pages."""
        return None if self.rss is None or self.shared is None else self.rss - self.shared


def read(p: Probes, peak: int | None, peak_is_lifetime: bool, heap: tuple[int, int, int] | None) -> Reading:
    """Read the cheap probes now; ``peak`` and ``heap`` come from the caller (windowed, budgeted)."""
    rss, shared = p.resident()
    if peak is not None and rss is not None and rss > peak:
        peak = rss  # the kernel's high-water mark lags the current RSS a little
    usage = p.cgroup_usage() if p.limit is not None else None
    return Reading(rss, shared, peak, peak_is_lifetime, arrow_live(), heap, usage, p.limit)


def memory(r: Reading, backend: str | None) -> Memory:
    """The event's memory block (MiB, 0.1) of a reading: the one place these fields are computed."""
    return block(r.rss, r.shared, r.peak, r.peak_is_lifetime, r.arrow_live, backend, r.heap, r.limit, r.usage)


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
) -> Memory:
    """:func:`memory` from the raw values (bytes); a snapshot calls it without building a ``Reading``."""
    k = _TENTHS  # int(x * k + 0.5) / 10 is round(x / MIB, 1) for x >= 0, at half the cost
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
    )


def mb(value: int | None) -> float | None:
    """Bytes to MiB rounded to 0.1, keeping ``None``."""
    return None if value is None else round(value / MIB, 1)


def sample() -> MemorySample:
    """Read this process's memory now, every probe at once.

    Does not reset the window peak, so it never disturbs udfmem's own snapshots.
    """
    p = probes()
    peak = p.peak()
    block = memory(read(p, peak, not p.peak_was_reset, p.heap()), arrow_backend())
    return MemorySample(
        pid=p.pid,
        ts=time.time(),
        rss_mb=block.rss_mb,
        peak_rss_mb=block.peak_rss_mb,
        peak_is_lifetime=bool(block.peak_is_lifetime),
        arrow_live_mb=block.arrow_live_mb,
        arrow_backend=block.arrow_backend,
        gap_mb=block.gap_mb,
        heap_in_use_mb=block.heap_in_use_mb,
        heap_free_mb=block.heap_free_mb,
        heap_mmap_mb=block.heap_mmap_mb,
        limit_mb=block.limit_mb,
        headroom_mb=block.headroom_mb,
        rss_anon_mb=block.rss_anon_mb,
        rss_shared_mb=block.rss_shared_mb,
    )
