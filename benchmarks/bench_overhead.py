"""Per-call cost of udfmem's wrapper, measured side by side in one run.

Run: ``python benchmarks/bench_overhead.py`` (add ``--json`` for machine output).

Reports the per-call time of a bare method call, a bare counting wrapper (a closure
``*args, **kwargs`` counter: the cheapest useful wrapper), the tracked wrapper on
non-snapshot calls, and one snapshot (a tracked call with ``every=1`` minus a
non-snapshot call; stderr goes to a real file, as in a Ray worker). Rounds are
interleaved so that machine noise hits every variant alike; each figure is the median
over rounds of the best-of-5 per round.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from typing import Any

from udfmem import _probes, tracked


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


@tracked(every=1, every_s=0)
class Snapshotting:
    """The same UDF under @tracked, a snapshot on every call."""

    def __call__(self, x: int) -> int:
        """Return ``x``."""
        return x


def per_call_ns(fn: Callable[[int], int], number: int) -> float:
    """Best-of-5 time of one call in nanoseconds."""
    return min(timeit.repeat(lambda: fn(1), number=number, repeat=5)) / number * 1e9


def measure(rounds: int) -> dict[str, float]:
    """Median per-call time of each variant, rounds interleaved; stderr to a real file."""
    real_stderr = sys.stderr
    with tempfile.TemporaryFile("w", buffering=1) as sink:  # line-buffered, like sys.stderr
        sys.stderr = sink
        try:
            variants = {"bare": Bare(), "counting": Counted(), "tracked": Tracked(), "snapshot": Snapshotting()}
            for udf in variants.values():
                udf(0)  # bind udfmem's per-process state first
            probes = _probes.probes()
            floor = {"probe_syscalls": lambda _: (probes.rss(), probes.peak(), probes.reset_peak(), probes.heap())}
            results: dict[str, list[float]] = {name: [] for name in [*variants, *floor]}
            for _ in range(rounds):
                for name, udf in {**variants, **floor}.items():
                    number = 200_000 if name in ("bare", "counting", "tracked") else 2_000
                    results[name].append(per_call_ns(udf, number))
        finally:
            sys.stderr = real_stderr
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> int:
    """Run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    med = measure(args.rounds)
    counting_added = med["counting"] - med["bare"]
    tracked_added = med["tracked"] - med["bare"]
    report = {
        "bare_ns": round(med["bare"], 1),
        "counting_wrapper_ns": round(med["counting"], 1),
        "tracked_ns": round(med["tracked"], 1),
        "tracked_added_over_counting_added": round(tracked_added / counting_added, 2),
        "snapshot_us": round((med["snapshot"] - med["tracked"]) / 1000, 2),
        "probe_syscalls_us": round(med["probe_syscalls"] / 1000, 2),
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"bare call                       {report['bare_ns']:8.1f} ns")
        print(f"bare counting wrapper           {report['counting_wrapper_ns']:8.1f} ns")
        print(f"tracked, no snapshot            {report['tracked_ns']:8.1f} ns")
        print(f"tracked added / counting added  {report['tracked_added_over_counting_added']:8.2f} x  (target <= 1.2)")
        print(f"one snapshot                    {report['snapshot_us']:8.2f} us (target <= 15)")
        reads = report["probe_syscalls_us"]
        print(f"  of which probe reads          {reads:8.2f} us (statm rusage clear_refs mallinfo2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
