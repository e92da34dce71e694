"""Costs that must not grow with the number of tracked UDFs in one process.

Run: ``python benchmarks/bench_many_udfs.py`` (``--json`` for machine output,
``--classes 1,1000,10000`` for the cases, ``--rounds``, ``--idle-s``).

Engines and test suites define UDF classes at runtime, thousands per process. For each
case (1, 1,000 and 10,000 live tracked classes) one worker process defines the classes,
calls each once (so each is bound: a window, a timer watch), and then reports:

- bind: the first call of each class (which binds it), wall time per class, and the
  timer's visits while binding;
- idle timer: the process's CPU time over ``--idle-s`` seconds of idle right after the
  binds (only the timer thread runs: each state's idle decision, then visits backing off
  to one a minute), as CPU seconds per minute, and its visits;
- snapshot: the per-call time of one more class with ``every=1`` (each call a snapshot,
  ``trim="off"`` as in ``bench_overhead.py``), best of 5 per round, median over rounds.
  The workers' rounds are interleaved, so machine noise hits every case alike.

Target: a snapshot with 10,000 classes within 1.5x of one with a single class. Each
worker's stderr (the events) goes to a real file, as in a Ray worker.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def worker(classes: int) -> None:
    """One case: answer the driver's commands (one JSON line each) on stdin/stdout."""
    import udfmem
    from udfmem.runtime import timer as _timer

    sys.stderr = tempfile.TemporaryFile("w", buffering=1)  # noqa: SIM115 (a real file for the process's life)
    visits = [0]
    real_visit = _timer.Timer.visit

    def counted(obj: Any, now: float) -> float | None:
        visits[0] += 1
        return real_visit(obj, now)

    _timer.Timer.visit = staticmethod(counted)  # type: ignore[method-assign]
    keep: list[Any] = []
    snap: Any = None
    for line in sys.stdin:
        command = json.loads(line)
        out: dict[str, Any] = {}
        if command["do"] == "bind":
            before = visits[0]
            took = 0.0
            for i in range(classes - 1):  # the background classes: defaults (trim auto, every_s 60: watched)
                cls = udfmem.tracked(type(f"Background{i}", (), {"__call__": lambda self, x: x}))
                obj = cls()
                start = time.perf_counter()
                obj(0)
                took += time.perf_counter() - start
                keep.append(obj)
            snap_cls = udfmem.tracked(every=1, trim="off")(type("Measured", (), {"__call__": lambda self, x: x}))
            snap = snap_cls()
            start = time.perf_counter()
            snap(0)
            took += time.perf_counter() - start
            out = {"bind_ms_per_class": took / classes * 1000, "bind_visits": visits[0] - before}
        elif command["do"] == "idle":
            before, cpu, wall = visits[0], time.process_time(), time.perf_counter()
            time.sleep(command["s"])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out = {"idle_cpu_s_per_min": cpu / wall * 60, "idle_visits_per_min": (visits[0] - before) / wall * 60}
        elif command["do"] == "snap":
            number = command["number"]
            best = min(timeit.repeat("snap(1)", number=number, repeat=5, globals={"snap": snap})) / number
            out = {"snapshot_us": best * 1e6}
        elif command["do"] == "quit":
            return
        print(json.dumps(out), flush=True)


class Worker:
    """A worker process for one case, driven line by line."""

    def __init__(self, classes: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
        self.classes = classes
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--worker", str(classes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def send(self, **command: Any) -> None:
        """Send one command (its answer is read by :meth:`answer`)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        """The answer to the last command."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.classes}-class worker died ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, **command: Any) -> dict[str, Any]:
        """Send a command and wait for its answer."""
        self.send(**command)
        return self.answer()

    def close(self) -> None:
        """Stop the worker."""
        self.send(do="quit")
        self.proc.wait(timeout=60)


def run(cases: list[int], rounds: int, idle_s: float, number: int) -> dict[str, Any]:
    """Every case's figures, the snapshot rounds interleaved; and the ratios to the smallest case."""
    workers = [Worker(n) for n in cases]
    results: dict[int, dict[str, Any]] = {}
    try:
        for w in workers:  # one at a time: binding is timed by the wall clock
            results[w.classes] = w.ask(do="bind")
        for w in workers:  # together: each measures its own CPU time
            w.send(do="idle", s=idle_s)
        for w in workers:
            results[w.classes].update(w.answer())
        snaps: dict[int, list[float]] = {w.classes: [] for w in workers}
        for _ in range(rounds):
            for w in workers:
                snaps[w.classes].append(w.ask(do="snap", number=number)["snapshot_us"])
        for n, values in snaps.items():
            results[n]["snapshot_us"] = statistics.median(values)
            results[n]["snapshot_us_rounds"] = [round(v, 2) for v in values]
    finally:
        for w in workers:
            try:
                w.close()
            except Exception:
                w.proc.kill()
    base = results[cases[0]]
    report: dict[str, Any] = {"cases": {}, "rounds": rounds, "idle_s": idle_s, "python": sys.version.split()[0]}
    for n in cases:
        r = results[n]
        report["cases"][str(n)] = {
            "snapshot_us": round(r["snapshot_us"], 2),
            "snapshot_over_smallest": round(r["snapshot_us"] / base["snapshot_us"], 2),
            "snapshot_us_rounds": r["snapshot_us_rounds"],
            "bind_ms_per_class": round(r["bind_ms_per_class"], 3),
            "bind_visits": r["bind_visits"],
            "idle_cpu_s_per_min": round(r["idle_cpu_s_per_min"], 3),
            "idle_visits_per_min": round(r["idle_visits_per_min"], 1),
        }
    return report


def main() -> int:
    """Run the cases and print the table (or JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--classes", default="1,1000,10000", help="the cases: live tracked classes per process")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000, help="snapshots timed per repeat")
    parser.add_argument("--idle-s", type=float, default=20.0, help="idle seconds measured after the binds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return 0
    started = time.perf_counter()
    cases = sorted(int(n) for n in args.classes.split(","))
    report = run(cases, args.rounds, args.idle_s, args.number)
    report["bench_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"{'classes':>8} {'snapshot us':>12} {'x smallest':>10} {'bind ms/class':>14} {'bind visits':>12}"
        f" {'idle CPU s/min':>15} {'idle visits/min':>16}"
    )
    for n, r in report["cases"].items():
        print(
            f"{n:>8} {r['snapshot_us']:12.2f} {r['snapshot_over_smallest']:10.2f} {r['bind_ms_per_class']:14.3f}"
            f" {r['bind_visits']:12d} {r['idle_cpu_s_per_min']:15.3f} {r['idle_visits_per_min']:16.1f}"
        )
    print(f"target: a snapshot with the most classes <= 1.5x the smallest case; whole benchmark {report['bench_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
