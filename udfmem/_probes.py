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
import os
import sys
import time
from typing import Any

try:
    import resource as _resource
except ImportError:  # Windows
    _resource = None  # type: ignore[assignment]

MIB = 1024 * 1024
_UNLIMITED = 1 << 60  # cgroup v1 says "no limit" with values near 2**63


@dataclasses.dataclass(frozen=True, slots=True)
class MemorySample:
    """One reading of this process's memory. Sizes are MiB; ``None`` means unknown.

    ``peak_rss_mb`` is the highest RSS since udfmem last reset the kernel's peak counter
    (each snapshot does), or since the process started when ``peak_is_lifetime``.
    ``gap_mb`` is RSS that Arrow does not account for: Python objects, native
    libraries, and memory the allocator holds after it was freed (``heap_free_mb``).
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
        if self._statm is not None:
            try:
                return int(os.pread(self._statm, 64, 0).split()[1]) * self.page
            except (OSError, ValueError, IndexError):
                return None
        try:
            if self._psutil is None:
                import psutil

                self._psutil = psutil.Process()
            return int(self._psutil.memory_info().rss)
        except Exception:
            return None

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


def arrow() -> tuple[int, str | None]:
    """Arrow's live bytes and pool backend, only if the user already imported pyarrow."""
    pa = sys.modules.get("pyarrow")
    if pa is None:
        return 0, None
    try:
        return arrow_live(), str(pa.default_memory_pool().backend_name)
    except Exception:
        return 0, None


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


def mb(value: int | None) -> float | None:
    """Bytes to MiB rounded to 0.1, keeping ``None``."""
    return None if value is None else round(value / MIB, 1)


def read(peak: int | None = None, peak_is_lifetime: bool | None = None) -> MemorySample:
    """Read every probe now. ``peak`` overrides the window peak (the caller tracked it)."""
    p = probes()
    rss = p.rss()
    if peak is None:
        peak = p.peak()
    if peak is not None and rss is not None:
        peak = max(peak, rss)  # the kernel's high-water mark lags the current RSS a little
    arrow_live, backend = arrow()
    heap = p.heap()
    usage = p.cgroup_usage()
    return MemorySample(
        pid=p.pid,
        ts=time.time(),
        rss_mb=mb(rss),
        peak_rss_mb=mb(peak),
        peak_is_lifetime=(not p.peak_was_reset) if peak_is_lifetime is None else peak_is_lifetime,
        arrow_live_mb=mb(arrow_live) or 0.0,
        arrow_backend=backend,
        gap_mb=mb(rss - arrow_live) if rss is not None else None,
        heap_in_use_mb=mb(heap[0]) if heap else None,
        heap_free_mb=mb(heap[1]) if heap else None,
        heap_mmap_mb=mb(heap[2]) if heap else None,
        limit_mb=mb(p.limit),
        headroom_mb=mb(p.limit - usage) if (p.limit is not None and usage is not None) else None,
    )


def sample() -> MemorySample:
    """Read this process's memory now, every probe at once.

    Does not reset the window peak, so it never disturbs udfmem's own snapshots.
    """
    return read()
