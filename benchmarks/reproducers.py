"""Allocation patterns that leave freed memory resident, for tests and benchmarks.

``thread_churn``: threads allocate many 4-120 KiB buffers (below glibc's mmap threshold,
so they come from per-thread arenas) and the main thread frees them, keeping one in
``keep_every``: the kept buffers pin the arenas' pages, so glibc cannot shrink them on
its own, and the freed memory stays resident until ``malloc_trim``.

``arrow_churn``: Arrow buffers allocated and dropped; Arrow's default pool (mimalloc or
jemalloc) keeps the pages until ``release_unused()``.
"""

from __future__ import annotations

import random
import threading
from typing import Any

MIB = 1024 * 1024


def thread_churn(threads: int = 8, mib_per_thread: int = 64, keep_every: int = 8, seed: int = 0) -> list[bytearray]:
    """Allocate ``threads * mib_per_thread`` MiB from worker threads; return the 1-in-``keep_every`` kept."""
    made: list[list[bytearray]] = [[] for _ in range(threads)]
    together = threading.Barrier(threads)  # all alive at once: each gets its own arena, however fast

    def work(i: int) -> None:
        together.wait()
        rnd = random.Random(seed * 1000 + i)
        out, total = made[i], 0
        while total < mib_per_thread * MIB:
            size = rnd.randrange(4 * 1024, 120 * 1024)
            out.append(bytearray(b"\x01") * size)  # touched: resident
            total += size

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    kept = [buf for bufs in made for j, buf in enumerate(bufs) if j % keep_every == 0]
    made.clear()  # the main thread frees the rest
    return kept


def arrow_churn(mib: int = 512) -> int:
    """Allocate ``mib`` MiB of Arrow buffers (1 MiB each), drop them; return the bytes allocated."""
    import pyarrow as pa

    arrays: list[Any] = [pa.array(range(MIB // 8), type=pa.int64()) for _ in range(mib)]
    total = sum(a.nbytes for a in arrays)
    arrays.clear()
    return total
