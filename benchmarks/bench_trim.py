"""Allocator retention: idle RSS and time spent trimming, per policy, side by side in one run.

Run: ``python benchmarks/bench_trim.py`` (``--json`` for machine output; ``--calls N``).

Each variant runs the same UDF in a fresh process: every call churns 128 MiB through 8
threads (4-120 KiB buffers, freed by the main thread, 1 in 8 kept until the next call).
Variants: no trimming; Dask's recipe (``MALLOC_TRIM_THRESHOLD_=65536`` at process start);
a blind ``malloc_trim`` every 8 calls (Geneva's applier cadence); udfmem's ``"auto"``.
In-run RSS is the maximum and mean of RSS read at the start of each call (what the worker
holds between calls). ``--threads 16 --mib-per-thread 24`` gives the 384 MiB-per-call
churn of the reliability issue.
After the last call the process idles 3.5 s, then its RSS is read ("idle RSS"). Trim
time is the sum of the ``took_ms`` of every ``udfmem.trim`` event.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from udfmem.events.parse import parse_line

HERE = Path(__file__).resolve().parent

WORKLOAD = """
import json, sys, time
sys.path.insert(0, {here!r})
import udfmem
from reproducers import thread_churn

@udfmem.tracked(every=4, trim={trim})
class Churn:
    def __call__(self, i):
        self.kept = thread_churn(threads={threads}, mib_per_thread={mib}, keep_every=8, seed=i)
        return len(self.kept)

udf = Churn()
run_rss = []
t0 = time.perf_counter()
for i in range({calls}):
    run_rss.append(udfmem.sample().rss_mb)  # at each call's start: what the worker holds between calls
    udf(i)
run_s = time.perf_counter() - t0
time.sleep(3.5)
mean = round(sum(run_rss) / len(run_rss), 1)
result = {{"idle_rss_mb": udfmem.sample().rss_mb, "run_s": run_s}}
result.update(run_rss_max_mb=max(run_rss), run_rss_mean_mb=mean)
print("RESULT " + json.dumps(result))
"""

VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "nothing": ('"off"', {}),
    "dask MALLOC_TRIM_THRESHOLD_": ('"off"', {"MALLOC_TRIM_THRESHOLD_": "65536"}),
    "blind trim every 8 calls": ("8", {}),
    "udfmem auto": ('"auto"', {}),
}


def run_variant(trim: str, extra_env: dict[str, str], calls: int, threads: int, mib: int) -> dict[str, Any]:
    """Run the workload in a fresh interpreter; in-run and idle RSS, trims and their total time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UDFMEM_", "MALLOC_"))}
    env.update(extra_env)
    code = textwrap.dedent(WORKLOAD.format(here=str(HERE), trim=trim, calls=calls, threads=threads, mib=mib))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    trims = [e for e in _events(proc.stderr) if e["event"] == "udfmem.trim"]
    result["trims"] = len(trims)
    result["trim_ms"] = round(sum(t["took_ms"] for t in trims), 1)
    return result


def _events(text: str) -> list[dict[str, Any]]:
    return [e for e in map(parse_line, text.splitlines()) if e is not None]


def main() -> int:
    """Run every variant and print the table (or JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=160)
    parser.add_argument("--threads", type=int, default=8, help="churning threads per call (default 8)")
    parser.add_argument("--mib-per-thread", type=int, default=16, help="MiB each thread churns per call (default 16)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        name: run_variant(trim, env, args.calls, args.threads, args.mib_per_thread)
        for name, (trim, env) in VARIANTS.items()
    }
    blind, auto = results["blind trim every 8 calls"], results["udfmem auto"]
    summary = {
        "auto_minus_blind_idle_rss_mb": round(auto["idle_rss_mb"] - blind["idle_rss_mb"], 1),
        "auto_minus_blind_run_rss_mean_mb": round(auto["run_rss_mean_mb"] - blind["run_rss_mean_mb"], 1),
        "auto_over_blind_trim_time": round(auto["trim_ms"] / blind["trim_ms"], 3) if blind["trim_ms"] else None,
    }
    if args.json:
        print(json.dumps({"calls": args.calls, "variants": results, "summary": summary}))
        return 0
    print(f"{args.calls} calls, {args.threads * args.mib_per_thread} MiB churned per call, then 3.5 s idle")
    print(
        f"{'variant':32s} {'run RSS max':>11s} {'mean':>7s} {'idle RSS MiB':>12s} {'trims':>6s} {'trim ms':>9s}"
        f" {'run s':>7s}"
    )
    for name, r in results.items():
        print(
            f"{name:32s} {r['run_rss_max_mb']:11.1f} {r['run_rss_mean_mb']:7.1f} {r['idle_rss_mb']:12.1f}"
            f" {r['trims']:6d} {r['trim_ms']:9.1f} {r['run_s']:7.1f}"
        )
    print(f"auto idle RSS - blind idle RSS: {summary['auto_minus_blind_idle_rss_mb']} MiB (goal: within 10)")
    print(f"auto trim time / blind trim time: {summary['auto_over_blind_trim_time']} (goal: <= 0.2)")
    print(f"auto in-run mean RSS - blind: {summary['auto_minus_blind_run_rss_mean_mb']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
