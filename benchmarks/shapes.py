"""The workload shapes of the diagnose corpus, their truths, and the online replay: one module for tests and benchmarks.

Each :class:`Scenario` is a UDF class maker (the class as a user writes it, without
udfmem: the runner decorates it), the engine that runs it, its settings and its truth.
``tests/engines/diagnose_scenarios.py`` runs them on real engines (Ray Data, plain Ray
actors, Daft) and writes their logs to ``tests/data/diagnose/``;
``benchmarks/diagnose_confusion.py`` and ``tests/test_diagnose_corpus.py`` read those logs
back through :func:`expected`, :func:`replay` and :func:`online_misses`.

The truth of a scenario (``EXPECTED.json``) is the pattern every worker of it should get
offline (``truth``; an entry may be a bare string, the older form), and, for the online
detector, where that truth starts (``onset_call``: a leak that starts late) or where a
growth that is no problem stops (``saturates_call``: a bounded cache, a warm-up table).
The online targets (:func:`online_misses`), from the issue: a problem is announced with
its right pattern before a third of the run since it started, once (no flip, no repeat);
a healthy run gets no event at all; growth that saturates is, if announced at all,
withdrawn before a third of the run after it stopped, and the last word is ``healthy``.

Makers run inside engine workers: Ray sends this module by value
(``ray.cloudpickle.register_pickle_by_value``), so it imports only numpy and the
standard library at the top (and ``reproducers``, sent the same way).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import gzip
import json
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproducers

KIB = 1024
MIB = 1024 * KIB
EVERY = 8  # Ray Data scenarios: a snapshot every 8 calls per actor
CALLS = 830  # Ray Data batches in all: ~415 per actor, no multiple of EVERY (final snapshots)
ROWS_PER_BATCH = 2
CALLS_PER_BLOCK = 10  # batches per Ray Data block (one actor task each)
PACE_S = 0.01  # each Ray Data call also waits this long ("I/O"): the two actors share the calls about evenly
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "diagnose"
Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One shape: the UDF class maker, its engine and settings, and its truth (module docstring).

    ``engine`` is ``ray-data`` (``map_batches``, two actors), ``ray-actor`` (two plain Ray
    actors, ``calls`` each through ``method``), ``geneva`` (a backfilled column) or
    ``daft`` (Daft's native runner, ``calls`` rows). ``data`` is what Ray Data reads:
    ``range`` (an int64 ``id``) or ``tensor`` (``row_kib`` KiB of int64 per row,
    ``ray.data.range_tensor``). ``busy`` busy-loop processes run beside it (a loaded machine).
    """

    name: str
    truth: str
    make: Callable[[], type]
    engine: str = "ray-data"
    trim: str = "auto"
    every: int = EVERY
    calls: int = CALLS
    batch_format: str = "numpy"
    data: str = "range"
    row_kib: int = 0
    method: str = "__call__"
    max_concurrency: int = 1
    onset_call: int | None = None
    saturates_call: int | None = None
    busy: int = 0

    def entry(self) -> dict[str, Any] | str:
        """This scenario's ``EXPECTED.json`` entry: the bare truth, or the truth with what the online targets need."""
        extra = {"onset_call": self.onset_call, "saturates_call": self.saturates_call}
        extra = {k: v for k, v in extra.items() if v is not None}
        if self.engine == "ray-data" and not extra and self.name in ORIGINAL:
            return self.truth
        return {"truth": self.truth, "engine": self.engine, **extra}


SCENARIOS: dict[str, Scenario] = {}
ORIGINAL = frozenset(
    {
        "healthy",
        "healthy-noisy",
        "heap-leak-cache",
        "heap-leak-small-objects",
        "heap-leak-closures",
        "heap-leak-model-state",
        "arrow-leak",
        "untracked-growth",
        "allocator-retention",
        "churn-trim-auto",
        "peak-too-big",
        "slow-leak-in-noise",
    }
)
"""The first twelve scenarios (Ray Data, numpy): their entries stay bare strings."""


def scenario(name: str, truth: str, **settings: Any) -> Callable[[Callable[[], type]], Callable[[], type]]:
    """Register the decorated maker (it returns the scenario's UDF class, undecorated) as ``name``."""

    def register(make: Callable[[], type]) -> Callable[[], type]:
        SCENARIOS[name] = Scenario(name, truth, make, **settings)
        return make

    return register


def touched(nbytes: int) -> np.ndarray:
    """A fresh ``nbytes`` uint8 array whose every page is written (resident)."""
    buf = np.empty(nbytes, dtype=np.uint8)
    buf.fill(1)
    return buf


def ids(batch: Any) -> np.ndarray:
    """The batch's row count as an array of its length, whatever the batch format (numpy, pandas, pyarrow)."""
    return np.zeros(len(batch) if not isinstance(batch, dict) else len(next(iter(batch.values()))), dtype=np.int64)


# --- Ray Data: the first twelve (numpy batches of two int64 ids) -----------------------------


@scenario("healthy", "healthy")
def healthy() -> type:
    """A 200 MiB model loaded once, per-call compute with freed temporaries. True pattern: healthy."""

    class EmbedScorer:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.weights = rng.standard_normal((51200, 1024), dtype=np.float32)  # 200 MiB
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            x = self.rng.standard_normal((16, 1024), dtype=np.float32)
            rows = self.rng.integers(0, len(self.weights), 2048)
            scores = x @ self.weights[rows].T
            return {"id": batch["id"], "score": np.full(len(batch["id"]), float(scores.max()))}

    return EmbedScorer


@scenario("healthy-noisy", "healthy")
def healthy_noisy() -> type:
    """Random 0-200 MiB transients, touched and freed, nothing kept. True pattern: healthy."""

    class NoisyDecoder:
        def __init__(self) -> None:
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            scratch = touched(int(self.rng.integers(0, 200 * MIB)))
            checksum = int(scratch[:: 4 * KIB].sum())
            del scratch
            return {"id": batch["id"], "checksum": np.full(len(batch["id"]), checksum)}

    return NoisyDecoder


@scenario("heap-leak-cache", "heap-leak")
def heap_leak_cache() -> type:
    """A never-hitting cache of 256 KiB malloc'd bytes per call on ``self``. True pattern: heap-leak."""

    class CachingEnricher:
        def __init__(self) -> None:
            self.cache: dict[str, bytes] = {}
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            key = f"request-{int(batch['id'][0])}-{len(self.cache)}"
            if key not in self.cache:
                self.cache[key] = self.rng.bytes(256 * KIB)  # the "response"
            return {"id": batch["id"], "size": np.full(len(batch["id"]), len(self.cache[key]))}

    return CachingEnricher


@scenario("heap-leak-small-objects", "heap-leak")
def heap_leak_small_objects() -> type:
    """20,000 small strings per call kept (pymalloc's arenas, not malloc's counters). True pattern: heap-leak."""

    class TokenCollector:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            first = int(batch["id"][0])
            self.seen.extend([f"token-{first:08d}-{j:06d}-seen" for j in range(20000)])
            return {"id": batch["id"], "seen": np.full(len(batch["id"]), len(self.seen))}

    return TokenCollector


@scenario("heap-leak-closures", "heap-leak")
def heap_leak_closures() -> type:
    """Closures over 256 KiB per-batch arrays kept in ``self.callbacks``. True pattern: heap-leak."""

    class FeatureExtractor:
        def __init__(self) -> None:
            self.callbacks: list[Callable[[], float]] = []

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            ids = batch["id"].astype(np.float64)
            features = np.repeat(ids, (32 * KIB) // len(ids)) * 0.5 + np.arange((32 * KIB) // len(ids) * len(ids))

            def report() -> float:
                return float(features.mean())

            self.callbacks.append(report)
            return {"id": batch["id"], "f0": features[: len(ids)]}

    return FeatureExtractor


@scenario("heap-leak-model-state", "heap-leak")
def heap_leak_model_state() -> type:
    """A history of 256 KiB embeddings per call, never trimmed. True pattern: heap-leak."""

    class RunningNormEmbedder:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.projection = rng.standard_normal((256, 1024), dtype=np.float32)
            self.history: list[np.ndarray] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            x = self.rng.standard_normal((64, 256), dtype=np.float32)
            emb = x @ self.projection  # 64 x 1024 float32: 256 KiB
            self.history.append(emb)
            mean = float(np.mean([h[0, 0] for h in self.history[-16:]]))
            return {"id": batch["id"], "norm": np.full(len(batch["id"]), mean)}

    return RunningNormEmbedder


def _arrow_scaler(kib: int) -> type:
    """Each call a new ``kib`` KiB float64 column from ``pyarrow.compute`` (Arrow's pool), kept on ``self``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    class ArrowScaler:
        def __init__(self) -> None:
            self.kept: list[Any] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Any) -> Any:
            time.sleep(PACE_S)
            values = pa.array(self.rng.random(kib * KIB // 8))  # zero-copy over numpy
            scaled = pc.multiply(values, 2.0)  # a new buffer from Arrow's pool
            self.kept.append(scaled)
            return batch

    return ArrowScaler


@scenario("arrow-leak", "arrow-leak", batch_format="pyarrow")
def arrow_leak() -> type:
    """A 256 KiB ``pyarrow.compute`` column per call (Arrow's pool) kept on ``self``. True pattern: arrow-leak."""
    return _arrow_scaler(256)


@scenario("arrow-leak-64k", "arrow-leak", batch_format="pyarrow")
def arrow_leak_64k() -> type:
    """The same at 64 KiB per call (~26 MiB per actor). Truth: arrow-leak."""
    return _arrow_scaler(64)


def _scratch_mapper(kib: int) -> type:
    """Each call a private anonymous ``kib`` KiB ``mmap``, written and kept on ``self``: neither malloc nor Arrow."""

    class ScratchMapper:
        def __init__(self) -> None:
            self.regions: list[mmap.mmap] = []

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            region = mmap.mmap(-1, kib * KIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # default: MAP_SHARED
            region.write(b"\x01" * (kib * KIB))
            self.regions.append(region)
            return {"id": batch["id"], "regions": np.full(len(batch["id"]), len(self.regions))}

    return ScratchMapper


@scenario("untracked-growth", "untracked-growth")
def untracked_growth() -> type:
    """A private anonymous 256 KiB ``mmap`` per call kept: neither malloc nor Arrow. True pattern: untracked-growth."""
    return _scratch_mapper(256)


@scenario("untracked-growth-64k", "untracked-growth")
def untracked_growth_64k() -> type:
    """The same at 64 KiB per call (~26 MiB per actor). Truth: untracked-growth."""
    return _scratch_mapper(64)


def _churn_udf() -> type:
    """320 MiB through 8 threads every 3rd call, 1 in 8 kept until the next churn."""

    class ParallelTokenizer:
        def __init__(self) -> None:
            self.kept: list[bytearray] = []
            self.calls = 0

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            if self.calls % 3 == 1:  # a text-heavy batch; the calls between reuse what it left
                self.kept = reproducers.thread_churn(threads=8, mib_per_thread=40, keep_every=8, seed=self.calls)
            return {"id": batch["id"], "kept": np.full(len(batch["id"]), len(self.kept))}

    return ParallelTokenizer


@scenario("allocator-retention", "allocator-retention", trim="off")
def allocator_retention() -> type:
    """Multi-threaded malloc churn, no trimming. True pattern: allocator-retention."""
    return _churn_udf()


@scenario("churn-trim-auto", "healthy", trim="auto")
def churn_trim_auto() -> type:
    """The same churn with udfmem's automatic trimming. True pattern: healthy."""
    return _churn_udf()


@scenario("peak-too-big", "peak-too-big")
def peak_too_big() -> type:
    """A 1.2 GiB transient every 6th call, freed before returning. True pattern: peak-too-big."""

    class WholeFileDecoder:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            total = 0.0
            if self.calls % 6 == 1:
                decoded = np.empty(int(1.2 * 1024 * MIB) // 8)
                decoded.fill(1.0)
                total = float(decoded[:: 4 * KIB].sum())
                del decoded
            return {"id": batch["id"], "total": np.full(len(batch["id"]), total)}

    return WholeFileDecoder


@scenario("slow-leak-in-noise", "heap-leak")
def slow_leak_in_noise() -> type:
    """64 KiB kept per call under 0-100 MiB transient noise. True pattern: heap-leak."""

    class AuditLogger:
        def __init__(self) -> None:
            self.audit: list[bytes] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.audit.append(self.rng.bytes(64 * KIB))
            scratch = touched(int(self.rng.integers(0, 100 * MIB)))
            checksum = int(scratch[:: 4 * KIB].sum())
            del scratch
            return {"id": batch["id"], "checksum": np.full(len(batch["id"]), checksum)}

    return AuditLogger


# --- Ray Data: batch formats, object-store batches -----------------------------------------


def checksum(batch: Any) -> int:
    """A checksum over one byte per 4 KiB page of the batch's data (every page read), whatever its format."""
    if isinstance(batch, dict):  # numpy
        arrays = [np.ascontiguousarray(v).view(np.uint8).reshape(-1) for v in batch.values()]
    elif hasattr(batch, "columns") and hasattr(batch, "iloc"):  # pandas: a column of per-row arrays
        arrays = [np.asarray(v).view(np.uint8).reshape(-1) for col in batch.columns for v in batch[col]]
    else:  # pyarrow: the buffers themselves (zero-copy)
        arrays = [
            np.frombuffer(buf, dtype=np.uint8)
            for column in batch.columns
            for chunk in column.chunks
            for buf in (chunk.storage if hasattr(chunk, "storage") else chunk).buffers()
            if buf is not None
        ]
    return int(sum(int(a[::4096].sum()) for a in arrays))


def _keep_batches() -> type:
    """Every batch, as the engine handed it, read (:func:`checksum`) and appended to ``self.kept``."""

    class BatchKeeper:
        def __init__(self) -> None:
            self.kept: list[Any] = []
            self.total = 0

        def __call__(self, batch: Any) -> Any:
            time.sleep(PACE_S)
            self.total += checksum(batch)
            self.kept.append(batch)
            return {"n": ids(batch)}

    return BatchKeeper


def _pass_batches() -> type:
    """Every batch read (:func:`checksum`) and dropped."""

    class BatchReader:
        def __init__(self) -> None:
            self.total = 0

        def __call__(self, batch: Any) -> Any:
            time.sleep(PACE_S)
            self.total += checksum(batch)
            return {"n": ids(batch)}

    return BatchReader


@scenario("pyarrow-kept-batches", "arrow-leak", batch_format="pyarrow", data="tensor", row_kib=128)
def pyarrow_kept_batches() -> type:
    """``batch_format="pyarrow"`` batches (zero-copy over Ray's object store) appended to ``self``.

    True pattern: arrow-leak (issue 19, item 3). Each batch is two 128 KiB rows of a
    ``range_tensor`` block (ten batches a block): what the actor keeps pins whole blocks
    of the object store, so the growth is in shared pages, one step per block.
    """
    return _keep_batches()


@scenario("pyarrow-healthy", "healthy", batch_format="pyarrow", data="tensor", row_kib=128)
def pyarrow_healthy() -> type:
    """The same object-store batches read and dropped. True pattern: healthy."""
    return _pass_batches()


@scenario("pandas-kept-batches", "arrow-leak", batch_format="pandas", data="tensor", row_kib=128)
def pandas_kept_batches() -> type:
    """``batch_format="pandas"`` batches appended to ``self``. Truth: arrow-leak (as ``pyarrow-kept-batches``).

    The tensor column's pandas batches are zero-copy too (Ray's ``TensorArray`` over the
    block's Arrow buffer): the recorded run shows shared pages +97-110 MiB, private RSS,
    malloc and ``arrow_live_mb`` flat, the same as the pyarrow format's.
    """
    return _keep_batches()


@scenario("pandas-healthy", "healthy", batch_format="pandas", data="tensor", row_kib=128)
def pandas_healthy() -> type:
    """The same pandas batches read and dropped. True pattern: healthy."""
    return _pass_batches()


@scenario("numpy-kept-features", "heap-leak", data="tensor", row_kib=128)
def numpy_kept_features() -> type:
    """Per-batch features (a normalised float32 copy of the batch, 128 KiB) kept on ``self``. Truth: heap-leak."""

    class FeatureCache:
        def __init__(self) -> None:
            self.features: list[np.ndarray] = []

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            data = batch["data"]
            self.features.append((data / max(1, int(data.max()))).astype(np.float32))
            return {"n": ids(batch)}

    return FeatureCache


# --- Ray Data: onsets, early peaks, retention, saturation, trims, rates, threads ---------------

LATE_CALLS = 1210  # ~605 calls per actor
LATE_ONSET = 400  # per actor


@scenario("late-onset", "heap-leak", calls=LATE_CALLS, onset_call=LATE_ONSET)
def late_onset() -> type:
    """A drift monitor: after a 400-call reference window each call's 256 KiB embeddings are kept.

    True pattern: heap-leak from call 400 of ~605 per actor (issue 19, item 4).
    """

    class DriftMonitor:
        def __init__(self) -> None:
            self.calls = 0
            self.reference: list[np.ndarray] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            emb = self.rng.standard_normal((64, 512), dtype=np.float64)  # 256 KiB
            if self.calls > LATE_ONSET:  # past the reference window: kept "for the drift report"
                self.reference.append(emb)
            return {"id": batch["id"], "drift": np.full(len(batch["id"]), float(emb[0, 0]))}

    return DriftMonitor


EARLY_PEAK_CALLS = 32
EARLY_PEAK_MIB = 1300


@scenario("early-peaks", "peak-too-big")
def early_peaks() -> type:
    """A layout model that calibrates on its first 32 calls with ~1.3 GiB transients, then runs small.

    True pattern: peak-too-big (issue 19, item 5; 1.3 GiB rather than 1.4: two actors at
    once stay under ~3 GiB). Every 2nd of the first 32 calls fills and frees the transient.
    """

    class LayoutCalibrator:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            total = 0.0
            if self.calls <= EARLY_PEAK_CALLS and self.calls % 2 == 1:
                scratch = touched(EARLY_PEAK_MIB * MIB)
                total = float(scratch[:: 4 * KIB].sum())
                del scratch
            return {"id": batch["id"], "total": np.full(len(batch["id"]), total)}

    return LayoutCalibrator


@scenario("retention-24-threads", "allocator-retention", trim="off")
def retention_24_threads() -> type:
    """24 decoding threads allocate 3 MiB each every 3rd call, 1 in 8 kept to the next; trim off.

    True pattern: allocator-retention (issue 19, item 6): ~100 MiB freed but held on a
    few hundred MiB of private RSS, under the old fixed 128 MiB floor.
    """

    class ParallelDecoder:
        def __init__(self) -> None:
            self.kept: list[bytearray] = []
            self.calls = 0

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            if self.calls % 3 == 1:
                self.kept = reproducers.thread_churn(threads=24, mib_per_thread=3, keep_every=8, seed=self.calls)
            return {"id": batch["id"], "kept": np.full(len(batch["id"]), len(self.kept))}

    return ParallelDecoder


def _bounded_cache(capacity: int) -> type:
    """An LRU cache of ``capacity`` 256 KiB responses on ``self``, keys never repeating: full at call ``capacity``."""

    class BoundedCache:
        def __init__(self) -> None:
            from collections import OrderedDict

            self.cache: OrderedDict[int, bytes] = OrderedDict()
            self.calls = 0
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            self.cache[self.calls] = self.rng.bytes(256 * KIB)
            if len(self.cache) > capacity:
                self.cache.popitem(last=False)
            return {"id": batch["id"], "size": np.full(len(batch["id"]), len(self.cache))}

    return BoundedCache


@scenario("bounded-cache-early", "healthy", saturates_call=100)
def bounded_cache_early() -> type:
    """An LRU cache of 100 x 256 KiB: grows 25 MiB to call 100, then evicts. True pattern: healthy."""
    return _bounded_cache(100)


@scenario("bounded-cache-late", "healthy", saturates_call=215)
def bounded_cache_late() -> type:
    """An LRU cache of 215 x 256 KiB: grows 54 MiB to call 215, then evicts (issue 19, item 7). Truth: healthy."""
    return _bounded_cache(215)


@scenario("warmup-table", "healthy", saturates_call=40)
def warmup_table() -> type:
    """A lookup table filled by the first 40 calls (1 MiB each), then only read. True pattern: healthy."""

    class WarmupTable:
        def __init__(self) -> None:
            self.table: dict[int, bytes] = {}
            self.calls = 0
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            if len(self.table) < 40:
                self.table[self.calls] = self.rng.bytes(MIB)
            return {"id": batch["id"], "size": np.full(len(batch["id"]), len(self.table))}

    return WarmupTable


@scenario("leak-under-trims", "heap-leak", trim="16")
def leak_under_trims() -> type:
    """The 256 KiB-per-call cache leak with a trim every 16 calls (``trim=16``) and 0-64 MiB transients between.

    True pattern: heap-leak (issue 19, item 7: trims must not turn a leak into retention or healthy).
    """

    class TrimmedCache:
        def __init__(self) -> None:
            self.cache: list[bytes] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.cache.append(self.rng.bytes(256 * KIB))
            scratch = [bytearray(64 * KIB) for _ in range(int(self.rng.integers(0, 1024)))]  # 0-64 MiB, freed
            del scratch
            return {"id": batch["id"], "size": np.full(len(batch["id"]), len(self.cache))}

    return TrimmedCache


def _small_audit(kib: int) -> type:
    """``kib`` KiB of bytes kept per call beside a 200 MiB model (a slow leak on a large worker)."""

    class SmallAudit:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.weights = rng.standard_normal((51200, 1024), dtype=np.float32)  # 200 MiB
            self.audit: list[bytes] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.audit.append(self.rng.bytes(kib * KIB))
            rows = self.rng.integers(0, len(self.weights), 256)
            score = float(self.weights[rows].sum())
            return {"id": batch["id"], "score": np.full(len(batch["id"]), score)}

    return SmallAudit


@scenario("leak-near-floor-16k", "heap-leak")
def leak_near_floor_16k() -> type:
    """16 KiB kept per call (~6.5 MiB per actor, 2% of its ~320 MiB) on a 200 MiB model. Truth: heap-leak.

    Twice the old per-call floor (``MIN_SLOPE_KIB``), under the old total floor (``MIN_GROWTH_MIB``).
    """
    return _small_audit(16)


@scenario("leak-near-floor-48k", "heap-leak")
def leak_near_floor_48k() -> type:
    """48 KiB kept per call (~19 MiB per actor) on a 200 MiB model: just above the old total floor. Truth: heap-leak."""
    return _small_audit(48)


@scenario("threads-leak", "heap-leak")
def threads_leak() -> type:
    """Each batch decoded by 4 pool threads; each thread's 64 KiB result kept on ``self``. True pattern: heap-leak."""

    class ThreadedDecoder:
        def __init__(self) -> None:
            self.pool = concurrent.futures.ThreadPoolExecutor(4)
            self.decoded: list[bytes] = []
            self.lock = threading.Lock()

        def _decode(self, seed: int) -> bytes:
            return np.random.default_rng(seed).bytes(64 * KIB)

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            first = int(batch["id"][0])
            parts = list(self.pool.map(self._decode, range(first, first + 4)))
            with self.lock:
                self.decoded.extend(parts)
            return {"id": batch["id"], "n": np.full(len(batch["id"]), len(self.decoded))}

    return ThreadedDecoder


@scenario("blas-healthy", "healthy")
def blas_healthy() -> type:
    """An embedding UDF: ``x @ w`` per call (OpenBLAS's one-time buffers on the first calls), nothing kept.

    Truth: healthy (issue 19, item 9: memory allocated once on the first calls is no growth).
    """

    class MatmulEmbedder:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.w = rng.standard_normal((1024, 1024), dtype=np.float32)
            self.rng = np.random.default_rng()

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            x = self.rng.standard_normal((512, 1024), dtype=np.float32)
            emb = x @ self.w
            return {"id": batch["id"], "norm": np.full(len(batch["id"]), float(np.abs(emb).max()))}

    return MatmulEmbedder


LOADED = {"busy": 2}


@scenario("loaded-heap-leak-cache", "heap-leak", **LOADED)
def loaded_heap_leak_cache() -> type:
    """``heap-leak-cache`` with two busy-loop processes on the 2 cores. True pattern: heap-leak."""
    return heap_leak_cache()


@scenario("loaded-healthy", "healthy", **LOADED)
def loaded_healthy() -> type:
    """``healthy`` with two busy-loop processes on the 2 cores. True pattern: healthy.

    (``healthy-noisy`` under load, tried first, made 8 snapshots in 3 minutes: its
    0-200 MiB transients per call on a machine at load 15.)
    """
    return healthy()


# --- plain Ray actors: fast calls, threaded and async ----------------------------------------

ACTOR_CALLS = 3000  # per actor
FAST_S = 0.001


def _fast_actor(keep: int) -> type:
    """``process(item)``: ~1 ms of work; ``keep`` bytes kept per call in ``self.kept`` (0: nothing)."""

    class FastWorker:
        def __init__(self) -> None:
            self.kept: list[bytes] = []
            self.lock = threading.Lock()

        def process(self, item: int) -> int:
            time.sleep(FAST_S)
            if keep:
                blob = os.urandom(keep)
                with self.lock:
                    self.kept.append(blob)
            return item

    return FastWorker


ACTOR = {"engine": "ray-actor", "every": 100, "calls": ACTOR_CALLS, "method": "process"}


@scenario("actor-fast-leak-c4", "heap-leak", max_concurrency=4, **ACTOR)
def actor_fast_leak_c4() -> type:
    """README's plain Ray actor (``max_concurrency=4``, ``every=100``), ~1 ms calls, 64 KiB kept per call.

    True pattern: heap-leak (issue 19, item 2).
    """
    return _fast_actor(64 * KIB)


@scenario("actor-fast-leak-c1", "heap-leak", max_concurrency=1, **ACTOR)
def actor_fast_leak_c1() -> type:
    """The same with ``max_concurrency=1``. True pattern: heap-leak."""
    return _fast_actor(64 * KIB)


@scenario("actor-fast-healthy", "healthy", max_concurrency=4, **ACTOR)
def actor_fast_healthy() -> type:
    """The same actor keeping nothing. True pattern: healthy."""
    return _fast_actor(0)


@scenario("loaded-actor-fast-leak-c4", "heap-leak", max_concurrency=4, busy=2, **ACTOR)
def loaded_actor_fast_leak_c4() -> type:
    """``actor-fast-leak-c4`` with two busy-loop processes on the 2 cores. Truth: heap-leak."""
    return _fast_actor(64 * KIB)


@scenario("actor-async-leak", "heap-leak", max_concurrency=8, **ACTOR)
def actor_async_leak() -> type:
    """An async actor (``async def process``, 8 calls in flight) keeping 64 KiB per call. True pattern: heap-leak."""

    class AsyncFetcher:
        def __init__(self) -> None:
            self.responses: list[bytes] = []

        async def process(self, item: int) -> int:
            await asyncio.sleep(FAST_S)
            self.responses.append(os.urandom(64 * KIB))
            return item

    return AsyncFetcher


# --- Daft (native runner): row-wise and batch UDFs -------------------------------------------

DAFT_ROWS = 20000
ROW_BYTES = 2300


def _row_udf(keep: bool) -> type:
    """``__call__(x)``, one call per row: a 2.3 KB record built per row, kept on ``self`` when ``keep``."""

    class RowEnricher:
        def __init__(self) -> None:
            self.records: list[bytes] = []

        def __call__(self, x: int) -> int:
            record = (b"%08d" % x) * (ROW_BYTES // 8)
            if keep:
                self.records.append(record)
            return len(record)

    return RowEnricher


DAFT_ROW = {"engine": "daft", "every": 256, "calls": DAFT_ROWS}


@scenario("daft-row-leak", "heap-leak", **DAFT_ROW)
def daft_row_leak() -> type:
    """A Daft row-wise UDF keeping ~2.3 KB per row over 20,000 rows (issue 19, item 1). True pattern: heap-leak."""
    return _row_udf(True)


@scenario("daft-row-healthy", "healthy", **DAFT_ROW)
def daft_row_healthy() -> type:
    """The same row-wise UDF keeping nothing. True pattern: healthy."""
    return _row_udf(False)


@scenario("daft-batch-leak", "heap-leak", engine="daft", every=8, calls=40000, method="embed_batch")
def daft_batch_leak() -> type:
    """A Daft batch UDF (``@daft.method.batch``, 64 rows) keeping a 128 KiB float64 feature block per batch.

    True pattern: heap-leak. 40,000 rows: ~625 calls.
    """
    import daft

    class BatchEmbedder:
        def __init__(self) -> None:
            self.blocks: list[np.ndarray] = []

        @daft.method.batch(return_dtype=daft.DataType.int64(), batch_size=64)
        def embed_batch(self, x: Any) -> Any:
            values = np.asarray(x.to_pylist(), dtype=np.float64)
            self.blocks.append(np.repeat(values, 16 * KIB // len(values) + 1)[: 16 * KIB] * 0.5)
            return x

    return BatchEmbedder


@scenario("geneva-row-leak", "heap-leak", engine="geneva", every=256, calls=DAFT_ROWS)
def geneva_row_leak() -> type:
    """The row-wise 2.3 KB-per-row leak as a Geneva scalar UDF column, backfilled over 20,000 rows. Truth: heap-leak."""
    return _row_udf(True)


@scenario("daft-ray-batch-leak", "heap-leak", engine="daft-ray", every=8, calls=40000, method="embed_batch")
def daft_ray_batch_leak() -> type:
    """``daft-batch-leak`` on Daft's Ray runner (a local cluster). Truth: heap-leak."""
    return daft_batch_leak()


# --- the corpus: truths, replay, online targets ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Truth:
    """A stored scenario's truth (module docstring): the pattern, where it starts, where growth stops."""

    pattern: str
    onset_call: int = 0
    saturates_call: int | None = None
    engine: str = "ray-data"
    derived_from: str | None = None


def expected(data: Path = DATA) -> dict[str, Truth]:
    """``EXPECTED.json`` read: a bare string entry is its truth; an object has ``truth`` and the online fields."""
    raw: dict[str, Any] = json.loads((data / "EXPECTED.json").read_text())
    out = {}
    for name, entry in raw.items():
        if isinstance(entry, str):
            out[name] = Truth(entry)
        else:
            out[name] = Truth(
                entry["truth"],
                entry.get("onset_call", 0),
                entry.get("saturates_call"),
                entry.get("engine", "ray-data"),
                entry.get("derived_from"),
            )
    return out


def sources(name: str, data: Path = DATA) -> dict[str, Path]:
    """Scenario ``name``'s stored logs: ``files`` (worker files) and, where recorded, ``console`` (the driver's)."""
    found = {"files": data / f"{name}.log.gz", "console": data / f"{name}.console.log.gz"}
    return {kind: path for kind, path in found.items() if path.exists()}


def lines_of(path: Path) -> Iterator[str]:
    """The lines of a (gzipped) log."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        yield from fh


@dataclasses.dataclass(frozen=True)
class Replay:
    """One worker's snapshots replayed through the online detector: what it said, at which calls.

    ``said`` holds ``(call, pattern)`` per ``udfmem.suspect`` event, ``call`` being the
    snapshot's call when it was said; ``last_call`` is the worker's last snapshot call.
    """

    host: str
    pid: int
    worker: str
    udf: str
    snapshots: int
    last_call: int
    said: tuple[tuple[int, str], ...]

    @property
    def first(self) -> tuple[int, str] | None:
        """The first event naming a problem (``(call, pattern)``), or None."""
        return next(((c, p) for c, p in self.said if p != "healthy"), None)

    @property
    def flips(self) -> int:
        """Changes of the said pattern (from ``healthy``, the detector's start): repeats of one pattern are none."""
        changes, now = 0, "healthy"
        for _, pattern in self.said:
            changes += pattern != now
            now = pattern
        return changes

    @property
    def last_word(self) -> str:
        """The pattern said last (``healthy`` when nothing was)."""
        return self.said[-1][1] if self.said else "healthy"


def replay(lines: Iterable[str]) -> list[Replay]:
    """Each worker's snapshot (and trim) lines, in order, through a fresh :class:`udfmem.policies.detector.Detector`.

    The detector's clock advances by each snapshot's ``window_s`` (the wall time the
    worker had) and its cost clock stands still: a judgement costs nothing, so the
    judging budget never holds one back and the replay is the same on any machine, under
    any load (with the CPU-time cost clock, 4 of 79 workers' events moved under two busy
    loops). Its target gives no UDF object (no attribute inspection offline);
    ``udfmem.trim`` lines reach it as in the binding (``trimmed(released_mb)``). Workers
    are told apart by host, pid, worker tag and UDF (as ``udfmem diagnose`` does); a line
    seen twice for one worker and call (a worker file and the console both read) counts once.
    """
    from udfmem.events.parse import parse_line
    from udfmem.events.schema import Snapshot, Trim, from_fields
    from udfmem.policies.detector import Detector

    class Clock:
        def __init__(self) -> None:
            self.now = 0.0

        def __call__(self) -> float:
            return self.now

    workers: dict[tuple[str, int, str, str], tuple[Detector, Clock, list[tuple[int, str]], list[int], set[Any]]] = {}
    for line in lines:
        fields = parse_line(line)
        if fields is None or fields.get("event") not in ("udfmem.snapshot", "udfmem.trim"):
            continue
        try:
            event = from_fields(fields)
        except ValueError:
            continue
        key = (
            str(fields.get("host", "")),
            int(fields.get("pid", 0)),
            str(fields.get("worker", "")),
            str(fields.get("udf")),
        )
        if key not in workers:
            clock = Clock()
            detector = Detector(target=lambda: (None, None), clock=clock, cost_clock=lambda: 0.0)
            workers[key] = (detector, clock, [], [0, 0], set())
        detector, clock, said, counts, seen = workers[key]
        stamp = (fields["event"], fields.get("ts"), fields.get("call"))
        if stamp in seen:
            continue
        seen.add(stamp)
        if isinstance(event, Trim):
            detector.trimmed(event.released_mb)
        elif isinstance(event, Snapshot):
            clock.now += max(0.0, event.window_s)
            counts[0] += 1
            counts[1] = max(counts[1], event.call)
            suspect = detector.observe(event)
            if suspect is not None:
                said.append((event.call, suspect.pattern))
    return [
        Replay(host, pid, worker, udf, counts[0], counts[1], tuple(said))
        for (host, pid, worker, udf), (_, _, said, counts, _) in workers.items()
    ]


def online_misses(run: Replay, truth: Truth) -> list[str]:
    """The online targets ``run`` misses for ``truth`` (module docstring); empty when it meets them all."""
    misses: list[str] = []
    if truth.pattern == "healthy" and truth.saturates_call is None:
        if run.said:
            misses.append(f"healthy run got {len(run.said)} event(s): {list(run.said)}")
        return misses
    if truth.pattern == "healthy":
        stop = truth.saturates_call or 0
        deadline = stop + (run.last_call - stop) / 3
        if run.last_word != "healthy":
            misses.append(f"last word {run.last_word}, not healthy")
        elif run.said and run.said[-1][0] > deadline:
            misses.append(f"withdrawn at call {run.said[-1][0]}, after {deadline:.0f} (saturated at {stop})")
        if len(run.said) > 2:
            misses.append(f"{len(run.said)} events for one saturating growth: {list(run.said)}")
        return misses
    start = truth.onset_call
    deadline = start + (run.last_call - start) / 3
    first = run.first
    if first is None:
        misses.append("never announced")
    else:
        call, pattern = first
        if pattern != truth.pattern:
            misses.append(f"first said {pattern} at call {call}")
        if not start <= call <= deadline:
            misses.append(f"first event at call {call}, outside calls {start}-{deadline:.0f} of {run.last_call}")
    if len(run.said) != 1:
        misses.append(f"{len(run.said)} events ({run.flips} flips), not one: {list(run.said)}")
    if run.last_word != truth.pattern:
        misses.append(f"last word {run.last_word}")
    return misses
