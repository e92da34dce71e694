"""Per-call cost of udfmem's wrapper and of one snapshot, measured side by side in one run.

Run: ``python benchmarks/bench_overhead.py`` (add ``--json`` for machine output;
``--no-big-heap`` skips the large-heap case, ``--big-heap-gib N`` sizes it).

Reports the per-call time of a bare method call, a bare counting wrapper (a closure
``*args, **kwargs`` counter: the cheapest useful wrapper), the tracked wrapper on
non-snapshot calls, and one snapshot (a tracked call with ``every=1`` minus a
non-snapshot call; stderr goes to a real file, as in a Ray worker). Rounds are
interleaved so that machine noise hits every variant alike; each figure is the median
over rounds of the best-of-5 per round.

The snapshot variant uses ``trim="off"``: the default ``trim="auto"`` checks (and may
act) at every snapshot, and this figure is meant to be the snapshot alone.

Next to it, in the same rounds, runs a hand-written snapshot: a plain method that does
the reads a udfmem snapshot does (RSS and shared pages via ``os.pread`` on a kept
``/proc/self/statm`` fd; ``getrusage().ru_maxrss`` then ``5`` written to a kept
``/proc/self/clear_refs`` fd; glibc ``mallinfo2()`` through ctypes; Arrow's
``total_allocated_bytes()`` only if pyarrow is already imported) and writes the same
fields as one logfmt line built by one f-string (timestamp from a per-second cached
``strftime`` prefix) to the same ``sys.stderr``. Its figure is its call minus a bare
call; ``snapshot_over_handwritten`` is udfmem's snapshot divided by it (goal <= 1.3).

Then, in two fresh interpreters (``benchmarks/fragment.py``): one snapshot on a small
heap and on a ~2 GiB fragmented glibc heap (8 threads keeping every other 64-8000 B
``malloc`` buffer), and one raw ``mallinfo2()`` call on each (goal: big <= 3x small).
Finally (``benchmarks/bench_many_udfs.py``, one worker process per case): one snapshot
with 1, 1,000 and 10,000 live tracked classes in the process (goal: 10,000 <= 1.5x 1).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fragment

import udfmem
from udfmem import tracked

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024


def counting_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The bare counting wrapper the target is relative to."""
    count = [0]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return fn(*args, **kwargs)

    return wrapper


class Bare:
    """An undecorated UDF."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


class Counted:
    """The same UDF under the bare counting wrapper."""

    @counting_wrapper
    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


@tracked(every=1 << 62, every_s=0)
class Tracked:
    """The same UDF under @tracked, snapshots effectively never."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


@tracked(every=1, every_s=0, trim="off")
class Snapshotting:
    """The same UDF under @tracked, a snapshot on every call (no trim policy: the snapshot alone)."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


@tracked(every=1, every_s=0, trim="off", metrics="otel")
class SnapshottingOtel:
    """Snapshotting, with the OpenTelemetry exporter on (an SDK configured, collecting on demand)."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


@tracked(every=1, every_s=0, trim="off", metrics="ray")
class SnapshottingRay:
    """Snapshotting, with the Ray exporter on (this process connected to a local Ray)."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


def start_exporters() -> dict[str, Callable[[int], Any]]:
    """Configure an OpenTelemetry SDK and connect to a fresh local Ray; the snapshot variants with each exporter."""
    out: dict[str, Callable[[int], Any]] = {}
    try:
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        out["snapshot_otel"] = SnapshottingOtel()
    except ImportError:
        print("opentelemetry-sdk not installed: no otel figure", file=sys.stderr)
    try:
        import ray

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        out["snapshot_ray"] = SnapshottingRay()
    except ImportError:
        print("ray not installed: no ray figure", file=sys.stderr)
    return out


def ray_set_all_us() -> float:
    """One push of every gauge to Ray (what a snapshot pays at most once a second), median of 200."""
    from udfmem.emit.sinks.metrics import MetricsSink
    from udfmem.runtime import registry as _registry

    (state,) = [s for s in _registry.states() if s.name == "SnapshottingRay"]
    (sink,) = [s for s in state.emitter.sinks if isinstance(s, MetricsSink)]
    times = []
    for _ in range(200):
        t = time.perf_counter()
        sink._publish(time.monotonic())
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


class HandWritten:
    """The same UDF taking, by hand, the snapshot udfmem takes: the same reads, one f-string, one write."""

    def __init__(self, udf: str = "HandWritten") -> None:
        self.statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        self.clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
        self.mallinfo2 = fragment.libc_functions()[2]
        self.page = os.sysconf("SC_PAGE_SIZE")
        pid, host = os.getpid(), socket.gethostname()
        digest = hashlib.blake2b(f"{host}:{pid}".encode(), digest_size=8).digest()
        worker = "".join(chr(ord("a") + b % 26) for b in digest)
        self.head = f"event=udfmem.snapshot udf={udf} pid={pid} host={host} worker={worker}"
        self.second, self.prefix = -1, ""
        self.calls = self.last_call = 0
        self.last_t = time.monotonic()
        self.baseline = int(os.pread(self.statm, 64, 0).split()[1]) * self.page

    def close(self) -> None:
        """Close the kept fds."""
        os.close(self.statm)
        os.close(self.clear_refs)

    def reads(self, _: int = 0) -> tuple[int, int, int, Any, int]:
        """The reads alone: statm, getrusage, clear_refs, mallinfo2, Arrow."""
        _size, resident, shared = os.pread(self.statm, 64, 0).split()[:3]
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.write(self.clear_refs, b"5")
        info = self.mallinfo2()
        pa = sys.modules.get("pyarrow")
        return int(resident), int(shared), maxrss, info, pa.total_allocated_bytes() if pa is not None else 0

    def __call__(self, x: int) -> int:
        """Count the call, take a snapshot, return ``x``."""
        self.calls += 1
        n = self.calls
        now, t = time.monotonic(), time.time()
        _size, resident, shared = os.pread(self.statm, 64, 0).split()[:3]
        rss, shared_b = int(resident) * self.page, int(shared) * self.page
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, rss)
        os.write(self.clear_refs, b"5")
        info = self.mallinfo2()
        pa = sys.modules.get("pyarrow")
        arrow = pa.total_allocated_bytes() if pa is not None else 0
        second = int(t)
        if second != self.second:
            self.second, self.prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        m = MIB
        line = (
            f"{self.head} ts={self.prefix}.{int((t - second) * 1000):03d}Z call={n} rss_mb={rss / m:.1f}"
            f" rss_anon_mb={(rss - shared_b) / m:.1f} rss_shared_mb={shared_b / m:.1f} peak_rss_mb={peak / m:.1f}"
            f" arrow_live_mb={arrow / m:.1f} gap_mb={(rss - arrow) / m:.1f}"
            f" heap_in_use_mb={(info.uordblks + info.hblkhd) / m:.1f} heap_free_mb={info.fordblks / m:.1f}"
            f" heap_mmap_mb={info.hblkhd / m:.1f} growth_mb={(rss - self.baseline) / m:.1f}"
            f" window_calls={n - self.last_call} window_s={now - self.last_t:.3f} schema=1"
        )
        self.last_call, self.last_t = n, now
        stream = sys.stderr
        stream.write(line + "\n")
        if not stream.line_buffering:
            stream.flush()
        return x


def udfmem_probe_reads() -> Callable[[int], Any] | None:
    """udfmem's own four probe reads (statm, rusage, clear_refs, mallinfo2), if its internals still have them."""
    try:
        from udfmem.probes import process as _probes

        p = _probes.probes()
        return lambda _: (p.rss(), p.peak(), p.reset_peak(), p.heap())
    except (ImportError, AttributeError):
        return None


def per_call_ns(fn: Callable[[int], int], number: int) -> float:
    """Best-of-5 time of one call in nanoseconds."""
    return min(timeit.repeat(lambda: fn(1), number=number, repeat=5)) / number * 1e9


def measure(rounds: int, exporters: dict[str, Callable[[int], Any]]) -> tuple[dict[str, float], str]:
    """Median per-call time of each variant, rounds interleaved; stderr to a real file."""
    real_stderr = sys.stderr
    with tempfile.TemporaryFile("w", buffering=1) as sink:  # line-buffered, like sys.stderr
        sys.stderr = sink
        handwritten = HandWritten()
        try:
            variants: dict[str, Callable[[int], Any]] = {
                "bare": Bare(),
                "counting": Counted(),
                "tracked": Tracked(),
                "snapshot": Snapshotting(),
                "handwritten": handwritten,
                **exporters,
            }
            for udf in variants.values():
                udf(0)  # bind udfmem's per-process state first
            probe_reads = udfmem_probe_reads()
            source = "udfmem" if probe_reads is not None else "handwritten"
            floor = {"probe_syscalls": probe_reads or handwritten.reads, "handwritten_reads": handwritten.reads}
            results: dict[str, list[float]] = {name: [] for name in [*variants, *floor]}
            for _ in range(rounds):
                for name, udf in {**variants, **floor}.items():
                    number = 200_000 if name in ("bare", "counting", "tracked") else 2_000
                    results[name].append(per_call_ns(udf, number))
        finally:
            sys.stderr = real_stderr
            handwritten.close()
    return {name: statistics.median(values) for name, values in results.items()}, source


def heap_case(gib: float, snapshots: int) -> dict[str, Any]:
    """Run ``fragment.py`` in a fresh interpreter (same udfmem, no UDFMEM_/MALLOC_ env); its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UDFMEM_", "MALLOC_"))}
    package_root = str(Path(udfmem.__file__).resolve().parent.parent)  # the udfmem this process measured
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(HERE / "fragment.py"), "--gib", str(gib), "--snapshots", str(snapshots)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"fragment.py --gib {gib} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def exporters_case(rounds: int) -> dict[str, float]:
    """Run the snapshot with and without each metrics exporter in a fresh interpreter; its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--exporters-case", "--rounds", str(rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the exporters case failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def many_udfs_case(rounds: int) -> dict[str, Any]:
    """One snapshot's cost with 1, 1,000 and 10,000 live tracked classes (``bench_many_udfs.py --json``)."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "bench_many_udfs.py"), "--json", "--rounds", str(rounds), "--idle-s", "5"],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--big-heap-gib", type=float, default=2.0, help="size of the fragmented heap (GiB)")
    parser.add_argument("--no-big-heap", action="store_true", help="skip the small/big heap snapshot case")
    parser.add_argument("--no-metrics", action="store_true", help="skip the snapshot with each metrics exporter on")
    parser.add_argument("--exporters-case", action="store_true", help=argparse.SUPPRESS)  # the fresh process below
    parser.add_argument("--heap-snapshots", type=int, default=21, help="snapshots timed per heap (median)")
    parser.add_argument("--no-many-udfs", action="store_true", help="skip the 1 / 1,000 / 10,000 live classes case")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.exporters_case:  # in a fresh process: Ray's threads must not disturb the other figures
        exporters = start_exporters()
        med, _ = measure(args.rounds, exporters)
        added = {f"{name}_added_us": round((med[name] - med["snapshot"]) / 1000, 2) for name in exporters}
        if "snapshot_ray" in exporters:
            added["ray_set_all_us"] = round(ray_set_all_us(), 2)
        print(json.dumps(added))
        return 0
    med, probe_source = measure(args.rounds, {})
    counting_added = med["counting"] - med["bare"]
    tracked_added = med["tracked"] - med["bare"]
    snapshot_us = (med["snapshot"] - med["tracked"]) / 1000
    handwritten_us = (med["handwritten"] - med["bare"]) / 1000
    report: dict[str, Any] = {
        "bare_ns": round(med["bare"], 1),
        "counting_wrapper_ns": round(med["counting"], 1),
        "tracked_ns": round(med["tracked"], 1),
        "tracked_added_over_counting_added": round(tracked_added / counting_added, 2),
        "snapshot_us": round(snapshot_us, 2),
        "probe_syscalls_us": round(med["probe_syscalls"] / 1000, 2),
        "probe_syscalls_source": probe_source,
        "handwritten_snapshot_us": round(handwritten_us, 2),
        "handwritten_reads_us": round(med["handwritten_reads"] / 1000, 2),
        "snapshot_over_handwritten": round(snapshot_us / handwritten_us, 2),
    }
    if not args.no_metrics:  # what each exporter adds to one snapshot, side by side in a process of their own
        report.update(exporters_case(args.rounds))
    if not args.no_big_heap:
        small = heap_case(0, args.heap_snapshots)
        big = heap_case(args.big_heap_gib, args.heap_snapshots)
        report.update(
            snapshot_small_heap_us=small["snapshot_us"],
            snapshot_big_heap_us=big["snapshot_us"],
            big_over_small=round(big["snapshot_us"] / small["snapshot_us"], 2),
            mallinfo2_small_heap_us=small["mallinfo2_us"],
            mallinfo2_big_heap_ms=round(big["mallinfo2_us"] / 1000, 2),
            small_heap_rss_mb=small["rss_mb"],
            big_heap_gib=args.big_heap_gib,
            big_heap_rss_mb=big["rss_mb"],
            big_heap_free_mb=big["heap_free_mb"],
            big_heap_free_chunks=big["free_chunks"],
            big_heap_build_s=big["build_s"],
        )
    if not args.no_many_udfs:  # one worker process per case (bench_many_udfs.py), snapshot rounds interleaved
        report["many_udfs"] = many_udfs_case(args.rounds)
    report["python"] = sys.version.split()[0]
    report["bench_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
        return 0
    r = report

    def show(label: str, value: float, unit: str, note: str = "") -> None:
        print(f"{label:<34}{value:10.2f} {unit:<2} {note}".rstrip())

    show("bare call", r["bare_ns"], "ns")
    show("bare counting wrapper", r["counting_wrapper_ns"], "ns")
    show("tracked, no snapshot", r["tracked_ns"], "ns")
    show("tracked added / counting added", r["tracked_added_over_counting_added"], "x", "(target <= 1.2)")
    show("one snapshot (trim off)", r["snapshot_us"], "us", "(target <= 15)")
    show("  of which probe reads", r["probe_syscalls_us"], "us", f"({probe_source}: statm rusage clear_refs mallinfo2)")
    show(
        "hand-written snapshot", r["handwritten_snapshot_us"], "us", "(same reads and fields, one f-string, one write)"
    )
    show("  of which its reads", r["handwritten_reads_us"], "us", "(statm rusage clear_refs mallinfo2 arrow)")
    show("snapshot / hand-written", r["snapshot_over_handwritten"], "x", "(target <= 1.3)")
    if "snapshot_otel_added_us" in r:
        show("  metrics=otel adds", r["snapshot_otel_added_us"], "us", "(an SDK configured; collects on demand)")
    if "snapshot_ray_added_us" in r:
        show("  metrics=ray adds", r["snapshot_ray_added_us"], "us", "(connected to a local Ray)")
        show("  one push of Ray's gauges", r["ray_set_all_us"], "us", "(all of them; at most once a second)")
    if not args.no_big_heap:
        show("snapshot, small heap", r["snapshot_small_heap_us"], "us", f"(RSS {r['small_heap_rss_mb']:.0f} MiB)")
        show(
            f"snapshot, {r['big_heap_gib']:g} GiB fragmented heap",
            r["snapshot_big_heap_us"],
            "us",
            f"(RSS {r['big_heap_rss_mb']:.0f} MiB, {r['big_heap_free_chunks']} free chunks,"
            f" built in {r['big_heap_build_s']:.1f} s)",
        )
        show("big heap / small heap", r["big_over_small"], "x", "(target <= 3)")
        show("raw mallinfo2(), small heap", r["mallinfo2_small_heap_us"], "us")
        show("raw mallinfo2(), big heap", r["mallinfo2_big_heap_ms"], "ms")
    for n, case in r.get("many_udfs", {}).get("cases", {}).items():
        show(
            f"snapshot, {int(n):,} live classes",
            case["snapshot_us"],
            "us",
            f"({case['snapshot_over_smallest']:.2f}x 1 class)",
        )
    if "many_udfs" in r:
        print("  (target: 10,000 classes <= 1.5x 1 class; bind and idle timer costs: bench_many_udfs.py)")
    show("whole benchmark", r["bench_s"], "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
