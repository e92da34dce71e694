"""The memory cgroup of this process (v2, else v1): the nearest limit up its hierarchy, memory.high, the working set.

A pod's limit often sits on a parent (the container's own ``memory.max`` reads ``max``),
so :func:`find` walks from the process's group up to the root of the mount and keeps the
smallest finite limit on the way, and the group it sits on: that group's usage is what
the kernel charges against it. Its working set is the usage less the inactive file pages
(``memory.stat``): page cache the kernel reclaims before an OOM kill, and what the
kubelet leaves out. Every reader takes the root and the ``/proc/self/cgroup`` path, so
tests build trees in a temporary directory.
"""

from __future__ import annotations

import dataclasses
import os

_UNLIMITED = 1 << 60  # cgroup v1 says "no limit" with values near 2**63


@dataclasses.dataclass(frozen=True)
class CgroupLimit:
    """The memory limit that binds this process's cgroup, where it sits, and what is charged against it."""

    limit: int | None
    """The smallest finite limit on the path from the process's group to the root, bytes (None: none)."""
    dir: str
    """The group it sits on, relative to the mount's root (``/kubepods/pod1``; ``/`` for the root itself)."""
    usage_file: str
    """That group's usage file (``memory.current``, v1 ``memory.usage_in_bytes``)."""
    stat_file: str
    """That group's ``memory.stat``."""
    inactive_key: str
    """The ``memory.stat`` key of its inactive file pages (v1's ``total_`` one counts the group's children)."""
    high: int | None = None
    """v2: the smallest finite ``memory.high`` on the path (throttled and reclaimed above it), bytes."""
    version: int = 2


def membership(proc_cgroup: str = "/proc/self/cgroup") -> tuple[str | None, str | None]:
    """The process's (v2 path, v1 memory-controller path) from ``proc_cgroup``, each None where absent."""
    try:
        with open(proc_cgroup, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):  # unreadable, or not text
        return None, None
    v2 = v1 = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue  # not a cgroup line: ignore it rather than fail the probes
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _path_up(base: str, path: str) -> list[tuple[str, str]]:
    """(directory, its path relative to ``base``) from the process's group up to ``base``, leaf first.

    A path not under ``base`` (another cgroup namespace's view) starts at ``base`` itself.
    """
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    if not os.path.isdir(os.path.join(base, *parts)):
        parts = []
    return [(os.path.join(base, *parts[:k]), "/" + "/".join(parts[:k])) for k in range(len(parts), -1, -1)]


def _smallest(dirs: list[tuple[str, str]], name: str) -> tuple[int | None, str | None]:
    """The smallest finite limit in file ``name`` along ``dirs``, and its group's relative path (nearest wins a tie)."""
    best: int | None = None
    where: str | None = None
    for directory, rel in dirs:
        value = read_limit(os.path.join(directory, name))
        if value is not None and (best is None or value < best):
            best, where = value, rel
    return best, where


def find(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> CgroupLimit | None:
    """The limit binding this process's memory cgroup (v2, else v1), or None where there is no memory cgroup.

    v2: the smallest finite ``memory.max`` from the process's group up to the mount's root,
    and likewise ``memory.high``. v1: the smallest ``memory.limit_in_bytes`` on the path, or
    ``hierarchical_memory_limit`` of the group's ``memory.stat`` where that is smaller (a
    limit above what this namespace sees: it is put on the topmost group seen). A
    ``CgroupLimit`` with ``limit`` None carries a ``memory.high`` without a limit.
    """
    v2, v1 = membership(proc_cgroup)
    if v2 is not None:
        dirs = _path_up(root, v2)
        if any(os.path.exists(os.path.join(d, "memory.current")) for d, _ in dirs):
            limit, where = _smallest(dirs, "memory.max")
            high, _ = _smallest(dirs, "memory.high")
            rel = where if where is not None else dirs[0][1]
            group = os.path.join(root, rel.lstrip("/"))
            return CgroupLimit(
                limit,
                _safe(rel),
                os.path.join(group, "memory.current"),
                os.path.join(group, "memory.stat"),
                "inactive_file",
                high,
                2,
            )
    if v1 is not None:
        base = os.path.join(root, "memory")
        dirs = _path_up(base, v1)
        if os.path.exists(os.path.join(dirs[0][0], "memory.usage_in_bytes")):
            limit, where = _smallest(dirs, "memory.limit_in_bytes")
            hierarchical = stat_values(os.path.join(dirs[0][0], "memory.stat"), ("hierarchical_memory_limit",))
            if hierarchical is not None and hierarchical < _UNLIMITED and (limit is None or hierarchical < limit):
                limit, where = hierarchical, dirs[-1][1]
            rel = where if where is not None else dirs[0][1]
            group = os.path.join(base, rel.lstrip("/"))
            return CgroupLimit(
                limit,
                _safe(rel),
                os.path.join(group, "memory.usage_in_bytes"),
                os.path.join(group, "memory.stat"),
                "total_inactive_file",
                None,
                1,
            )
    return None


def _safe(rel: str) -> str:
    """A group's path as one logfmt word: no spaces or control characters."""
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in rel)


def stat_values(path: str, keys: tuple[str, ...]) -> int | None:
    """The sum of ``keys`` in a ``memory.stat`` (or ``/proc/meminfo``-like) file, or None if one is missing.

    Reads the whole file (~40 lines, ~10-20 µs): callers read it rarely, never per snapshot.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    wanted = {k.encode(): 0 for k in keys}
    found: dict[bytes, int] = {}
    for line in raw.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in wanted:
            try:
                found[fields[0]] = int(fields[1])
            except ValueError:
                return None
    return sum(found.values()) if len(found) == len(wanted) else None


def cgroup_files(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[str | None, str | None]:
    """Return (limit file, usage file) of this process's own memory cgroup (v2, else v1), if any; no walk up."""
    v2, v1 = membership(proc_cgroup)
    if v2 is not None:
        for base in (f"{root}{v2}", root):
            if os.path.exists(f"{base}/memory.max"):
                return f"{base}/memory.max", f"{base}/memory.current"
    if v1 is not None:
        for base in (f"{root}/memory{v1}", f"{root}/memory"):
            if os.path.exists(f"{base}/memory.limit_in_bytes"):
                return f"{base}/memory.limit_in_bytes", f"{base}/memory.usage_in_bytes"
    return None, None


def read_limit(path: str | None) -> int | None:
    """A cgroup memory limit in bytes; None for none (``max``, or v1's ~2**63)."""
    limit = read_int(path) if path else None
    return limit if limit is not None and limit < _UNLIMITED else None


def read_int(path: str) -> int | None:
    """The integer in a cgroup file (a limit, a usage), or None: unreadable, not a number, or no limit."""
    try:
        with open(path, "rb") as f:
            raw = f.read().strip()
        return None if raw == b"max" else int(raw)
    except (OSError, ValueError):
        return None
