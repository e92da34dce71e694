"""Pressure-aware trimming: in-run RSS of ``trim="auto"`` against ``trim=4`` under a real memory limit.

Run (root, cgroup v1 at /sys/fs/cgroup/memory): ``python benchmarks/bench_trim_pressure.py``
(``--json`` for machine output; ``--calls N``, ``--runs R``).

The workload is ``bench_trim.py``'s 384 MiB churn: every call churns 384 MiB through 16
threads (4-120 KiB buffers freed by the main thread, 1 in 8 kept until the next call),
snapshots every 4 calls (``--every N`` for the ``"auto"`` runs: it decides only at
snapshots). Each run is a fresh process that first moves itself into a fresh child
cgroup, so udfmem reads that cgroup's limit and usage.

1. ``trim=4`` runs without a limit: the cgroup's peak working set
   (``memory.max_usage_in_bytes``) is its working set.
2. The limit is set so that this working set is 80% of it (20% headroom).
3. ``trim=4``, ``"auto"`` and ``"auto"`` without a limit (far from any limit: the 5%
   budget) run, interleaved, ``--runs`` times each.

Per run: in-run RSS (mean and max of RSS read at the start of each call: what the
worker holds between calls), the cgroup's peak working set, the trims and their total
``took_ms``, the trim time's share of the run's wall time, whether it was OOM-killed,
and the median headroom's share of the limit at its snapshots.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from udfmem.events.parse import parse_line

HERE = Path(__file__).resolve().parent
V1_ROOT = Path("/sys/fs/cgroup/memory")
HEADROOM = 0.20  # the limit leaves this share of itself over trim=4's working set

WORKLOAD = """
import json, os, sys, time
with open(os.path.join({cgroup!r}, "cgroup.procs"), "w") as f:  # before udfmem reads the limit
    f.write(str(os.getpid()))
sys.path.insert(0, {here!r})
import udfmem
from reproducers import thread_churn

@udfmem.tracked(every={every}, trim={trim})
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
print("RESULT " + json.dumps({{"run_s": run_s, "run_rss": run_rss}}), flush=True)
"""


def available() -> str | None:
    """Why this cannot run here (not root, no cgroup v1 memory controller), or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to make a cgroup"
    if not (V1_ROOT / "memory.limit_in_bytes").exists():
        return "needs a cgroup v1 memory controller at /sys/fs/cgroup/memory"
    return None


def run_churn(
    trim: str,
    limit_mib: float | None,
    calls: int = 60,
    threads: int = 16,
    mib: int = 24,
    timeout: float = 600,
    every: int = 4,
) -> dict[str, Any]:
    """Run the churn under ``trim`` in a fresh child cgroup (limited to ``limit_mib`` MiB, or not); its figures.

    Snapshots come every ``every`` calls (``"auto"`` decides only there).

    The cgroup is removed afterwards. ``killed`` is True when the process died of a signal
    (the cgroup's OOM killer) before it finished; its figures are then what it measured
    up to there (the events it wrote), without the in-run RSS.
    """
    cgroup = V1_ROOT / f"udfmem-trimp-{os.getpid()}-{time.monotonic_ns()}"
    cgroup.mkdir()
    try:
        if limit_mib is not None:
            (cgroup / "memory.limit_in_bytes").write_text(str(int(limit_mib * 1024 * 1024)))
        code = textwrap.dedent(
            WORKLOAD.format(
                cgroup=str(cgroup), here=str(HERE), trim=trim, calls=calls, threads=threads, mib=mib, every=every
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UDFMEM_", "MALLOC_"))}
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        peak = int((cgroup / "memory.max_usage_in_bytes").read_text()) / (1024 * 1024)
        oom_kills = _oom_kills(cgroup)
    finally:
        for _ in range(100):  # empty once its process is reaped (page cache is moved to the parent)
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.05)
    events = [e for e in map(parse_line, proc.stderr.splitlines()) if e is not None]
    result_line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    out: dict[str, Any] = {"trim": trim, "limit_mb": limit_mib, "peak_working_set_mb": round(peak, 1)}
    out["killed"] = proc.returncode < 0 or oom_kills > 0
    if result_line is None and not out["killed"]:
        raise RuntimeError(f"the churn failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    trims = [e for e in events if e["event"] == "udfmem.trim"]
    snaps = [e for e in events if e["event"] == "udfmem.snapshot"]
    out["trims"] = len(trims)
    out["trim_ms"] = round(sum(t["took_ms"] for t in trims), 1)
    shares = [s["headroom_mb"] / s["limit_mb"] for s in snaps if s.get("headroom_mb") is not None and s["limit_mb"]]
    out["headroom_share"] = round(statistics.median(shares), 3) if shares else None
    if result_line is not None:
        result = json.loads(result_line[7:])
        rss = result["run_rss"][1:]  # the first call starts before any churn
        out["run_s"] = round(result["run_s"], 2)
        out["run_rss_mean_mb"] = round(statistics.fmean(rss), 1)
        out["run_rss_max_mb"] = max(rss)
        out["trim_share"] = round(out["trim_ms"] / 1000 / result["run_s"], 3)
    return out


def _oom_kills(cgroup: Path) -> int:
    """The cgroup's OOM kills (v1 ``memory.oom_control``'s ``oom_kill``; 0 where the kernel does not say)."""
    try:
        for line in (cgroup / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def limit_for(working_set_mb: float) -> float:
    """The limit under which ``working_set_mb`` leaves ``HEADROOM`` of it free."""
    return working_set_mb / (1 - HEADROOM)


def main() -> None:
    """Measure trim=4's working set, set the limit, run the variants interleaved; print a table or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--every", type=int, default=4, help="snapshots every N calls for the auto variants")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    why = available()
    if why is not None:
        sys.exit(f"bench_trim_pressure: {why}")
    base = run_churn("4", None, args.calls)
    limit = round(limit_for(base["peak_working_set_mb"]), 1)
    rows: list[dict[str, Any]] = []
    for _ in range(args.runs):
        rows.append({"variant": "trim=4 under the limit", **run_churn("4", limit, args.calls)})
        rows.append({"variant": "auto under the limit", **run_churn('"auto"', limit, args.calls, every=args.every)})
        rows.append({"variant": "auto, no limit", **run_churn('"auto"', None, args.calls, every=args.every)})
    if args.json:
        print(json.dumps({"working_set_mb": base["peak_working_set_mb"], "limit_mb": limit, "runs": rows}, indent=1))
        return
    print(f"trim=4 working set {base['peak_working_set_mb']} MiB -> limit {limit} MiB ({HEADROOM:.0%} headroom)")
    keys = ("run_rss_mean_mb", "run_rss_max_mb", "peak_working_set_mb", "trims", "trim_ms", "trim_share")
    print("variant | " + " | ".join(keys) + " | headroom_share | killed")
    for row in rows:
        print(" | ".join(str(row.get(k)) for k in ("variant", *keys, "headroom_share", "killed")))


if __name__ == "__main__":
    main()
