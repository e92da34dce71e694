"""A fragmented glibc heap, and what one udfmem snapshot costs on it.

Run by ``bench_overhead.py`` in a fresh interpreter per heap size (so its main
measurement never shares a heap with this one); also runnable alone:
``python benchmarks/fragment.py --gib 2`` prints one JSON object.

The heap is built the way the issue measured it: 8 threads, each calling glibc
``malloc`` directly (through ctypes, so every buffer lands in that thread's malloc
arena, not in pymalloc or an mmap) for buffers of random size 64-8000 bytes, writing
each one so that it is resident, until the threads together hold ``--gib`` GiB; then
every other buffer is freed. The freed chunks cannot coalesce (their neighbours are
live), so each arena holds ~1/16 of the total as separate free chunks, which is what
``mallinfo2()`` walks under each arena's lock. ``--gib 0`` builds nothing: the small
heap of a plain Python process.

Then, interleaved over ``--snapshots`` rounds: one call of a ``@tracked(every=1,
every_s=0, trim="off")`` UDF (a snapshot; stderr goes to a line-buffered temp file),
and one raw ``mallinfo2()`` call. The snapshot figure is the median snapshot call minus
the median non-snapshot tracked call.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import timeit
from typing import Any

MIB = 1024 * 1024
THREADS = 8
MIN_SIZE, MAX_SIZE = 64, 8000


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33)."""

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


def libc_functions() -> tuple[Any, Any, Any]:
    """glibc's ``malloc``, ``free`` and ``mallinfo2`` from this process's own symbols."""
    libc = ctypes.CDLL(None)
    malloc, free, mallinfo2 = libc.malloc, libc.free, libc.mallinfo2
    malloc.restype, malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    free.restype, free.argtypes = None, [ctypes.c_void_p]
    mallinfo2.restype, mallinfo2.argtypes = MallInfo2, []
    return malloc, free, mallinfo2


def build_fragmented_heap(gib: float, seed: int = 0) -> list[int]:
    """Fill ``gib`` GiB from 8 threads, then free every other buffer; the kept addresses."""
    malloc, free, _ = libc_functions()
    memset = ctypes.memset
    per_thread = int(gib * 1024 * MIB) // THREADS
    kept: list[list[int]] = [[] for _ in range(THREADS)]
    failed: list[BaseException] = []

    def fill(index: int) -> None:
        try:
            rng = random.Random(seed * 1000 + index)
            ptrs: list[int] = []
            total = 0
            while total < per_thread:
                size = rng.randint(MIN_SIZE, MAX_SIZE)
                p = malloc(size)
                if not p:
                    raise MemoryError(f"malloc({size}) failed after {total / MIB:.0f} MiB")
                memset(p, 0x5A, size)
                ptrs.append(p)
                total += size
            for p in ptrs[1::2]:
                free(p)
            kept[index] = ptrs[::2]
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=fill, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    return [p for ptrs in kept for p in ptrs]


def rss_bytes() -> int:
    """Current RSS from ``/proc/self/statm``."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(gib: float, snapshots: int) -> dict[str, Any]:
    """Build the heap, then time udfmem snapshots and raw ``mallinfo2()`` calls on it."""
    from udfmem import tracked

    @tracked(every=1, every_s=0, trim="off")
    class Snapshotting:
        def __call__(self, x: int) -> int:
            return x

    @tracked(every=1 << 62, every_s=0, trim="off")
    class Tracked:
        def __call__(self, x: int) -> int:
            return x

    _, _, mallinfo2 = libc_functions()
    t0 = time.perf_counter()
    kept = build_fragmented_heap(gib) if gib > 0 else []
    build_s = time.perf_counter() - t0
    info = mallinfo2()
    result: dict[str, Any] = {
        "gib": gib,
        "build_s": round(build_s, 2),
        "buffers_kept": len(kept),
        "rss_mb": round(rss_bytes() / MIB, 1),
        "heap_in_use_mb": round((info.uordblks + info.hblkhd) / MIB, 1),
        "heap_free_mb": round(info.fordblks / MIB, 1),
        "free_chunks": info.ordblks + info.smblks,
    }
    snap_ns: list[float] = []
    mallinfo2_ns: list[float] = []
    real_stderr = sys.stderr
    with tempfile.TemporaryFile("w", buffering=1) as sink:  # line-buffered, like a worker's stderr
        sys.stderr = sink
        try:
            snap, plain = Snapshotting(), Tracked()
            snap(0)  # bind udfmem's per-process state
            plain(0)
            tracked_ns = min(timeit.repeat(lambda: plain(1), number=20_000, repeat=5)) / 20_000 * 1e9
            for i in range(snapshots):  # not interleaved with raw mallinfo2(): its walk leaves the caches cold
                t = time.perf_counter_ns()
                snap(i)
                snap_ns.append(time.perf_counter_ns() - t)
            for _ in range(min(snapshots, 5)):
                t = time.perf_counter_ns()
                mallinfo2()
                mallinfo2_ns.append(time.perf_counter_ns() - t)
        finally:
            sys.stderr = real_stderr
    result["tracked_ns"] = round(tracked_ns, 1)
    result["snapshot_us"] = round((statistics.median(snap_ns) - tracked_ns) / 1000, 2)
    result["snapshot_max_us"] = round((max(snap_ns) - tracked_ns) / 1000, 2)
    result["mallinfo2_us"] = round(statistics.median(mallinfo2_ns) / 1000, 2)
    return result


def main() -> int:
    """Measure one heap size and print one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=2.0, help="heap to build, GiB (0: none)")
    parser.add_argument("--snapshots", type=int, default=21)
    args = parser.parse_args()
    print(json.dumps(measure(args.gib, args.snapshots)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
