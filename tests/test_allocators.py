"""The allocator serving malloc, for real: glibc, and Debian's jemalloc and tcmalloc under ``LD_PRELOAD``.

Each preload test runs a fresh interpreter with ``LD_PRELOAD`` set (``.ci/run`` installs
``libjemalloc2`` and ``libtcmalloc-minimal4``); one is skipped only where its library file
is absent. What cannot happen on this machine (musl, an allocator udfmem does not know,
Python 3.13's mimalloc and free-threaded builds) is simulated, and those tests say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from conftest import parse_events, run_python

from udfmem.probes import allocators as _allocators

LIBDIR = Path("/usr/lib") / (sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu")
PRELOADS = {"jemalloc": LIBDIR / "libjemalloc.so.2", "tcmalloc": LIBDIR / "libtcmalloc_minimal.so.4"}


def preload(name: str) -> dict[str, str]:
    """The environment that preloads allocator ``name``; skips the test where its library file is absent."""
    path = PRELOADS[name]
    if not path.exists():
        pytest.skip(
            f"{path} absent: install Debian's {'libjemalloc2' if name == 'jemalloc' else 'libtcmalloc-minimal4'}"
        )
    return {"LD_PRELOAD": str(path)}


def run_json(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter; the JSON of its last stdout line."""
    return json.loads(run_python(code, env=env).stdout.strip().splitlines()[-1])


BOTH = pytest.mark.parametrize("name", ["jemalloc", "tcmalloc"])

DETECT = """
import json
from udfmem.probes import allocators, process
found = allocators.serving()
p = process.probes()
print(json.dumps({"name": found.name, "path": found.path, "fixed": p.fixed[0], "unreadable": p.unreadable,
                  "release": found.release_name}))
"""


def test_glibc_serves_malloc_here() -> None:
    """Without a preload, glibc serves malloc: named glibc, read by mallinfo2, every heap field readable."""
    out = run_json(DETECT)
    assert ("glibc", "glibc") == (out["name"], out["fixed"])
    assert "libc.so" in out["path"]
    assert {} == {k: v for k, v in out["unreadable"].items() if k.startswith("heap")}


@BOTH
def test_the_preloaded_allocator_is_detected(name: str) -> None:
    """Under LD_PRELOAD the preloaded library serves malloc: named, its own release, no heap field said unreadable.

    heap_mmap_mb is glibc's own figure: absent under another allocator, not a field it fails to read.
    """
    out = run_json(DETECT, preload(name))
    assert (name, name) == (out["name"], out["fixed"])
    assert str(PRELOADS[name].name) in out["path"]
    assert out["release"].startswith(name + " ")
    assert [] == [k for k in out["unreadable"] if k.startswith("heap")]


def test_pyarrows_bundled_jemalloc_is_not_the_process_allocator() -> None:
    """pyarrow bundles jemalloc (local je_arrow_* symbols) and may use it for its pool: malloc is still glibc's."""
    pytest.importorskip("pyarrow")
    out = run_json(
        """
        import json
        import pyarrow as pa
        pool = pa.jemalloc_memory_pool() if hasattr(pa, "jemalloc_memory_pool") else pa.default_memory_pool()
        buf = pa.allocate_buffer(64 << 20, memory_pool=pool)  # its jemalloc is live
        from udfmem.probes import allocators
        print(json.dumps({"name": allocators.serving().name, "pool": pool.backend_name}))
        """
    )
    assert "glibc" == out["name"]


HEAP = """
import ctypes, json
import udfmem
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
before = udfmem.sample()
blocks = [libc.malloc(1 << 20) for _ in range(64)]  # a real 64 MiB malloc leak, never freed
after = udfmem.sample()
print(json.dumps({"before": [before.heap_in_use_mb, before.heap_free_mb, before.heap_mmap_mb],
                  "after": [after.heap_in_use_mb, after.heap_free_mb, after.heap_mmap_mb],
                  "allocator": after.allocator}))
"""


@pytest.mark.parametrize("name", ["glibc", "jemalloc", "tcmalloc"])
def test_heap_in_use_grows_with_a_real_malloc_leak(name: str) -> None:
    """64 MiB malloc'd and kept: heap_in_use_mb grows by ~64 MiB; never 0; mmapped only where glibc has it."""
    out = run_json(HEAP, None if name == "glibc" else preload(name))
    (in0, free0, mmap0), (in1, free1, mmap1) = out["before"], out["after"]
    assert name == out["allocator"]
    assert 60 <= in1 - in0 <= 90
    assert in0 > 0 and free0 is not None and free1 is not None
    assert ((mmap0 is None) and (mmap1 is None)) == (name != "glibc")


TRIM = """
import json
import udfmem
before = udfmem.sample().rss_mb
churn = [bytearray(2000) for _ in range(200_000)]  # ~400 MiB of small malloc'd blocks
del churn
held = udfmem.sample()
result = udfmem.trim()
after = udfmem.sample()
print(json.dumps({"before": before, "held": held.rss_mb, "free_held": held.heap_free_mb,
                  "after": after.rss_mb, "free_after": after.heap_free_mb, "result": result.__dict__}))
"""


@BOTH
def test_trim_releases_what_the_allocator_holds(name: str) -> None:
    """~400 MiB of small blocks freed stay resident in the allocator; trim() gives most of it back its own way."""
    out = run_json(TRIM, preload(name))
    result = out["result"]
    assert out["held"] - out["before"] >= 300  # retention is real under this allocator
    assert out["free_held"] >= 300  # and its freed-but-held figure sees it
    assert (True, name) == (result["supported"], result["allocator"])
    assert result["method"].startswith(name + " ")
    assert result["malloc_released_mb"] >= 0.6 * (out["held"] - out["before"])
    assert out["after"] - out["before"] <= 100
    assert out["free_after"] < 0.2 * out["free_held"]


BENCH = str(Path(__file__).resolve().parent.parent / "benchmarks")


@BOTH
def test_the_auto_policy_trims_the_allocators_retention(name: str) -> None:
    """trim="auto" under the preload: the 512 MiB thread churn's retention is trimmed at a snapshot and when idle."""
    proc = run_python(
        f"""
        import json, sys, time
        sys.path.insert(0, {BENCH!r})
        import udfmem
        from reproducers import thread_churn
        @udfmem.tracked(every=4, trim="auto")
        class Churn:
            def __call__(self, i):
                self.kept = thread_churn(threads=8, mib_per_thread=64, keep_every=8, seed=i)  # ~64 MiB pinned
                return len(self.kept)
        udf = Churn()
        for i in range(8):
            udf(i)
        time.sleep(3.5)  # idle: longer than the policy's idle period
        print(json.dumps({{"idle": udfmem.sample().rss_mb}}))
        """,
        env=preload(name),
    )
    trims = parse_events(proc.stderr, "udfmem.trim")
    assert ["auto", "idle"] == [t["reason"] for t in trims]
    assert all(t["malloc_released_mb"] >= 300 for t in trims)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["idle"] <= 250


GROWTH = """
import json
import udfmem.testing
KIB = {kib}
class Udf:
    def __init__(self):
        self.keep = []
    def __call__(self, x):
        scratch = bytearray(1 << 20)  # freed every call: must not count
        if KIB:
            self.keep.append(bytearray(KIB * 1024))
        return len(scratch)
report = udfmem.testing.check_growth(Udf, range(10))
print(json.dumps({{"passed": report.passed("64 KB"), "pattern": report.pattern, "per_call_kib": report.per_call_kib,
                  "note": report.note, "reason": report.reason()}}))
"""


@pytest.mark.parametrize("kib", [0, 64, 256])
@pytest.mark.parametrize("name", ["glibc", "jemalloc", "tcmalloc"])
def test_check_growth_under_each_allocator(name: str, kib: int) -> None:
    """check_growth fails a 64 and a 256 KiB/call leak, and passes a healthy UDF, under each allocator."""
    out = run_json(GROWTH.format(kib=kib), None if name == "glibc" else preload(name))
    assert out["note"] is None  # every figure is read under these three
    if kib:
        assert (False, "heap-leak") == (out["passed"], out["pattern"]), out["reason"]
        assert kib <= out["per_call_kib"] <= 1.3 * kib  # the allocator's size classes round up (jemalloc: 80 for 64)
    else:
        assert (True, "healthy") == (out["passed"], out["pattern"]), out["reason"]


@BOTH
def test_the_demo_names_the_leak_heap_leak(name: str) -> None:
    """``udfmem demo`` under the preload: the leaky UDF is heap-leak (not untracked-growth), the healthy one healthy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")} | preload(name)
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "demo"], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert 0 == proc.returncode, proc.stderr[-3000:]
    summary = {line.split(":")[0]: line.split(":")[1].split()[0] for line in proc.stdout.splitlines() if ": " in line}
    assert ("healthy", "heap-leak") == (summary.get("HealthyEmbed"), summary.get("LeakyEmbed")), proc.stdout
    snapshots = parse_events(proc.stderr, "udfmem.snapshot")
    assert {name} == {e.get("allocator") for e in snapshots}


@BOTH
def test_snapshot_lines_name_the_allocator_and_leave_mmap_out(name: str) -> None:
    """A tracked UDF's snapshots carry allocator=NAME and its heap figures; heap_mmap_mb (glibc's) is left out."""
    proc = run_python(
        """
        import udfmem
        @udfmem.tracked(every=4)
        class Udf:
            def __call__(self, x):
                return x
        for i in range(8):
            Udf()(i)
        """,
        env=preload(name),
    )
    snapshots = parse_events(proc.stderr, "udfmem.snapshot", finals=False)
    assert snapshots
    assert [(name, False)] * len(snapshots) == [(e["allocator"], "heap_mmap_mb" in e) for e in snapshots]
    assert all(e["heap_in_use_mb"] > 0 and "heap_free_mb" in e for e in snapshots if "heap_in_use_mb" in e)


def test_pythonmalloc_malloc_leaves_py_blocks_out() -> None:
    """PYTHONMALLOC=malloc: sys.getallocatedblocks() reads 0, so py_blocks is left out (never 0) and the reason kept."""
    proc = run_python(
        """
        import json, sys, udfmem
        from udfmem.probes import process
        @udfmem.tracked(every=2)
        class Udf:
            def __call__(self, x):
                return x
        for i in range(4):
            Udf()(i)
        print(json.dumps({"blocks": sys.getallocatedblocks(), "sample": udfmem.sample().py_blocks,
                          "why": process.probes().unreadable.get("py_blocks")}))
        """,
        env={"PYTHONMALLOC": "malloc"},
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (0, None) == (out["blocks"], out["sample"])
    assert "PYTHONMALLOC=malloc" in out["why"]
    snapshots = parse_events(proc.stderr, "udfmem.snapshot")
    assert snapshots
    assert [] == [e for e in snapshots if "py_blocks" in e]
    said = [e["message"] for e in parse_events(proc.stderr, "udfmem.warning") if e["what"] == "not-read"]
    assert 1 == len(said) and said[0].startswith("py_blocks (PYTHONMALLOC=malloc")  # once: no setup phase here


MUSL = """
import json
from udfmem.probes import allocators, process
allocators.use(allocators.Allocator("musl", "/lib/ld-musl-x86_64.so.1",
                                    unreadable="musl: malloc keeps no readable figures",
                                    no_release="musl: no malloc_trim"))
process.forget()
"""


def test_an_unreadable_allocator_leaves_the_heap_fields_out() -> None:
    """Where no heap figure can be read: the fields are left out (never 0), allocator=musl, and trim says why.

    Simulated: musl is taken as the allocator serving malloc (``allocators.use``), since this
    machine's is glibc; everything else (the sample, the snapshot lines, the trim) is real.
    """
    proc = run_python(
        MUSL
        + """
import udfmem
@udfmem.tracked(every=2)
class Udf:
    def __call__(self, x):
        return x
for i in range(4):
    Udf()(i)
s = udfmem.sample()
r = udfmem.trim()
print(json.dumps({"heap": [s.heap_in_use_mb, s.heap_free_mb, s.heap_mmap_mb], "allocator": s.allocator,
                  "unreadable": process.probes().unreadable, "trim": [r.supported, r.reason, r.method]}))
"""
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ([None, None, None], "musl") == (out["heap"], out["allocator"])
    assert "musl: malloc keeps no readable figures" == out["unreadable"]["heap_in_use_mb"]
    assert [False, "musl: no malloc_trim; pyarrow not imported", None] == out["trim"]
    snapshots = parse_events(proc.stderr, "udfmem.snapshot")
    assert snapshots
    assert [] == [e for e in snapshots if any(k.startswith("heap_") for k in e)]
    assert {"musl"} == {e["allocator"] for e in snapshots}
    said = [e["message"] for e in parse_events(proc.stderr, "udfmem.warning") if e["what"] == "not-read"]
    assert 1 == len(said) and "heap_free_mb" in said[0] and "musl: malloc keeps no readable figures" in said[0]


@pytest.mark.parametrize("kib", [0, 64])
def test_check_growth_without_heap_figures_judges_by_rss_and_says_so(kib: int) -> None:
    """No heap figure: check_growth judges by private RSS and Python blocks, says so, and still fails 64 KiB/call.

    Simulated: musl is taken as the allocator (``allocators.use``); the RSS it judges is real.
    """
    out = run_json(MUSL + GROWTH.format(kib=kib).replace("import json\n", "", 1))
    assert "judged by private RSS and Python blocks" in out["note"]
    assert ("healthy" if not kib else "heap-leak") == out["pattern"], out["reason"]
    if kib:
        assert kib <= out["per_call_kib"] <= 1.3 * kib


def test_classify_other_allocators() -> None:
    """musl, a preloaded mimalloc and an unknown library are named as such from the symbols of malloc's object.

    Simulated: the symbol tables are stand-ins (no musl or mimalloc here); glibc's is this machine's.
    """

    def defines(*symbols: str) -> Any:
        return lambda symbol: symbol in symbols

    assert ["musl", "mimalloc", "unknown", "jemalloc", "tcmalloc", "glibc"] == [
        _allocators.classify("/lib/ld-musl-x86_64.so.1", defines()),
        _allocators.classify("/usr/lib/libmimalloc.so.2", defines("mi_malloc", "gnu_get_libc_version")),
        _allocators.classify("/opt/lib/libhoard.so", defines()),
        _allocators.classify("/x/libjemalloc.so.2", defines("mallctl", "gnu_get_libc_version")),
        _allocators.classify("/x/libtcmalloc.so.4", defines("MallocExtension_GetNumericProperty")),
        _allocators.classify("/lib/x86_64-linux-gnu/libc.so.6", defines("gnu_get_libc_version")),
    ]


@pytest.mark.parametrize(("platform", "name"), [("darwin", "macos"), ("win32", "windows")])
def test_other_platforms_name_their_system_allocator(monkeypatch: pytest.MonkeyPatch, platform: str, name: str) -> None:
    """macOS and Windows: the system allocator is named, nothing is read (the heap fields are left out), and why.

    Simulated: the platform name is replaced (this machine is Linux).
    """
    monkeypatch.setattr(sys, "platform", platform)
    found = _allocators.detect()
    assert (name, None) == (found.name, found.read)
    assert found.unreadable is not None


def test_python_objects_here_are_pymalloc() -> None:
    """This interpreter (3.11, default build, no PYTHONMALLOC): pymalloc, and py_blocks is measured."""
    assert _allocators.PythonObjects("pymalloc", False, None) == _allocators.python_objects(pythonmalloc=None)


@pytest.mark.parametrize(
    ("version", "free_threaded", "pythonmalloc", "allocator", "says"),
    [
        ((3, 13), True, None, "mimalloc", "free-threaded build"),
        ((3, 14), True, "pymalloc", "mimalloc", "free-threaded build"),  # free-threaded ignores it: always mimalloc
        ((3, 13), False, "mimalloc", "mimalloc", "counts only the calling thread"),
        ((3, 13), False, "mimalloc_debug", "mimalloc", "counts only the calling thread"),
        ((3, 13), False, "malloc", "malloc", "reads 0"),
        ((3, 13), False, None, "pymalloc", None),
    ],
)
def test_python_objects_on_newer_pythons(
    version: tuple[int, int], free_threaded: bool, pythonmalloc: str | None, allocator: str, says: str | None
) -> None:
    """Python 3.13+ with mimalloc or free-threaded: py_blocks is said not measured, and why.

    Simulated: the version, the build flag and PYTHONMALLOC are passed in (this machine runs
    3.11 only); the block count is this interpreter's.
    """
    found = _allocators.python_objects(version, free_threaded, pythonmalloc)
    assert (allocator, free_threaded) == (found.allocator, found.free_threaded)
    if says is None:
        assert found.blocks_unreadable is None
    else:
        assert found.blocks_unreadable is not None and says in found.blocks_unreadable


def test_a_zero_block_count_is_not_measured() -> None:
    """A build without pymalloc counts 0 blocks: py_blocks is left out rather than read as 0.

    Simulated: the count is a stand-in returning 0 (``PYTHONMALLOC=malloc`` is the real case, tested above).
    """
    found = _allocators.python_objects((3, 11), False, None, blocks=lambda: 0)
    assert "malloc" == found.allocator
    assert found.blocks_unreadable is not None and "sys.getallocatedblocks() reads 0" in found.blocks_unreadable


def test_detection_is_once_per_process() -> None:
    """serving() returns the same object every time in a process: found once, not per snapshot."""
    assert _allocators.serving() is _allocators.serving()
