"""The memory limit whose kill comes first for this process: its cgroup's, Ray's memory monitor's, or the node's.

Three killers may end a worker, each judging its own figure against its own limit:

- ``cgroup:<dir>``: the kernel (and a kubelet) at the nearest cgroup limit up the
  hierarchy, judging that group's working set (usage less inactive file pages;
  :mod:`udfmem.probes.cgroup`).
- ``ray-monitor:<share>``: in a Ray worker, the raylet's memory monitor. Mirrored from Ray
  2.60's ``src/ray/common/monitors/memory_monitor_utils.cc`` and
  ``multi_memory_monitor_factory.cc``: at start it takes the total as the smaller of the
  node's ``MemTotal`` and the limit of ``/sys/fs/cgroup`` itself (v2 ``memory.max``, v1
  ``memory/memory.limit_in_bytes``: the container's group, not this process's); the
  threshold is ``RAY_memory_usage_threshold`` (0.95) of it, or ``total -
  RAY_min_memory_free_bytes`` where that is larger. Every ``RAY_memory_monitor_refresh_ms``
  (250; 0 turns the monitor off) it compares the used memory with the threshold: the
  cgroup's usage less ALL its file pages (``inactive_file`` and ``active_file``) where
  that cgroup's limit is the total, else ``MemTotal - MemAvailable`` of the node. It
  kills workers only, never the driver.
- ``node``: the kernel's OOM killer at the node's ``MemTotal``, judging ``MemTotal -
  MemAvailable`` (the headroom is ``MemAvailable``).

The one reported is the one with the least headroom when the probes are built (a
process's source never changes: it is in every memory block). A Ray worker is told by
the ``RAY_RAYLET_PID`` variable the raylet gives the workers it starts (not the driver),
read without importing Ray; Ray's variables are read from this process's environment,
which the workers inherit from the raylet (a threshold given in ``ray.init``'s
``_system_config`` is not seen).

Cost: a snapshot reads the usage at every snapshot: one ``pread`` of the group's usage
file (~1 µs) for a cgroup; the files parsed whole (``memory.stat``, ``/proc/meminfo``:
10-20 µs each) are read at most every :data:`REFRESH_S` on an injectable clock.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping

from . import cgroup as _cgroup
from .fds import KeptFd

__all__ = ["NO_LIMITS", "RAY_THRESHOLD", "REFRESH_S", "Limits", "find", "ray_worker"]

REFRESH_S = 1.0
"""The files parsed whole (``memory.stat``, ``/proc/meminfo``) are re-read at most this often (seconds)."""
RAY_THRESHOLD = 0.95
"""Ray's default ``memory_usage_threshold``."""
_INF = float("inf")


class WorkingSet:
    """A cgroup's working set: its usage file (``pread`` on a kept descriptor) less file pages from ``memory.stat``.

    ``memory.stat`` is re-read at most every :data:`REFRESH_S` of ``clock``; between reads
    the last file-page figure is used. ``cap``: the usage is never above it (Ray's clamp).
    """

    def __init__(
        self,
        usage_file: str,
        stat_file: str,
        keys: tuple[str, ...],
        clock: Callable[[], float] = time.monotonic,
        cap: int | None = None,
    ) -> None:
        self._kept = KeptFd(usage_file, os.O_RDONLY)
        with contextlib.suppress(OSError):  # get() tries again at each read
            self._kept.open()
        self._stat = stat_file
        self._keys = keys
        self._clock = clock
        self._cap = cap
        self._files = 0
        self._closed = False
        self._next = -_INF
        self.stat_reads = 0
        """How many times ``memory.stat`` was parsed (tests check the cache through it)."""

    def read(self) -> int | None:
        """The working set in bytes now, or None when the usage file cannot be read (or the reader was closed)."""
        if self._closed:  # a holder of old probes: never reopen a descriptor nobody will close
            return None
        fd = self._kept.get()
        if fd is None:
            return None
        try:
            used = int(os.pread(fd, 32, 0))
        except (OSError, ValueError):
            return None
        now = self._clock()
        if now >= self._next:
            self._next = now + REFRESH_S
            self.stat_reads += 1
            files = _cgroup.stat_values(self._stat, self._keys)
            if files is not None:
                self._files = files
        used -= self._files
        cap = self._cap
        if cap is not None and used > cap:
            return cap
        return used if used > 0 else 0

    def close(self) -> None:
        """Close the kept usage descriptor (if still ours); reads answer None from now on."""
        self._closed = True
        self._kept.close()


class NodeUsage:
    """The node's used memory as Ray and the kernel see it: ``MemTotal - MemAvailable``, re-read every REFRESH_S."""

    def __init__(self, meminfo: str = "/proc/meminfo", clock: Callable[[], float] = time.monotonic) -> None:
        self._path = meminfo
        self._clock = clock
        self._next = -_INF
        self._used: int | None = None
        self.total = _meminfo(meminfo)[0]
        """``MemTotal`` in bytes (None where there is no ``/proc/meminfo``)."""

    def read(self) -> int | None:
        """Used bytes of the node (at most REFRESH_S old), or None."""
        now = self._clock()
        if now >= self._next:
            self._next = now + REFRESH_S
            total, available = _meminfo(self._path)
            self._used = None if (total is None or available is None) else max(0, total - available)
        return self._used

    def close(self) -> None:
        """Nothing kept open."""


def _meminfo(path: str) -> tuple[int | None, int | None]:
    """(MemTotal, available) bytes from a ``/proc/meminfo``; available as Ray takes it (psutil's fallback)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None, None
    values: dict[bytes, int] = {}
    for line in raw.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in (b"MemTotal:", b"MemAvailable:", b"MemFree:", b"Cached:", b"Buffers:"):
            try:
                values[fields[0]] = int(fields[1]) * 1024
            except ValueError:
                continue
    total = values.get(b"MemTotal:")
    available = values.get(b"MemAvailable:")
    if not available:  # absent or 0 (kernels before 3.14): free + cached + buffers, as Ray does
        parts = [values.get(k) for k in (b"MemFree:", b"Cached:", b"Buffers:")]
        available = None if None in parts else sum(p for p in parts if p is not None)
    if total is None or available is None or available > total:
        return None, None
    return total, available


class Limits:
    """The limit whose kill comes first for this process: bytes, source, memory.high, and its usage reader.

    ``usage`` returns the figure that killer judges (bytes, or None); ``limit - usage`` is the headroom.
    """

    __slots__ = ("_closers", "high", "limit", "problem", "source", "usage")

    def __init__(
        self,
        limit: int | None,
        source: str | None,
        usage: Callable[[], int | None],
        high: int | None = None,
        closers: tuple[Callable[[], None], ...] = (),
        problem: str | None = None,
    ) -> None:
        self.limit = limit
        self.source = source
        self.usage = usage
        self.high = high
        self.problem = problem
        """A Ray variable that could not be used (the default was), for one warning; None when all were fine."""
        self._closers = closers

    def close(self) -> None:
        """Close the descriptors the usage readers keep."""
        for close in self._closers:
            with contextlib.suppress(OSError):
                close()


def _none() -> int | None:
    return None


NO_LIMITS = Limits(None, None, _none)
"""No limit known (no cgroup limit, no ``/proc/meminfo``): limit and headroom are left out."""


def ray_worker(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a Ray worker (the raylet sets ``RAY_RAYLET_PID`` in the workers it starts)."""
    env = os.environ if environ is None else environ
    return bool(env.get("RAY_RAYLET_PID"))


def _ray_settings(env: Mapping[str, str]) -> tuple[bool, float, int, str | None]:
    """(monitor on, threshold share, min free bytes or -1, a problem) from Ray's variables; bad: the defaults."""
    problems: list[str] = []
    on = True
    raw = env.get("RAY_memory_monitor_refresh_ms")
    if raw is not None:
        try:
            on = int(raw.strip()) != 0
        except ValueError:
            problems.append(f"RAY_memory_monitor_refresh_ms={raw[:40]!r} is not an integer: taken as on")
    share = RAY_THRESHOLD
    raw = env.get("RAY_memory_usage_threshold")
    if raw is not None:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if 0.0 <= value <= 1.0:
            share = value
        else:
            problems.append(f"RAY_memory_usage_threshold={raw[:40]!r} is not a share in [0, 1]: {RAY_THRESHOLD} used")
    min_free = -1
    raw = env.get("RAY_min_memory_free_bytes")
    if raw is not None:
        try:
            min_free = int(raw.strip())
        except ValueError:
            problems.append(f"RAY_min_memory_free_bytes={raw[:40]!r} is not an integer: ignored")
    return on, share, min_free, ("; ".join(problems) or None)


def _ray_view(
    root: str, node: NodeUsage, clock: Callable[[], float]
) -> tuple[int | None, Callable[[], int | None], tuple[Callable[[], None], ...]]:
    """Ray's total and used-memory reader: ``root``'s own cgroup where its limit is at most MemTotal, else the node."""
    mem_total = node.total
    v2_max = os.path.join(root, "memory.max")
    if os.path.exists(v2_max):
        limit = _cgroup.read_limit(v2_max)
        usage_file, stat_file = os.path.join(root, "memory.current"), os.path.join(root, "memory.stat")
        keys = ("inactive_file", "active_file")
    else:
        limit = _cgroup.read_limit(os.path.join(root, "memory", "memory.limit_in_bytes"))
        usage_file = os.path.join(root, "memory", "memory.usage_in_bytes")
        stat_file = os.path.join(root, "memory", "memory.stat")
        keys = ("total_inactive_file", "total_active_file")
    if limit is not None and limit > 0 and (mem_total is None or limit <= mem_total):
        ws = WorkingSet(usage_file, stat_file, keys, clock, cap=limit)
        return limit, ws.read, (ws.close,)
    return mem_total, node.read, ()


def find(
    proc_cgroup: str = "/proc/self/cgroup",
    root: str = "/sys/fs/cgroup",
    meminfo: str = "/proc/meminfo",
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Limits:
    """The limit whose kill comes first for this process (the least headroom now), with its source and usage reader.

    Never raises for odd files: what cannot be read is not a candidate; with none, :data:`NO_LIMITS`.
    """
    env = os.environ if environ is None else environ
    node = NodeUsage(meminfo, clock)
    # (limit, source, usage reader, closers) of each killer that applies
    candidates: list[tuple[int, str, Callable[[], int | None], tuple[Callable[[], None], ...]]] = []
    closers: list[Callable[[], None]] = []
    high = None
    found = _cgroup.find(proc_cgroup, root)
    if found is not None:
        high = found.high
        if found.limit is not None:
            ws = WorkingSet(found.usage_file, found.stat_file, (found.inactive_key,), clock)
            candidates.append((found.limit, f"cgroup:{found.dir}", ws.read, (ws.close,)))
            closers.append(ws.close)
    problem = None
    if ray_worker(env):
        on, share, min_free, problem = _ray_settings(env)
        if on:
            total, used, ray_closers = _ray_view(root, node, clock)
            closers.extend(ray_closers)
            if total is not None:
                threshold = int(total * share)
                if 0 <= min_free <= total:
                    threshold = max(threshold, total - min_free)
                candidates.append((threshold, f"ray-monitor:{share:g}", used, ray_closers))
    if node.total is not None:
        candidates.append((node.total, "node", node.read, ()))
    best: tuple[int, str, Callable[[], int | None], tuple[Callable[[], None], ...]] | None = None
    best_headroom = _INF
    for candidate in candidates:
        used_now = candidate[2]()
        headroom = candidate[0] - (used_now if used_now is not None else 0)
        if headroom < best_headroom:
            best, best_headroom = candidate, headroom
    for close in closers:  # readers not chosen keep nothing open
        if best is None or close not in best[3]:
            close()
    if best is None:
        return NO_LIMITS if (high is None and problem is None) else Limits(None, None, _none, high, problem=problem)
    return Limits(best[0], best[1], best[2], high, best[3], problem)
