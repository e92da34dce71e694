"""The memory limit of this process's cgroup (v2, else v1), and where its usage is read."""

from __future__ import annotations

import os

_UNLIMITED = 1 << 60  # cgroup v1 says "no limit" with values near 2**63


def cgroup_files(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> tuple[str | None, str | None]:
    """Return (limit file, usage file) of this process's memory cgroup (v2, else v1), if any."""
    try:
        with open(proc_cgroup, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):  # unreadable, or not text
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue  # not a cgroup line: ignore it rather than fail the probes
        hier, controllers, path = parts
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
