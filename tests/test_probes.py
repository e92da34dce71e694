"""The probes against real memory: allocations of known size, Arrow, malloc, cgroups."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, parse_events, run_python

import udfmem
from udfmem import tracked
from udfmem.probes import cgroup as _cgroup
from udfmem.probes import memory as _memory
from udfmem.probes import process as _probes

Reader = Callable[..., Events]
MIB = 1024 * 1024


def test_rss_rises_by_a_touched_allocation() -> None:
    """Allocating and touching 200 MiB raises rss_mb by about 200."""
    before = udfmem.sample()
    block = bytearray(b"\x01") * (200 * MIB)
    after = udfmem.sample()
    assert before.rss_mb is not None and after.rss_mb is not None
    assert after.rss_mb - before.rss_mb == pytest.approx(200, abs=10)
    del block


def test_window_peak_catches_a_transient_freed_before_the_snapshot(stderr_events: Reader) -> None:
    """A 300 MiB transient freed inside the call shows in peak_rss_mb, not rss_mb; next window is clean."""

    @tracked(every=2)
    class Udf:
        def __call__(self, big: bool) -> int:
            if big:
                scratch = bytearray(b"\x01") * (300 * MIB)
                return len(scratch)
            return 0

    udf = Udf()
    udf(False)
    udf(True)
    udf(False)
    udf(False)
    first, second = stderr_events("udfmem.snapshot")
    assert first["peak_rss_mb"] - first["rss_mb"] >= 280
    assert second["peak_rss_mb"] - second["rss_mb"] < 50
    assert "peak_is_lifetime" not in first


def test_sample_is_frozen_and_complete() -> None:
    """sample() returns a frozen MemorySample with this pid and known values on Linux/glibc."""
    s = udfmem.sample()
    assert os.getpid() == s.pid
    with pytest.raises(AttributeError):
        s.rss_mb = 1.0  # type: ignore[misc]
    assert s.heap_in_use_mb is not None and s.heap_in_use_mb > 0
    assert s.heap_free_mb is not None and s.heap_free_mb >= 0
    assert s.peak_rss_mb is not None and s.rss_mb is not None and s.peak_rss_mb >= s.rss_mb


def test_malloc_in_use_and_freed_but_held() -> None:
    """50 MiB of small objects shows in heap_in_use_mb; freeing 90% of them (pinned) shows in heap_free_mb."""
    before = udfmem.sample()
    blocks = [bytearray(b"\x01") * 1000 for _ in range(50_000)]
    during = udfmem.sample()
    del blocks[: len(blocks) // 10 * 9 : 1]  # free the first 90%: the last 10% pin the heap top
    after = udfmem.sample()
    assert before.heap_in_use_mb is not None and during.heap_in_use_mb is not None
    assert during.heap_in_use_mb - before.heap_in_use_mb == pytest.approx(50, rel=0.25)
    # against `during`, not `before`: the allocations may have eaten free space malloc held
    # before (its top chunk), which frees of pinned chunks do not give back to the top
    assert after.heap_free_mb is not None and during.heap_free_mb is not None
    assert after.heap_free_mb - during.heap_free_mb >= 35
    del blocks


def test_arrow_fields_zero_and_pyarrow_never_imported_when_unused() -> None:
    """Without a user import of pyarrow, Arrow fields are zero and udfmem does not import it."""
    proc = run_python(
        """
        import sys, udfmem
        @udfmem.tracked(every=1)
        class Udf:
            def __call__(self, x):
                return x
        Udf()(1)
        s = udfmem.sample()
        print("ARROW", s.arrow_live_mb, s.arrow_backend, "pyarrow" in sys.modules)
        """
    )
    assert "ARROW 0.0 None False" in proc.stdout
    (snap,) = parse_events(proc.stderr, "udfmem.snapshot")
    assert 0.0 == snap["arrow_live_mb"]
    assert snap["gap_mb"] == snap["rss_mb"]


def test_arrow_live_bytes_when_the_user_imported_pyarrow() -> None:
    """With pyarrow imported by the user, arrow_live_mb tracks a 64 MiB array and gap_mb excludes it."""
    proc = run_python(
        """
        import pyarrow as pa, udfmem
        keep = []
        @udfmem.tracked(every=1)
        class Udf:
            def __call__(self, n):
                keep.append(pa.array(range(n), type=pa.int64()))
        Udf()(8 * 1024 * 1024)
        print("BACKEND", pa.default_memory_pool().backend_name, udfmem.sample().arrow_backend)
        """
    )
    (snap,) = parse_events(proc.stderr, "udfmem.snapshot")
    assert snap["arrow_live_mb"] == pytest.approx(64, abs=1)
    assert snap["gap_mb"] == pytest.approx(snap["rss_mb"] - snap["arrow_live_mb"], abs=0.11)
    _, from_pyarrow, from_udfmem = proc.stdout.split()
    assert from_pyarrow == from_udfmem


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    """A real cgroup-v1 memory cgroup limited to 512 MiB (needs root and a writable hierarchy)."""
    root = Path("/sys/fs/cgroup/memory")
    if not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup-v1 memory hierarchy here")
    group = root / f"udfmem-test-{os.getpid()}"
    group.mkdir()
    try:
        (group / "memory.limit_in_bytes").write_text(str(512 * MIB))
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (root / "cgroup.procs").write_text(pid)
        group.rmdir()


def test_cgroup_limit_and_headroom(memory_cgroup: Path) -> None:
    """In a 512 MiB memory cgroup, limit_mb is 512 and headroom_mb shrinks by what the process holds."""
    proc = run_python(
        f"""
        import os, json, udfmem
        with open("{memory_cgroup}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
        before = udfmem.sample()
        block = bytearray(b"\\x01") * (100 * 1024 * 1024)
        after = udfmem.sample()
        print(json.dumps([before.limit_mb, before.headroom_mb, after.headroom_mb]))
        """
    )
    limit, headroom_before, headroom_after = json.loads(proc.stdout)
    assert 512.0 == limit
    assert headroom_before - headroom_after == pytest.approx(100, abs=10)


@pytest.mark.parametrize(("max_text", "expected"), [("536870912\n", 512 * MIB), ("max\n", None)])
def test_cgroup_v2_files_are_found_and_read(tmp_path: Path, max_text: str, expected: int | None) -> None:
    """A cgroup v2 hierarchy: memory.max of the process's own group, 'max' meaning no limit.

    Simulated with a directory tree: this machine has no cgroup v2 memory controller.
    """
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    group = tmp_path / "fs" / "user.slice" / "job"
    group.mkdir(parents=True)
    (group / "memory.max").write_text(max_text)
    (group / "memory.current").write_text("1024\n")
    limit_file, usage_file = _cgroup.cgroup_files(str(proc), str(tmp_path / "fs"))
    assert (str(group / "memory.max"), str(group / "memory.current")) == (limit_file, usage_file)
    assert expected == _cgroup.read_limit(limit_file)


def test_cgroup_v1_unlimited_reads_as_none() -> None:
    """This machine's own cgroup v1 group is unlimited (~2**63): that reads as no limit."""
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no cgroup v1 memory hierarchy on this machine")
    limit_file, _ = _cgroup.cgroup_files()
    assert limit_file is not None and limit_file.endswith("memory.limit_in_bytes")
    assert _cgroup.read_int(limit_file) is not None
    assert _cgroup.read_limit(limit_file) is None


def test_peak_is_flagged_lifetime_where_reset_is_impossible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc/self/clear_refs (macOS, BSD, locked-down kernels) the peak is flagged lifetime.

    Simulated: the kept clear_refs descriptor is removed, since Linux here always has it.
    """
    p = _probes.probes()
    monkeypatch.setattr(p, "clear_refs", None)
    assert p.reset_peak() is False
    peak, lifetime = p.windows.take(p.windows.open())
    s, _ = _memory.read(p, peak, lifetime, None)
    assert s.peak_is_lifetime is True


def _clear_refs_fds() -> set[int]:
    """The descriptors of this process open on a ``clear_refs`` file now."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").endswith("/clear_refs"):
                found.add(int(name))
        except OSError:  # the listing's own descriptor, closed already
            pass
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux: needs /proc/self/clear_refs")
def test_a_reused_clear_refs_number_never_receives_the_restart(tmp_path: Path) -> None:
    """A user file gets the number of the kept clear_refs descriptor: restarts reopen it, never write there.

    Each restart with a peak to clear checks the kept descriptor first; a window with
    nothing to clear writes nothing at all.
    """
    before = _clear_refs_fds()
    p = _probes.Probes()
    (kept,) = _clear_refs_fds() - before
    user = os.open(tmp_path / "user.csv", os.O_RDWR | os.O_CREAT)
    os.write(user, b"a,b\n1,2\n")
    os.dup2(user, kept)  # the number udfmem kept is the user's file now
    os.close(user)
    try:
        assert p.reset_peak() is True
        wid = p.windows.open()
        for at in range(3):
            p.snapshot_reads(wid, at)
        p.windows.take(wid)
        assert "a,b\n1,2\n" == (tmp_path / "user.csv").read_text()
    finally:
        p.close()
        os.close(kept)


def test_rss_falls_back_to_psutil_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without /proc (macOS, Windows) RSS comes from psutil and agrees with /proc here.

    Simulated: the kept statm descriptor is removed, since Linux here always has /proc.
    psutil is imported first: its import alone adds ~6 MiB, more than 5% of a small process.
    """
    pytest.importorskip("psutil")
    p = _probes.probes()
    from_proc = p.rss()
    monkeypatch.setattr(p, "statm", None)
    from_psutil = p.rss()
    assert from_proc is not None and from_psutil is not None
    assert from_psutil == pytest.approx(from_proc, rel=0.05)


def test_heap_is_unknown_without_mallinfo2(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a libc without mallinfo2 (musl, macOS, glibc < 2.33) the heap fields are None, not an error.

    Simulated: the resolved symbol is removed, since glibc 2.36 here has it.
    """
    p = _probes.probes()
    monkeypatch.setattr(p, "mallinfo2", None)
    s = udfmem.sample()
    assert (None, None, None) == (s.heap_in_use_mb, s.heap_free_mb, s.heap_mmap_mb)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_starts_fresh_and_reads_itself(stderr_events: Reader) -> None:
    """A fork child counts from 1, logs its own pid and reads its own RSS, not the parent's."""

    @tracked(every=2)
    class Udf:
        def __call__(self, mib: int) -> int:
            self.kept = bytearray(b"\x01") * (mib * MIB) if mib else b""
            return mib

    udf = Udf()
    udf(0)
    udf(0)
    parent_rss = udfmem.sample().rss_mb
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its events through the pipe, then leave at once
        try:
            import io

            buf = io.StringIO()
            sys.stderr = buf
            before = udfmem.sample().rss_mb
            udf(0)
            udf(150)
            os.write(write_fd, f"BEFORE {before}\n{buf.getvalue()}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        child_out = f.read()
    os.waitpid(pid, 0)
    (child_snap,) = parse_events(child_out, "udfmem.snapshot")
    assert pid == child_snap["pid"]
    assert 2 == child_snap["call"]
    child_before = float(child_out.split()[1])
    assert child_snap["rss_mb"] - child_before == pytest.approx(150, abs=15)
    assert udfmem.sample().rss_mb - parent_rss < 50  # the 150 MiB were the child's alone
    parent_snaps = stderr_events("udfmem.snapshot")
    assert [(os.getpid(), 2)] == [(s["pid"], s["call"]) for s in parent_snaps]


def test_mapped_file_pages_are_shared_not_growth(tmp_path: Path, stderr_events: Reader) -> None:
    """A 96 MiB mapped file read in a call (a model file, Ray's object store) is shared RSS, not growth."""
    import mmap

    path = tmp_path / "weights.bin"
    with open(path, "wb") as f:  # in small pieces: one 96 MiB buffer would raise glibc's mmap threshold for later tests
        for _ in range(96 * 16):
            f.write(b"\x01" * (64 * 1024))
    kept: list[Any] = []

    @tracked(every=2)
    class Udf:
        def __call__(self, x: int) -> int:
            if x == 1:
                with open(path, "rb") as f:
                    view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                kept.append(view)
                sum(view[i] for i in range(0, len(view), 4096))  # fault every page in
            return x

    udf = Udf()
    udf(0)
    udf(1)
    udf(2)
    udf(3)
    first, second = stderr_events("udfmem.snapshot")
    assert second["rss_shared_mb"] - first["rss_shared_mb"] == pytest.approx(0, abs=8)
    assert first["rss_shared_mb"] >= 96  # the file's pages are resident and shared (file-backed)
    assert first["rss_anon_mb"] + first["rss_shared_mb"] == pytest.approx(first["rss_mb"], abs=0.2)
    assert first["growth_mb"] == pytest.approx(0, abs=8)  # private memory did not grow
    kept[0].close()
