"""The kill that comes first: a cgroup's limit, Ray's memory monitor, or the node; its headroom and its cost.

Trees and ``/proc/meminfo`` files are built in a temporary directory (this machine has no
cgroup v2 controller, and its node memory cannot be set); the environment is passed in.
The real Ray worker is in ``test_engines_ray_limits.py``, the real v1 cgroup in ``test_cgroup.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import udfmem
from udfmem.probes import limits as _limits

MIB = 1024 * 1024
GIB = 1024 * MIB


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


def meminfo(tmp_path: Path, total: int = 8 * GIB, available: int = 6 * GIB) -> str:
    """A ``/proc/meminfo`` with ``total`` and ``available`` bytes; returns its path."""
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       {total // 1024} kB\nMemFree:        {available // 2048} kB\n"
        f"MemAvailable:   {available // 1024} kB\nBuffers:        0 kB\nCached:         {available // 2048} kB\n"
    )
    return str(path)


def v2_pod(tmp_path: Path, limit: int = 512 * MIB, root_max: str | None = None) -> tuple[str, str, Path]:
    """A v2 tree: the container's memory.max ``max``, the pod's ``limit``; (proc file, root, pod dir)."""
    root = tmp_path / "fs"
    pod = root / "kubepods" / "pod1"
    ctr = pod / "ctr"
    ctr.mkdir(parents=True)
    if root_max is not None:
        (root / "memory.max").write_text(root_max)
        (root / "memory.current").write_text(f"{3 * GIB}\n")
        (root / "memory.stat").write_text(f"anon {2 * GIB}\nactive_file {16 * MIB}\ninactive_file {512 * MIB}\n")
    (pod / "memory.max").write_text(f"{limit}\n")
    (pod / "memory.high").write_text(f"{448 * MIB}\n")
    (pod / "memory.current").write_text(f"{300 * MIB}\n")
    (pod / "memory.stat").write_text(f"anon {200 * MIB}\nactive_file {40 * MIB}\ninactive_file {60 * MIB}\n")
    (ctr / "memory.max").write_text("max\n")
    (ctr / "memory.current").write_text(f"{290 * MIB}\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    return str(proc), str(root), pod


def no_cgroup(tmp_path: Path) -> tuple[str, str]:
    """A process in no memory cgroup (proc file, root)."""
    proc = tmp_path / "nocg"
    proc.write_text("1:cpu:/\n")
    return str(proc), str(tmp_path / "nofs")


def test_cgroup_limit_on_a_parent_with_its_working_set(tmp_path: Path) -> None:
    """The pod's 512 MiB binds; usage is its memory.current less inactive_file (300 - 60); memory.high kept."""
    proc, root, _ = v2_pod(tmp_path)
    found = _limits.find(proc, root, meminfo(tmp_path), environ={})
    assert (512 * MIB, "cgroup:/kubepods/pod1", 448 * MIB) == (found.limit, found.source, found.high)
    assert 240 * MIB == found.usage()


def test_working_set_reads_usage_each_time_and_memory_stat_once_a_second(tmp_path: Path) -> None:
    """memory.current is read at every call; memory.stat only when REFRESH_S has passed on the injected clock."""
    proc, root, pod = v2_pod(tmp_path)
    clock = Clock()
    found = _limits.find(proc, root, meminfo(tmp_path), environ={}, clock=clock)
    assert 240 * MIB == found.usage()
    (pod / "memory.current").write_text(f"{350 * MIB}\n")
    (pod / "memory.stat").write_text(f"anon {250 * MIB}\nactive_file {40 * MIB}\ninactive_file {10 * MIB}\n")
    assert 290 * MIB == found.usage()  # the new usage, the cached inactive file pages (60 MiB)
    clock.now += _limits.REFRESH_S
    assert 340 * MIB == found.usage()  # memory.stat read again: 10 MiB inactive
    found.close()


def test_working_set_counts_stat_reads(tmp_path: Path) -> None:
    """Within REFRESH_S of one read, 1,000 readings parse memory.stat once; after it, once more."""
    clock = Clock()
    (tmp_path / "memory.current").write_text("4096\n")
    (tmp_path / "memory.stat").write_text("inactive_file 1024\n")
    ws = _limits.WorkingSet(str(tmp_path / "memory.current"), str(tmp_path / "memory.stat"), ("inactive_file",), clock)
    assert [3072] * 1000 == [ws.read() for _ in range(1000)]
    clock.now += _limits.REFRESH_S
    ws.read()
    assert 2 == ws.stat_reads
    ws.close()


def test_outside_a_cgroup_the_node_is_the_limit_and_the_headroom_is_memavailable(tmp_path: Path) -> None:
    """No cgroup limit, not in Ray: limit = MemTotal, source ``node``, usage = MemTotal - MemAvailable."""
    proc, root = no_cgroup(tmp_path)
    found = _limits.find(proc, root, meminfo(tmp_path, 8 * GIB, 6 * GIB), environ={})
    assert (8 * GIB, "node", None) == (found.limit, found.source, found.high)
    assert 6 * GIB == found.limit - (found.usage() or 0)


def test_node_usage_is_cached_between_refreshes(tmp_path: Path) -> None:
    """/proc/meminfo is parsed at most once per REFRESH_S: a change shows only after the clock moves on."""
    proc, root = no_cgroup(tmp_path)
    clock = Clock()
    path = meminfo(tmp_path, 8 * GIB, 6 * GIB)
    found = _limits.find(proc, root, path, environ={}, clock=clock)
    assert 2 * GIB == found.usage()
    meminfo(tmp_path, 8 * GIB, 5 * GIB)
    assert 2 * GIB == found.usage()
    clock.now += _limits.REFRESH_S
    assert 3 * GIB == found.usage()


def test_a_cgroup_limit_above_the_node_memory_is_not_the_first_kill(tmp_path: Path) -> None:
    """A 64 GiB pod limit on an 8 GiB node: the node's kill comes first."""
    proc, root, _ = v2_pod(tmp_path, limit=64 * GIB)
    found = _limits.find(proc, root, meminfo(tmp_path, 8 * GIB, 6 * GIB), environ={})
    assert (8 * GIB, "node") == (found.limit, found.source)


def test_ray_worker_without_a_cgroup_limit_is_killed_at_the_threshold_of_the_node(tmp_path: Path) -> None:
    """In a Ray worker (RAY_RAYLET_PID set) with threshold 0.5 and no cgroup limit: 0.5 x MemTotal, node usage."""
    proc, root = no_cgroup(tmp_path)
    env = {"RAY_RAYLET_PID": "1234", "RAY_memory_usage_threshold": "0.5"}
    found = _limits.find(proc, root, meminfo(tmp_path, 8 * GIB, 6 * GIB), environ=env)
    assert (4 * GIB, "ray-monitor:0.5") == (found.limit, found.source)
    assert 2 * GIB == found.usage()


def test_ray_default_threshold_is_095(tmp_path: Path) -> None:
    """Without RAY_memory_usage_threshold a worker's limit is 0.95 of the node."""
    proc, root = no_cgroup(tmp_path)
    found = _limits.find(proc, root, meminfo(tmp_path), environ={"RAY_RAYLET_PID": "1"})
    assert (int(8 * GIB * 0.95), "ray-monitor:0.95") == (found.limit, found.source)


def test_the_driver_is_not_judged_by_rays_monitor(tmp_path: Path) -> None:
    """Ray's variables without RAY_RAYLET_PID (the driver, any other process): the monitor does not kill it."""
    proc, root = no_cgroup(tmp_path)
    found = _limits.find(proc, root, meminfo(tmp_path), environ={"RAY_memory_usage_threshold": "0.5"})
    assert "node" == found.source


def test_ray_monitor_turned_off(tmp_path: Path) -> None:
    """RAY_memory_monitor_refresh_ms=0 turns Ray's monitor off: the node (or cgroup) kill is the one."""
    proc, root = no_cgroup(tmp_path)
    env = {"RAY_RAYLET_PID": "1", "RAY_memory_usage_threshold": "0.5", "RAY_memory_monitor_refresh_ms": "0"}
    found = _limits.find(proc, root, meminfo(tmp_path), environ=env)
    assert "node" == found.source


def test_ray_min_memory_free_bytes_raises_the_threshold(tmp_path: Path) -> None:
    """RAY_min_memory_free_bytes: the threshold is max(share x total, total - min free), as Ray computes it."""
    proc, root = no_cgroup(tmp_path)
    env = {"RAY_RAYLET_PID": "1", "RAY_memory_usage_threshold": "0.5", "RAY_min_memory_free_bytes": str(GIB)}
    found = _limits.find(proc, root, meminfo(tmp_path), environ=env)
    assert 7 * GIB == found.limit


def test_ray_reads_the_container_cgroup_and_subtracts_all_file_pages(tmp_path: Path) -> None:
    """Where /sys/fs/cgroup's own memory.max (4 GiB) is under MemTotal, Ray's total is it and its used memory.

    Ray's used memory is memory.current less inactive AND active file pages (3 GiB - 528 MiB);
    its threshold (0.95 x 4 GiB) leaves less headroom than the kernel's 4 GiB limit on the same
    group (judged on 3 GiB - 512 MiB), the pod's 6 GiB or the node.
    """
    proc, root, _ = v2_pod(tmp_path, limit=6 * GIB, root_max=f"{4 * GIB}\n")
    env = {"RAY_RAYLET_PID": "1"}
    found = _limits.find(proc, root, meminfo(tmp_path, 16 * GIB, 12 * GIB), environ=env)
    assert (int(4 * GIB * 0.95), "ray-monitor:0.95") == (found.limit, found.source)
    assert 3 * GIB - 528 * MIB == found.usage()


def test_bad_ray_threshold_uses_rays_default_and_says_so(tmp_path: Path) -> None:
    """A RAY_memory_usage_threshold that is not a share in [0, 1]: 0.95, and one problem naming the variable."""
    proc, root = no_cgroup(tmp_path)
    env = {"RAY_RAYLET_PID": "1", "RAY_memory_usage_threshold": "lots"}
    found = _limits.find(proc, root, meminfo(tmp_path), environ=env)
    assert "ray-monitor:0.95" == found.source
    assert found.problem is not None and "RAY_memory_usage_threshold" in found.problem


def test_no_meminfo_and_no_cgroup_means_no_limit(tmp_path: Path) -> None:
    """No /proc/meminfo and no memory cgroup (macOS, Windows): limit, source and usage unknown.

    Simulated with paths that do not exist: this machine has both.
    """
    proc, root = no_cgroup(tmp_path)
    found = _limits.find(proc, root, str(tmp_path / "absent"), environ={})
    assert (None, None, None) == (found.limit, found.source, found.usage())


def test_this_machine_reports_a_limit_with_its_source() -> None:
    """udfmem.sample() on this machine: a limit, its source (cgroup, or the node), and a headroom under it."""
    s = udfmem.sample()
    assert s.limit_mb is not None and s.headroom_mb is not None
    assert s.limit_source == "node" or s.limit_source.startswith("cgroup:")
    assert 0 < s.headroom_mb <= s.limit_mb


@pytest.mark.parametrize("text", ["MemTotal: lots kB\n", "", "MemTotal: 100 kB\nMemAvailable: 200 kB\n"])
def test_odd_meminfo_is_no_node_limit(tmp_path: Path, text: str) -> None:
    """A /proc/meminfo without a number, empty, or saying more available than total: no node limit, no raise."""
    proc, root = no_cgroup(tmp_path)
    path = tmp_path / "meminfo"
    path.write_text(text)
    assert _limits.find(proc, root, str(path), environ={}).limit is None
