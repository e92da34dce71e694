"""The cgroup reader: the nearest limit up the hierarchy, memory.high, the group whose usage is charged.

cgroup v2 is tested on trees built in a temporary directory (this machine has no v2 memory
controller); v1 on this machine's real hierarchy, with the limit on a parent group.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_python

from udfmem.probes import cgroup as _cgroup

MIB = 1024 * 1024


def write_group(base: Path, rel: str, **files: str) -> Path:
    """Create the group ``rel`` under ``base`` with ``files`` (``memory_max`` is written as ``memory.max``)."""
    group = base / rel.strip("/") if rel.strip("/") else base
    group.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (group / name.replace("_", ".", 1)).write_text(text)
    return group


def pod_tree(tmp_path: Path) -> tuple[str, str]:
    """A KubeRay-like v2 tree: the container's memory.max is ``max``, the pod's 512 MiB, kubepods' 1 GiB.

    Returns (the ``/proc/self/cgroup`` file, the mount's root).
    """
    root = tmp_path / "fs"
    write_group(root, "/", memory_stat="inactive_file 0\n")  # the root group: no memory.max, as on a host
    write_group(root, "/kubepods", memory_max=f"{1024 * MIB}\n", memory_high="max\n", memory_current="900\n")
    write_group(
        root,
        "/kubepods/pod1",
        memory_max=f"{512 * MIB}\n",
        memory_high="max\n",
        memory_current=f"{300 * MIB}\n",
        memory_stat=f"anon {200 * MIB}\nfile {100 * MIB}\nactive_file {40 * MIB}\ninactive_file {60 * MIB}\n",
    )
    write_group(
        root, "/kubepods/pod1/ctr", memory_max="max\n", memory_high=f"{400 * MIB}\n", memory_current=f"{280 * MIB}\n"
    )
    proc = tmp_path / "cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    return str(proc), str(root)


def test_v2_limit_on_a_parent_binds_with_that_groups_files(tmp_path: Path) -> None:
    """The container says ``max``: the pod's 512 MiB binds (smaller than kubepods'), read from the pod's own files."""
    proc, root = pod_tree(tmp_path)
    found = _cgroup.find(proc, root)
    assert found is not None
    pod = os.path.join(root, "kubepods", "pod1")
    expected = (512 * MIB, "/kubepods/pod1", f"{pod}/memory.current", f"{pod}/memory.stat", "inactive_file", 2)
    assert expected == (found.limit, found.dir, found.usage_file, found.stat_file, found.inactive_key, found.version)


def test_v2_memory_high_is_the_smallest_finite_on_the_path(tmp_path: Path) -> None:
    """memory.high of the container (400 MiB) is reported though the pod's and kubepods' say ``max``."""
    proc, root = pod_tree(tmp_path)
    found = _cgroup.find(proc, root)
    assert found is not None
    assert 400 * MIB == found.high


def test_v2_without_any_limit_has_no_limit(tmp_path: Path) -> None:
    """Every group on the path says ``max``: no limit, no memory.high (the caller falls back to the node)."""
    root = tmp_path / "fs"
    write_group(root, "/user.slice", memory_max="max\n", memory_high="max\n", memory_current="1\n")
    write_group(root, "/user.slice/job", memory_max="max\n", memory_high="max\n", memory_current="1\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    found = _cgroup.find(str(proc), str(root))
    assert found is not None
    assert (None, None) == (found.limit, found.high)


def test_v2_nearest_group_wins_a_tie(tmp_path: Path) -> None:
    """The same limit on the leaf and its parent: the leaf binds first (its usage is the one charged first)."""
    root = tmp_path / "fs"
    write_group(root, "/a", memory_max=f"{256 * MIB}\n", memory_current="1\n")
    write_group(root, "/a/b", memory_max=f"{256 * MIB}\n", memory_current="1\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/a/b\n")
    found = _cgroup.find(str(proc), str(root))
    assert found is not None
    assert "/a/b" == found.dir


def test_v2_namespaced_view_reads_the_mounts_root(tmp_path: Path) -> None:
    """A path this mount does not hold (another cgroup namespace's view) reads the mount's root: the container's group.

    Simulated: a private cgroup namespace mounts the container's group at /sys/fs/cgroup.
    """
    root = tmp_path / "fs"
    write_group(root, "/", memory_max=f"{2048 * MIB}\n", memory_current="1\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/../../kubepods/other\n")
    found = _cgroup.find(str(proc), str(root))
    assert found is not None
    assert (2048 * MIB, "/") == (found.limit, found.dir)


def test_v2_group_names_become_one_word(tmp_path: Path) -> None:
    """A group name with a space is written without it: ``limit_source`` stays one logfmt word."""
    root = tmp_path / "fs"
    write_group(root, "/my job", memory_max=f"{64 * MIB}\n", memory_current="1\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/my job\n")
    found = _cgroup.find(str(proc), str(root))
    assert found is not None
    assert "/my_job" == found.dir


def test_v1_hierarchical_limit_above_the_visible_path(tmp_path: Path) -> None:
    """v1: ``hierarchical_memory_limit`` smaller than every limit seen is the limit, put on the topmost group seen.

    Simulated: a limit on a group above this namespace's view cannot be made on this machine.
    """
    root = tmp_path / "fs"
    unlimited = "9223372036854771712\n"
    write_group(root, "/memory", memory_limit_in_bytes=unlimited, memory_usage_in_bytes="1\n")
    write_group(
        root,
        "/memory/job",
        memory_limit_in_bytes=unlimited,
        memory_usage_in_bytes="1\n",
        memory_stat=f"total_inactive_file 5\nhierarchical_memory_limit {768 * MIB}\n",
    )
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/job\n0::/\n")
    found = _cgroup.find(str(proc), str(root))
    assert found is not None
    assert (768 * MIB, "/", "total_inactive_file", 1) == (found.limit, found.dir, found.inactive_key, found.version)


def test_no_memory_cgroup_is_none(tmp_path: Path) -> None:
    """No memory controller in the process's cgroups (or no such file): None, never an exception."""
    proc = tmp_path / "cgroup"
    proc.write_text("1:cpu:/\n")
    assert _cgroup.find(str(proc), str(tmp_path)) is None
    assert _cgroup.find(str(tmp_path / "absent"), str(tmp_path)) is None


def test_stat_values_sums_the_keys_or_says_none(tmp_path: Path) -> None:
    """memory.stat keys are summed; a missing key is None (unknown), not 0."""
    stat = tmp_path / "memory.stat"
    stat.write_text("anon 10\ninactive_file 3\nactive_file 4\n")
    assert 7 == _cgroup.stat_values(str(stat), ("inactive_file", "active_file"))
    assert _cgroup.stat_values(str(stat), ("inactive_file", "total_inactive_file")) is None


@pytest.fixture
def parent_limited_cgroup() -> Iterator[tuple[Path, Path]]:
    """A real cgroup-v1 group limited to 512 MiB, with an unlimited child (needs root and a writable hierarchy)."""
    root = Path("/sys/fs/cgroup/memory")
    if not (root / "memory.limit_in_bytes").exists() or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup-v1 memory hierarchy here (needs root)")
    parent = root / f"udfmem-test-{os.getpid()}"
    child = parent / "child"
    child.mkdir(parents=True)
    try:
        (parent / "memory.limit_in_bytes").write_text(str(512 * MIB))
        yield parent, child
    finally:
        for group in (child, parent):
            for pid in (group / "cgroup.procs").read_text().split():
                (root / "cgroup.procs").write_text(pid)
        child.rmdir()
        parent.rmdir()


def test_v1_real_limit_on_the_parent(parent_limited_cgroup: tuple[Path, Path]) -> None:
    """A process in an unlimited child of a 512 MiB group reports the parent's limit, source, and its working set.

    100 MiB touched in the child lowers the headroom by ~100 MiB: the parent's usage counts its children.
    """
    parent, child = parent_limited_cgroup
    proc = run_python(
        f"""
        import os, json, udfmem
        from udfmem.probes import cgroup
        with open("{child}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        before = udfmem.sample()
        block = bytearray(b"\\x01") * (100 * 1024 * 1024)
        after = udfmem.sample()
        found = cgroup.find()
        print(json.dumps([before.limit_mb, before.limit_source, before.headroom_mb, after.headroom_mb, found.dir]))
        """
    )
    limit, source, headroom_before, headroom_after, where = json.loads(proc.stdout)
    assert (512.0, f"cgroup:/{parent.name}", f"/{parent.name}") == (limit, source, where)
    assert headroom_before - headroom_after == pytest.approx(100, abs=10)
