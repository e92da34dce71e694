"""Real Ray Data runs that make the ``udfmem diagnose`` scenario corpus in ``tests/data/diagnose/``.

One scenario per memory pattern: a stateful ``map_batches`` UDF class (``@udfmem.tracked``)
run by two actors on a fresh local Ray cluster; Ray's worker log files (``worker-*.err`` and
``worker-*.out``, every line as Ray wrote it, Ray's own included) are concatenated and gzipped
to ``<OUTDIR>/<scenario>.log.gz``. ``EXPECTED.json`` there maps each scenario to its true
pattern.

Regenerate the corpus (about 8 minutes on 2 cores, 25-75 s a scenario; each needs up to ~3 GiB)::

    python tests/engines/diagnose_scenarios.py --all tests/data/diagnose
    python tests/engines/diagnose_scenarios.py heap-leak-cache /tmp/out    # one scenario
    python tests/engines/diagnose_scenarios.py --list

Run it with the udfmem you want in the logs first on ``PYTHONPATH`` (Ray's workers inherit
the driver's environment; the driver changes into its Ray temp directory first, so that
Ray, which puts the driver's working directory on its workers' ``sys.path``, cannot
shadow it with a checkout in the current directory). Each scenario runs in its own
interpreter and cluster, prints its runtime and, per worker, its snapshot count and the
first and last values of the main snapshot fields.

Every scenario: ``CALLS`` batches of ``ROWS_PER_BATCH`` rows from ``ray.data.range``, in
blocks of ``CALLS_PER_BLOCK`` batches, ``concurrency=2`` actors with ``num_cpus=0.5`` each,
udfmem settings through ``runtime_env={"env_vars": udfmem.worker_env(every=8, trim=...)}``,
so each actor makes ~400 calls and ~50 snapshots. Sizes are chosen so that a leak shows
clearly over ~400 calls (256 KiB per call) while a scenario runs in about a minute or less.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import udfmem

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import reproducers  # the one thread_churn; its module goes to Ray's workers by value
from reproducers import thread_churn

KIB = 1024
MIB = 1024 * KIB
EVERY = 8  # a snapshot every 8 calls per actor
CALLS = 830  # batches in all: ~415 per actor, no multiple of EVERY (final snapshots)
ROWS_PER_BATCH = 2
CALLS_PER_BLOCK = 10  # batches per Ray Data block (one actor task each)
PACE_S = 0.01  # each call also waits this long ("I/O"): the two actors then share the calls about evenly
Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One scenario: the UDF class maker, the true pattern, and the udfmem/Ray settings."""

    name: str
    pattern: str
    make: Callable[[], type]
    trim: str = "auto"
    batch_format: str = "numpy"


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, pattern: str, *, trim: str = "auto", batch_format: str = "numpy"
) -> Callable[[Callable[[], type]], Callable[[], type]]:
    """Register the decorated function (it returns the scenario's tracked UDF class) as ``name``."""

    def register(make: Callable[[], type]) -> Callable[[], type]:
        SCENARIOS[name] = Scenario(name, pattern, make, trim, batch_format)
        return make

    return register


def touched(nbytes: int) -> np.ndarray:
    """A fresh ``nbytes`` uint8 array whose every page is written (resident)."""
    buf = np.empty(nbytes, dtype=np.uint8)
    buf.fill(1)
    return buf


# --- the scenarios -------------------------------------------------------------------------


@scenario("healthy", "healthy")
def healthy() -> type:
    """A 200 MiB model loaded once, per-call compute with freed temporaries. True pattern: healthy.

    A ~200 MiB float32 "model" is loaded in ``__init__``; each call scores the batch against
    2048 random rows of it (an 8 MiB gathered copy and small results, all freed). Steady
    state after setup → healthy.
    """

    @udfmem.tracked(every=EVERY)
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
    """Random 0-200 MiB transients, touched and freed, nothing kept. True pattern: healthy.

    Each call allocates a random 0-200 MiB transient, touches every page, reduces it and
    frees it before returning; nothing is kept. Peaks vary a lot, steady state is flat →
    healthy.
    """

    @udfmem.tracked(every=EVERY)
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
    """A never-hitting cache of malloc'd bytes on ``self``. True pattern: heap-leak.

    A response cache on ``self`` keyed by a key that is unique per call, each value 256 KiB
    of bytes (malloc'd by CPython): the cache never hits and never evicts → heap-leak
    (~2 MiB of heap per 8 calls).
    """

    @udfmem.tracked(every=EVERY)
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
    """Small Python objects kept in pymalloc's arenas. True pattern: heap-leak.

    Each call appends 20,000 small Python strings (80-byte blocks in pymalloc's arenas,
    which malloc's counters do not see) to a list on ``self``: ``py_blocks`` grows 20,000
    and private RSS ~1.7 MiB per call while ``heap_in_use_mb`` grows only by the list's
    pointer array (~160 KiB per call) → heap-leak.
    """

    @udfmem.tracked(every=EVERY)
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
    """Closures over per-batch arrays kept in ``self.callbacks``. True pattern: heap-leak.

    Each call derives a 256 KiB float64 feature array from the batch and registers a
    "deferred metrics" closure over it in ``self.callbacks``, which is never drained: every
    closure keeps its array alive → heap-leak.
    """

    @udfmem.tracked(every=EVERY)
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
    """Model state that grows: a history of embeddings. True pattern: heap-leak.

    A model whose state grows: each call's 64x1024 float32 embeddings (256 KiB) are kept
    in ``self.history`` "for running normalisation statistics", never trimmed → heap-leak.
    """

    @udfmem.tracked(every=EVERY)
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


@scenario("arrow-leak", "arrow-leak", batch_format="pyarrow")
def arrow_leak() -> type:
    """Kept Arrow data from Arrow's memory pool. True pattern: arrow-leak.

    Kept Arrow data: each call computes a new 32768-value float64 column with
    ``pyarrow.compute`` (256 KiB from Arrow's memory pool, unlike ``pa.array`` over numpy or
    the batch's own object-store buffers, which are zero-copy) and appends it to a list on
    ``self`` → arrow-leak (``arrow_live_mb`` rises ~2 MiB per 8 calls).
    """
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    @udfmem.tracked(every=EVERY)
    class ArrowScaler:
        def __init__(self) -> None:
            self.kept: list[Any] = []
            self.rng = np.random.default_rng()

        def __call__(self, batch: Any) -> Any:
            time.sleep(PACE_S)
            values = pa.array(self.rng.random(32 * KIB))  # zero-copy over numpy
            scaled = pc.multiply(values, 2.0)  # a new buffer from Arrow's pool
            self.kept.append(scaled)
            return batch

    return ArrowScaler


@scenario("untracked-growth", "untracked-growth")
def untracked_growth() -> type:
    """Kept anonymous mmap regions: neither malloc nor Arrow. True pattern: untracked-growth.

    Each call creates an anonymous private ``mmap.mmap(-1, 256 KiB)`` scratch region, writes
    all of it and keeps it on ``self``: private RSS grows while malloc's heap, Arrow's pool
    and ``py_blocks`` stay flat → untracked-growth. (``mmap.mmap(-1, n)`` alone maps
    ``MAP_SHARED``: its pages count as shared memory, ``rss_shared_mb``, not as growth.)
    """

    @udfmem.tracked(every=EVERY)
    class ScratchMapper:
        def __init__(self) -> None:
            self.regions: list[mmap.mmap] = []

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            region = mmap.mmap(-1, 256 * KIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # default: MAP_SHARED
            region.write(b"\x01" * (256 * KIB))
            self.regions.append(region)
            return {"id": batch["id"], "regions": np.full(len(batch["id"]), len(self.regions))}

    return ScratchMapper


def _churn_udf() -> type:
    """The churning UDF of ``allocator-retention`` and ``churn-trim-auto``: 320 MiB through 8 threads every 3rd call.

    Every 3rd call (not every call: in a Ray worker, whose ~25 threads leave glibc trimming
    arena tops on its own, a 320 MiB churn refaults most of its pages and costs ~0.3 s).
    """

    @udfmem.tracked(every=EVERY)
    class ParallelTokenizer:
        def __init__(self) -> None:
            self.kept: list[bytearray] = []
            self.calls = 0

        def __call__(self, batch: Batch) -> Batch:
            time.sleep(PACE_S)
            self.calls += 1
            if self.calls % 3 == 1:  # a text-heavy batch; the calls between reuse what it left
                self.kept = thread_churn(threads=8, mib_per_thread=40, keep_every=8, seed=self.calls)
            return {"id": batch["id"], "kept": np.full(len(batch["id"]), len(self.kept))}

    return ParallelTokenizer


@scenario("allocator-retention", "allocator-retention", trim="off")
def allocator_retention() -> type:
    """Multi-threaded malloc churn, no trimming. True pattern: allocator-retention.

    Multi-threaded churn with ``trim="off"``: every 3rd call 8 threads allocate 40 MiB each
    of 4-120 KiB buffers (from their own glibc arenas), the main thread frees them, keeping 1
    in 8 until the next churn. Freed memory stays in the arenas: RSS high but flat,
    ``heap_in_use_mb`` flat and ``heap_free_mb`` hundreds of MiB → allocator-retention.
    """
    return _churn_udf()


@scenario("churn-trim-auto", "healthy", trim="auto")
def churn_trim_auto() -> type:
    """The same churn with udfmem's automatic trimming. True pattern: healthy.

    The ``allocator-retention`` churn with ``trim="auto"``: udfmem's trims give the freed
    arena memory back, RSS stays down → healthy.
    """
    return _churn_udf()


@scenario("peak-too-big", "peak-too-big")
def peak_too_big() -> type:
    """A 1.2 GiB transient every 6th call, freed before returning. True pattern: peak-too-big.

    Every 6th call (so 1 or 2 in each 8-call snapshot window) allocates a ~1.2 GiB float64
    transient, fills it (every page resident) and frees it before returning; nothing is kept,
    steady state ~small: ``peak_rss_mb`` in every window >1 GiB above ``rss_mb`` →
    peak-too-big.
    """

    @udfmem.tracked(every=EVERY)
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
    """64 KiB kept per call under 0-100 MiB transient noise. True pattern: heap-leak.

    A slow leak under noise: each call keeps 64 KiB of bytes in a list on ``self`` and
    allocates, touches and frees a random 0-100 MiB transient → heap-leak (~0.5 MiB per 8
    calls, under RSS noise of up to 100 MiB).
    """

    @udfmem.tracked(every=EVERY)
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


# --- running -------------------------------------------------------------------------------


def run_scenario(spec: Scenario, outdir: Path) -> Path:
    """Run ``spec`` on a fresh local Ray cluster; write its worker logs to ``outdir/<name>.log.gz``."""
    import ray

    temp = tempfile.mkdtemp(prefix="udf", dir="/tmp")  # Ray's socket paths must stay short
    os.chdir(temp)  # Ray puts the driver's cwd on the workers' sys.path: keep checkouts out of it
    t0 = time.perf_counter()
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False)
    ray.cloudpickle.register_pickle_by_value(reproducers)  # workers cannot import benchmarks/: sent with the UDF
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = 120
    ctx.enable_progress_bars = False
    ds = ray.data.range(CALLS * ROWS_PER_BATCH, override_num_blocks=CALLS // CALLS_PER_BLOCK)
    out = ds.map_batches(
        spec.make(),
        batch_size=ROWS_PER_BATCH,
        batch_format=spec.batch_format,
        concurrency=2,
        num_cpus=0.5,
        runtime_env={"env_vars": udfmem.worker_env(every=EVERY, trim=spec.trim)},
    ).materialize()
    rows = out.count()
    time.sleep(3)  # let the released actors write their final snapshots
    ray.shutdown()
    runtime = time.perf_counter() - t0
    logs = sorted(Path(temp, "session_latest", "logs").glob("worker-*"))
    data = b"".join(p.read_bytes() for p in logs)
    os.chdir(outdir.parent if outdir.parent.is_dir() else "/")
    shutil.rmtree(temp, ignore_errors=True)
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"{spec.name}.log.gz"
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)
    print(f"{spec.name}: {rows} rows, {runtime:.1f} s, {len(logs)} log files, {target.stat().st_size} bytes")
    print(summarize(data.decode(errors="replace")))
    return target


FIELDS = ("rss_mb", "rss_anon_mb", "heap_in_use_mb", "heap_free_mb", "arrow_live_mb", "py_blocks", "growth_mb")


def summarize(text: str) -> str:
    """Per worker: snapshot and trim counts, first → last regular value (and final) of the main fields, peak - rss."""
    from udfmem.events.parse import parse_line

    snaps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    trims: dict[int, int] = defaultdict(int)
    for line in text.splitlines():
        event = parse_line(line)
        if event is None:
            continue
        if event["event"] == "udfmem.snapshot":
            snaps[event["pid"]].append(event)
        elif event["event"] == "udfmem.trim":
            trims[event["pid"]] += 1
    lines = []
    for pid, series in snaps.items():
        final = series[-1] if series[-1].get("final") else None
        regular = [s for s in series if not s.get("final")]
        parts = [f"  pid {pid}: {len(series)} snapshots, calls {series[-1]['call']}, trims {trims[pid]}"]
        parts.append(f"final={final is not None}")
        for field in FIELDS:
            values = [s[field] for s in regular if field in s]
            if values:
                after = f" final {final[field]}" if final is not None and field in final else ""
                parts.append(f"{field} {values[0]}→{values[-1]} ({len(values)}){after}")
        gaps = [s["peak_rss_mb"] - s["rss_mb"] for s in regular if "peak_rss_mb" in s]
        parts.append(f"max peak-rss {max(gaps):.1f}")
        lines.append(", ".join(parts))
    return "\n".join(lines)


def main() -> int:
    """``SCENARIO OUTDIR`` runs one scenario; ``--all OUTDIR`` runs each in a fresh interpreter."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    parser.add_argument("outdir", nargs="?", type=Path)
    parser.add_argument("--all", metavar="OUTDIR", type=Path, help="run every scenario and write EXPECTED.json")
    parser.add_argument("--list", action="store_true", help="list the scenarios and their true patterns")
    args = parser.parse_args()
    if args.list:
        for spec in SCENARIOS.values():
            print(f"{spec.name:26s} {spec.pattern}")
        return 0
    if args.all is not None:
        outdir = args.all.resolve()
        for name in SCENARIOS:
            subprocess.run([sys.executable, os.path.abspath(__file__), name, str(outdir)], check=True)
        expected = {name: spec.pattern for name, spec in SCENARIOS.items()}
        (outdir / "EXPECTED.json").write_text(json.dumps(expected, indent=2) + "\n")
        return 0
    if args.scenario is None or args.outdir is None:
        parser.error("give SCENARIO OUTDIR, --all OUTDIR or --list")
    run_scenario(SCENARIOS[args.scenario], args.outdir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
