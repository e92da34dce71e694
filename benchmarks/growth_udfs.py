"""UDF classes for ``bench_testing.py`` and ``tests/test_testing.py``: four leak shapes at 64 KiB per call, four clean.

Each call also waits ~1 ms (the UDF's "work"), so a check's cost is measured against a
realistic loop. Module-level classes: importable, and picklable by reference.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

KIB = 1024
MIB = 1024 * KIB
WORK_S = 0.001
KEEP: list[Any] = []


class Cache:
    """Leak: a dict cache on self, 64 KiB per call."""

    def __init__(self) -> None:
        self.cache: dict[int, bytearray] = {}

    def __call__(self, i: int) -> int:
        """One batch."""
        time.sleep(WORK_S)
        self.cache[i] = bytearray(b"x") * (64 * KIB)
        return i


class KeptBatches:
    """Leak: every batch kept in a list on self."""

    def __init__(self) -> None:
        self.batches: list[bytearray] = []

    def __call__(self, i: int) -> int:
        """One batch."""
        time.sleep(WORK_S)
        self.batches.append(bytearray(b"x") * (64 * KIB))
        return i


class Closures:
    """Leak: closures over each batch in self.callbacks."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def __call__(self, i: int) -> int:
        """One batch."""
        time.sleep(WORK_S)
        batch = bytearray(b"x") * (64 * KIB)
        self.callbacks.append(lambda: len(batch))
        return i


class ArrowKept:
    """Leak: 64 KiB of Arrow arrays kept per call."""

    def __init__(self) -> None:
        self.batches: list[Any] = []

    def __call__(self, i: int) -> int:
        """One batch."""
        import pyarrow as pa

        time.sleep(WORK_S)
        self.batches.append(pa.array(range(8 * KIB), type=pa.int64()))
        return i


class Noisy:
    """Clean: 0-20 MiB of scratch per call, freed."""

    def __call__(self, i: int) -> int:
        """One batch."""
        time.sleep(WORK_S)
        scratch = bytearray(b"x") * random.randint(0, 20 * MIB)
        return len(scratch)


class Churn:
    """Clean: 4 threads allocate 2 MiB each in small buffers and free them (allocator retention)."""

    def __call__(self, i: int) -> int:
        """One batch."""
        time.sleep(WORK_S)
        made: list[list[bytearray]] = [[] for _ in range(4)]

        def work(t: int) -> None:
            rnd = random.Random(i * 4 + t)
            while sum(map(len, made[t])) < 2 * MIB:
                made[t].append(bytearray(rnd.randrange(4 * KIB, 120 * KIB)))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(made)


class ArrowChurn:
    """Clean: 4 MiB of Arrow arrays made and dropped per call (the pool keeps the pages)."""

    def __init__(self) -> None:
        import pyarrow as pa

        self.base = pa.array(range(MIB // 8), type=pa.int64())  # 1 MiB, made once

    def __call__(self, i: int) -> int:
        """One batch."""
        import pyarrow.compute as pc

        time.sleep(WORK_S)
        arrays = [pc.multiply(self.base, k) for k in range(2, 6)]  # 4 MiB from Arrow's pool, dropped
        return sum(a.nbytes for a in arrays)


class Bounded:
    """Clean: a cache that fills 40 entries of 256 KiB and stops."""

    def __init__(self) -> None:
        self.cache: dict[int, bytearray] = {}

    def __call__(self, i: int) -> int:
        """One batch."""
        time.sleep(WORK_S)
        if len(self.cache) < 40:
            self.cache[i] = bytearray(b"x") * (256 * KIB)
        return i


LEAKS = (Cache, KeptBatches, Closures, ArrowKept)
CLEAN = (Noisy, Churn, ArrowChurn, Bounded)
