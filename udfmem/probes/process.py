"""Memory probes: what this process holds now, and where that memory lives (raw bytes).

Each reader is cheap (measured on Linux: statm ~2 µs, window peak ~2 µs, Arrow 36 ns,
mallinfo2 0.5-20 µs) and degrades to ``None`` ("unknown") instead of raising. Kept file
descriptors belong to the process that opened them: after ``fork`` they are reopened,
because a ``/proc/self`` fd opened by the parent keeps reading the parent.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import _process
from . import allocators as _allocators
from . import limits as _limits
from .budget import Budget
from .fds import KeptFd
from .windows import PeakWindows

__all__ = ["MIB", "Heap", "PeakWindows", "Probes", "arrow_backend", "arrow_live", "mb", "probes"]

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]

MIB = 1024 * 1024
Heap = tuple[int, int, "int | None"]
"""The allocator's (in use, freed but held, mmapped or None where it has no such figure) bytes."""
HEAP_FLOOR_EVERY = 2
"""The heap and blocks probes read at least every this many snapshots (within their ceilings).

The rule cuts a series into 4 sub-windows and needs each to show its trend: 2 gives 8 of
the 16 points of a 64-point series' sub-window (every kept point once it is decimated),
and 15 of a 30-snapshot run's 30; a share alone gave 6-8 of 30 to fast calls."""
HEAP_CEILING = 0.02
"""The heap probe's floor never takes it past this share of the wall time.

2%: the share the online detector's judgements may take too. A small heap's walk on a
loaded machine (150 µs) then fits the floor with snapshots 7.5 ms apart; a 2 GiB
fragmented heap's walk (45 ms) is read at most every 2.25 s, whatever the floor asks."""
BLOCKS_CEILING = 0.01
"""The Python-blocks probe's floor never takes it past this share (its walk is 64 µs at 2M blocks)."""


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
    """Resolve glibc's ``mallinfo2`` in this process's own symbols (no library name assumed).

    Through ``PyDLL``: the call keeps the GIL. Released, the walk's thread would spend
    10-100 µs of CPU getting it back from busy Python threads, and that, not the walk,
    would dominate the measured cost and make the budget hold the heap fields back.
    """
    try:
        libc = ctypes.PyDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None  # musl, macOS, Windows, glibc < 2.33
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


class Probes:
    """The readers of one process. Create with :func:`probes`; never share across fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        try:
            self.page = os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):  # Windows, or an unknown name
            self.page = 4096
        self.statm = self._open("/proc/self/statm", os.O_RDONLY)
        # checked (fstat) before every write; the windows write only when there is a peak to clear
        self.clear_refs = self._open("/proc/self/clear_refs", os.O_WRONLY)
        self.allocator = _allocators.serving()  # which allocator serves malloc, its readers and release
        self.mallinfo2 = _find_mallinfo2() if self.allocator.name == "glibc" else None  # glibc's ~0 under another
        self.python_objects = _allocators.python_objects()  # where Python objects live; py_blocks or why not
        self._psutil: Any = None
        self.peak_was_reset = False
        try:
            self.limits = _limits.find()
        except Exception:  # an odd /proc or /sys: no limit known, every other probe still works
            self.limits = _limits.NO_LIMITS
        self.limit = self.limits.limit
        """The limit whose kill comes first, bytes (:mod:`udfmem.probes.limits`); None when unknown."""
        self.fixed: tuple[str | None, str | None, float | None] = (
            self.allocator.name,
            self.limits.source,
            mb(self.limits.high),
        )
        """What every memory block of this process carries: allocator name, limit source, memory.high (MiB)."""
        self.use_budgets()
        self.windows = PeakWindows(self)
        self.unreadable: dict[str, str] = {}
        """The memory fields this process cannot read (or reads only in part), and why: said once (``not_read``)."""
        if self.mallinfo2 is None and self.allocator.read is None:
            why = self.allocator.unreadable or f"{self.allocator.name}: no mallinfo2"
            self.unreadable["heap_in_use_mb"] = self.unreadable["heap_free_mb"] = why
        if self.python_objects.blocks_unreadable is not None:
            self.unreadable["py_blocks"] = self.python_objects.blocks_unreadable
        if self.statm is None:
            self.unreadable["rss_anon_mb"] = "no /proc/self/statm: private and shared pages unknown"
        if self.clear_refs is None or _resource is None:
            self.unreadable["peak_rss_mb"] = (
                "the kernel's peak cannot be reset here: peaks are the process's lifetime peak"
            )

    def use_budgets(
        self, clock: Callable[[], float] = time.monotonic, cost_clock: Callable[[], float] = time.thread_time
    ) -> None:
        """Give the heap and Python-blocks probes fresh time budgets on these clocks.

        Tests whose subject is a figure, not its budget, pass a ``cost_clock`` that stands
        still: every read then costs nothing, so no machine's speed holds a figure back.
        """
        # mallinfo2 within 0.5% of the wall time, and at least every HEAP_FLOOR_EVERY-th snapshot
        # within HEAP_CEILING (budget.py's floor; the numbers are argued at the constants)
        self.heap_budget: Budget[Heap] = Budget(
            self.heap,
            clock=clock,
            cost_clock=cost_clock,
            floor_every=HEAP_FLOOR_EVERY,
            ceiling=HEAP_CEILING,
        )
        # sys.getallocatedblocks() walks the arenas: 0.5 µs at 37k blocks, 64 µs at 2M; read
        # at every snapshot while it costs under 2 µs, else within 0.2% of the wall time, and
        # at least every BLOCKS_FLOOR_EVERY-th read within BLOCKS_CEILING
        self.blocks: Budget[int] = Budget(
            sys.getallocatedblocks if self.python_objects.blocks_unreadable is None else (lambda: None),
            share=0.002,
            free_below=2e-6,
            clock=clock,
            cost_clock=cost_clock,
            floor_every=HEAP_FLOOR_EVERY,
            ceiling=BLOCKS_CEILING,
        )

    @staticmethod
    def _open(path: str, flags: int) -> KeptFd | None:
        kept = KeptFd(path, flags)
        try:
            kept.open()
        except OSError:
            return None
        return kept

    def close(self) -> None:
        """Close the kept descriptors that are still ours (after fork they are the parent's files)."""
        for kept in (self.statm, self.clear_refs):
            if kept is not None:
                kept.close()
        self.statm = self.clear_refs = None
        self.limits.close()

    def _statm_pages(self) -> tuple[int, int] | None:
        """Resident and shared pages from ``/proc/self/statm``, or None.

        Reading is harmless, so the kept descriptor is checked by what it reads (seven
        decimal fields) rather than by an ``fstat`` per snapshot (~0.9 µs); anything else
        means the user closed it and reused the number: reopen (checked) and read again.
        """
        kept = self.statm
        if kept is None:
            return None
        fd = kept.fd
        for _ in range(2):
            if fd is None:
                fd = kept.get()
                if fd is None:
                    return None
            try:
                fields = os.pread(fd, 64, 0).split()
                if len(fields) == 7:
                    return int(fields[1]), int(fields[2])
            except (OSError, ValueError):
                pass
            fd = None
        return None

    def rss(self) -> int | None:
        """Current resident set size in bytes."""
        return self.resident()[0]

    def resident(self) -> tuple[int | None, int | None]:
        """Resident and shared (file-backed or shared-memory) bytes now; ~2 µs from statm."""
        pages = self._statm_pages()
        if pages is not None:
            return pages[0] * self.page, pages[1] * self.page
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
        """Reset the kernel's peak RSS to the current RSS; False where impossible.

        The kept descriptor's identity is checked (``fstat``, ~0.9 µs) before each write: a
        user who closed it and reused its number must never receive our ``5``. The window
        peaks call this only when the kernel's peak is above the RSS (a restart with
        something to clear), so a snapshot after a flat window pays neither.
        """
        fd = self.clear_refs.get() if self.clear_refs is not None else None
        if fd is None:
            return False
        try:
            os.write(fd, b"5")
        except OSError as exc:  # opened but refused (an old kernel, a sandbox): say so once, in not_read
            self.unreadable.setdefault(
                "peak_rss_mb", f"the kernel's peak cannot be reset here ({exc.strerror}): peaks are lifetime peaks"
            )
            return False
        self.peak_was_reset = True
        return True

    def snapshot_reads(self, wid: int, at: int) -> tuple[int | None, int | None, int | None, bool, Heap | None]:
        """A snapshot's reads in one call: RSS, shared, window ``wid``'s peak, lifetime flag, budgeted heap.

        The peak is the kernel's; :func:`udfmem.probes.memory.block` lifts it to the RSS where it lags.

        The same as :meth:`resident`, ``windows.take(wid, rss)`` and ``heap_budget()`` in turn,
        in one frame: a snapshot runs every K calls and must cost little more than a
        hand-written one (``benchmarks/bench_overhead.py``); the calls it saves are a
        fifth of that margin. ``at``: the index of this snapshot in its UDF's series (the
        heap's floor of readings falls on the indices a decimated series keeps).
        """
        rss = shared = None
        pages = self._statm_pages()
        if pages is not None:
            rss, shared = pages[0] * self.page, pages[1] * self.page
        elif self.statm is None:
            rss, shared = self.resident()
        peak, lifetime = self.windows.take(wid, rss)
        return rss, shared, peak, lifetime, self.heap_budget(at)

    def heap_in_use(self, heap: Heap | None) -> int | None:
        """malloc's in-use bytes of a ``heap`` reading: 0 where there is no heap probe, None when it was skipped."""
        if heap is not None:
            return heap[0]
        return 0 if (self.mallinfo2 is None and self.allocator.read is None) else None

    def heap(self) -> Heap | None:
        """The allocator serving malloc: (in use, freed but held, mmapped or None) bytes; None where unreadable.

        glibc: ``mallinfo2``; jemalloc and tcmalloc: their own figures (:mod:`udfmem.probes.allocators`).
        """
        if self.mallinfo2 is None:
            read = self.allocator.read
            if read is None:
                return None
            try:
                return read()
            except Exception:
                return None
        try:
            info = self.mallinfo2()
        except Exception:
            return None
        return info.uordblks + info.hblkhd, info.fordblks, info.hblkhd

    def cgroup_usage(self) -> int | None:
        """The working set the killer of :attr:`limit` judges, bytes (a cgroup's, Ray's, the node's), or None."""
        return self.limits.usage()


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


def forget() -> None:
    """Forget this process's probes: the next :func:`probes` builds them afresh (reading the cgroup files anew).

    Those already handed out stay open and usable (bound UDFs keep reading theirs); a fork
    child instead closes the parent's (:mod:`udfmem._process`).
    """
    global _probes
    _probes = None


def _forget_after_fork() -> None:
    global _probes
    if _probes is not None:
        _probes.close()
    _probes = None


_process.on_new_process(_forget_after_fork, _process.PROBES, fork_only=True)  # the descriptors are the parent's


def mb(value: int | None) -> float | None:
    """Bytes to MiB rounded to 0.1, keeping ``None``."""
    return None if value is None else round(value / MIB, 1)
