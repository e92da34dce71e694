"""The online detector over real runs: detection delay, one event per change, false alarms, attribution, cost.

Run: ``python benchmarks/bench_suspect.py [--runs 10] [--healthy-runs 20] [--json]``.

Each run is a fresh interpreter with a real tracked UDF (``every=8``, ~0.5 ms of work per
call besides its allocations, unless said) whose ``udfmem.suspect`` lines are read back,
each with the call of the snapshot it followed (when it was said):
- **delay**: the call at which the first suspect event names the right pattern, for a
  heap leak of 1 MiB per call (goal: by call 96), 256 KiB per call (by call 256) and an
  Arrow leak of 1 MiB per call (by call 96), each over ``--runs`` runs, in rotating leak
  shapes (dict cache, kept batches, closures over batches, a module-level list);
- **attribution**: whether ``growing`` names the leaking attribute first, in those runs;
- **changes** (issue 19's shapes, goal: the right pattern before 1/3 of the run, one event
  per change of truth): a bounded cache that saturates at call 215 of 400 (when its
  heap-leak is withdrawn), a warm-up table that fills by call 160 of 400, a leak of
  256 KiB per call under ``trim=32`` on a fragmented heap (a slow heap walk), and fast
  calls (64 KiB each, ``every=100``, 4 threads, no work, a slow heap walk: how many
  snapshots carry ``heap_*``);
- **false alarms**: suspect events over ``--healthy-runs`` healthy runs with 0-200 MiB
  transients per call (goal: 0), the multi-threaded churn with ``trim="auto"`` (goal: 0)
  and with ``trim="off"`` (retention may be named, a leak never), and a cache that fills
  48 MiB and stops (goal: 0);
- **cost**: in one process, the detector's ``observe`` on a snapshot that brings no
  judgement, a judgement of a full series, and one attribute inspection of a UDF object
  with 20 attributes and a module with 50 containers (medians of many).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = str(Path(__file__).resolve().parent / "suspect_shapes.py")
"""The runs' script: the ``Embed`` UDF in one shape (tests/test_suspect.py runs it too)."""
NAMED = {"cache": "self.cache", "batches": "self.batches", "closures": "self.callbacks", "module": "module KEEP"}
LEAK_SHAPES = tuple(NAMED)


def events_of(
    shape: str, size: int, calls: int, seed: int, *options: str
) -> tuple[list[tuple[int, dict[str, Any]]], float]:
    """One run's suspect events, each with the call it was said at; the share of snapshots carrying ``heap_*``."""
    from udfmem.events.parse import parse_line

    env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    proc = subprocess.run(
        [sys.executable, SHAPES, shape, str(size), str(calls), str(seed), *options],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    said: list[tuple[int, dict[str, Any]]] = []
    call = snaps = heap = 0
    for line in proc.stderr.splitlines():
        e = parse_line(line)
        if e is None:
            continue
        if e["event"] == "udfmem.snapshot":
            call, snaps, heap = e["call"], snaps + 1, heap + ("heap_in_use_mb" in e)
        elif e["event"] == "udfmem.suspect":
            said.append((call, e))
    return said, heap / max(1, snaps)


def suspects(shape: str, size: int, calls: int, seed: int, trim: str = "auto") -> list[dict[str, Any]]:
    """The suspect events of one run."""
    return [e for _, e in events_of(shape, size, calls, seed, f"trim={trim}")[0]]


def delays(label: str, pattern: str, size: int, calls: int, runs: int, shapes: tuple[str, ...]) -> dict[str, Any]:
    """First-detection calls of ``pattern`` over ``runs`` runs, and whether ``growing`` named the right attribute."""
    found: list[int | None] = []
    named = 0
    for run in range(runs):
        shape = shapes[run % len(shapes)]
        events, _ = events_of(shape, size, calls, run, "trim=auto")
        first = next(((at, e) for at, e in events if e["pattern"] == pattern), None)
        found.append(None if first is None else first[0])
        if first is not None and shape in NAMED and str(first[1].get("growing", "")).startswith(NAMED[shape] + " +"):
            named += 1
    hits = [c for c in found if c is not None]
    return {
        "case": label,
        "runs": runs,
        "detected": len(hits),
        "min": min(hits, default=None),
        "median": statistics.median(hits) if hits else None,
        "max": max(hits, default=None),
        "named_right": named if shapes != ("arrow",) else None,
    }


def changes(
    label: str, truth: list[str], shape: str, size: int, calls: int, runs: int, *options: str
) -> dict[str, Any]:
    """Runs of a shape whose truth changes (or not): the patterns said, flips, when first said and last said."""
    sequences: dict[str, int] = {}
    right = first_ok = 0
    firsts: list[int] = []
    lasts: list[int] = []
    covered: list[float] = []
    events_total = 0
    for run in range(runs):
        events, cover = events_of(shape, size, calls, run, *options)
        covered.append(cover)
        events_total += len(events)
        said: list[str] = []
        for _, e in events:
            if not said or said[-1] != e["pattern"]:
                said.append(e["pattern"])
        key = " → ".join(said) or "none"
        sequences[key] = sequences.get(key, 0) + 1
        right += said == truth or (not said and truth[-1:] == ["healthy"])
        if events:
            firsts.append(events[0][0])
            lasts.append(events[-1][0])
            first_ok += events[0][1]["pattern"] == truth[0] and events[0][0] <= calls // 3
    return {
        "case": label,
        "runs": runs,
        "calls": calls,
        "said": sequences,
        "events": events_total,
        "right": right,
        "first_by_third": first_ok,
        "first_median": statistics.median(firsts) if firsts else None,
        "last_median": statistics.median(lasts) if lasts else None,
        "heap_share": statistics.median(covered),
    }


def alarms(label: str, shape: str, runs: int, calls: int, trim: str = "auto") -> dict[str, Any]:
    """Suspect events over ``runs`` healthy runs, by pattern."""
    by_pattern: dict[str, int] = {}
    for run in range(runs):
        for e in suspects(shape, 0, calls, seed=run, trim=trim):
            by_pattern[e["pattern"]] = by_pattern.get(e["pattern"], 0) + 1
    return {"case": label, "runs": runs, "calls": calls, "events": by_pattern}


def costs() -> dict[str, float]:
    """Median µs of: a snapshot's observe without judgement, a judgement of a full series, one inspection."""
    import types

    from udfmem.events.schema import Memory, Snapshot
    from udfmem.policies.detector import MAX_POINTS, Detector
    from udfmem.probes import inspect as _inspect

    module = types.ModuleType("m")
    for i in range(50):
        setattr(module, f"C{i}", list(range(i)))

    class Udf:
        def __init__(self) -> None:
            for i in range(20):
                setattr(self, f"a{i}", {j: bytes(10) for j in range(100)} if i % 2 else list(range(100)))

    udf = Udf()
    det = Detector(lambda: (udf, module))
    mem = Memory(rss_mb=300.0, rss_anon_mb=290.0, peak_rss_mb=300.0, heap_in_use_mb=100.0, heap_free_mb=5.0)
    for i in range(1, MAX_POINTS + 1):
        det.observe(Snapshot(8 * i, mem))
    quiet: list[float] = []
    for i in range(MAX_POINTS + 1, MAX_POINTS + 2001):
        det._since_judged = 0  # measure the O(1) path alone
        t = time.perf_counter()
        det.observe(Snapshot(8 * i, mem))
        quiet.append(time.perf_counter() - t)
    judged: list[float] = []
    for _ in range(200):
        t = time.perf_counter()
        det._judge_now()  # one judgement (with an inspection on growth)
        judged.append(time.perf_counter() - t)
    inspected: list[float] = []
    for _ in range(200):
        t = time.perf_counter()
        _inspect.inspect(udf, module)
        inspected.append(time.perf_counter() - t)
    return {
        "observe_us": statistics.median(quiet) * 1e6,
        "judge_us": statistics.median(judged) * 1e6,
        "inspection_us": statistics.median(inspected) * 1e6,
    }


def main() -> None:
    """Run every case and print the tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--healthy-runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mib = 1 << 20
    detection = [
        delays("heap leak 1 MiB/call (goal: by call 96)", "heap-leak", mib, 160, args.runs, LEAK_SHAPES),
        delays("heap leak 256 KiB/call (goal: by call 256)", "heap-leak", mib // 4, 320, args.runs, LEAK_SHAPES),
        delays("Arrow leak 1 MiB/call (goal: by call 96)", "arrow-leak", mib, 160, args.runs, ("arrow",)),
    ]
    kib = 1 << 10
    fast = ("work_us=0", "every=100", "threads=4", "holes=8000")
    shifts = [
        changes("bounded cache, 1 MiB/call until call 215", ["heap-leak", "healthy"], "saturates", mib, 400, args.runs),
        changes("warm-up table, full at call 160", ["heap-leak", "healthy"], "table", mib, 400, args.runs),
        changes(
            "leak 256 KiB/call, trim=32, slow heap walk",
            ["heap-leak"],
            "trims",
            256 * kib,
            400,
            args.runs,
            "trim=32",
            "holes=8000",
        ),
        changes(
            "fast calls: 64 KiB/call, every=100, 4 threads, slow heap walk",
            ["heap-leak"],
            "fast",
            64 * kib,
            6000,
            args.runs,
            *fast,
        ),
    ]
    false_alarms = [
        alarms("0-200 MiB transients (goal: 0 events)", "noisy", args.healthy_runs, 400),
        alarms("8-thread churn, trim=auto (goal: 0 events)", "churn", 3, 200),
        alarms("8-thread churn, trim=off (retention may be named, never a leak)", "churn", 3, 200, trim="off"),
        alarms("cache fills 48 MiB and stops (goal: 0 events)", "bounded", 5, 400),
    ]
    result = {"detection": detection, "changes": shifts, "false_alarms": false_alarms, "cost": costs()}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| case | runs | detected | said at call min / median / max | growing named right |")
    print("|---|---|---|---|---|")
    for d in detection:
        named = "n/a" if d["named_right"] is None else f"{d['named_right']} of {d['runs']}"
        print(f"| {d['case']} | {d['runs']} | {d['detected']} | {d['min']} / {d['median']} / {d['max']} | {named} |")
    print(
        "\n| case | runs x calls | patterns said (runs) | events | right | first said by 1/3 "
        "| first / last said (median call) | snapshots with heap_* (median) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for c in shifts:
        said = "; ".join(f"{k} ({v})" for k, v in sorted(c["said"].items()))
        print(
            f"| {c['case']} | {c['runs']} x {c['calls']} | {said} | {c['events']} | {c['right']} of {c['runs']} | "
            f"{c['first_by_third']} of {c['runs']} | {c['first_median']} / {c['last_median']} | {c['heap_share']:.0%} |"
        )
    print("\n| healthy case | runs x calls | suspect events |")
    print("|---|---|---|")
    for a in false_alarms:
        events = ", ".join(f"{k}: {v}" for k, v in sorted(a["events"].items())) or "none"
        print(f"| {a['case']} | {a['runs']} x {a['calls']} | {events} |")
    c = result["cost"]
    print(
        f"\ncost: observe without judgement {c['observe_us']:.2f} µs; a judgement of a full healthy series "
        f"{c['judge_us']:.0f} µs; an inspection (20 attributes, 50 module containers) {c['inspection_us']:.0f} µs"
    )


if __name__ == "__main__":
    main()
