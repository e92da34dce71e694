"""``udfmem diagnose`` throughput and peak memory against a naive reader, side by side in one run.

Run: ``python benchmarks/bench_diagnose.py`` (``--json`` for machine output; ``--size-mb 10
--big-mb 50 --rounds 1`` for a quick check; ``--no-naive-big`` skips the naive reader on the
big log, which holds every event in memory: 7-9 GiB at 1 GiB).

Logs are generated into a temporary directory (``--dir``, default ``/tmp``) and deleted
afterwards. Every udfmem line is rendered by udfmem's own renderer (``_render.head`` and
``_render.render`` over ``_events`` tuples), as a worker writes it: 200 workers (pid, host,
the emitter's worker tag) of three UDFs, each a setup line, a snapshot every 32 calls
(``py_blocks`` on one in eight, a ``final=true`` snapshot at the end), trims and the odd
``udfmem.suspect`` line, workers steady, leaking, fragmenting or holding Arrow memory. A
third of the workers' lines carry Ray's driver-console prefix
(``(MapWorker(MapBatches(Embed)) pid=4242, ip=10.0.0.5) ``). One line in ten is foreign:
Ray's own log lines (driver, raylet, core worker, progress bars, autoscaler), worker
output and 6-line tracebacks, a few of them mentioning ``udfmem.`` without being events.

Two logs of ``--size-mb`` (logfmt, JSON) measure throughput, two of ``--big-mb`` (1 GiB by
default) peak RSS. Each reader runs as a fresh process, rounds interleaved (udfmem, naive,
udfmem, naive, ...), started by a small launcher that reports what ``os.wait4`` says of it:
wall time (lines/s = lines in the file / wall seconds), user+sys CPU time, and peak RSS
(``ru_maxrss``; the launcher's ~8 MiB is the floor, see :data:`LAUNCHER`). Reported: the
median and the best of ``--rounds`` runs, and udfmem / naive ratios of the medians.

- **udfmem**: ``python -m udfmem diagnose FILE --json`` end to end (interpreter start,
  imports, reading, judging, printing);
- **naive**: what a user would write: every line containing ``udfmem.`` parsed with
  ``json.loads`` from its first ``{`` (JSON) or ``re.findall`` over ``key=value`` (logfmt),
  every parsed dict kept in a list. It types nothing and judges nothing.

Goals (the diagnose issue): >= 200,000 lines/s on logfmt and on JSON with 10% foreign
lines; <= 100 MiB peak RSS on a 1 GiB log.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from udfmem.emit.emitter import worker_tag
from udfmem.events import parse as _parse
from udfmem.events import render as _render
from udfmem.events import schema as _events

NAIVE = r"""
import json, re, sys

PAIR = re.compile(r"(\w+)=(\S+)")
path, fmt = sys.argv[1], sys.argv[2]
events = []
with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
        if "udfmem." not in line:
            continue
        if fmt == "json":
            try:
                events.append(json.loads(line[line.find("{"):]))
            except ValueError:
                pass
        else:
            events.append(dict(PAIR.findall(line)))
print(len(events))
"""

# A child's ru_maxrss counts the image it was forked from: spawned from this process (which
# holds a generator's state) every reader would show this process's RSS. A small launcher
# spawns the reader instead and reports what wait4 says of it; its own ~8 MiB is the floor.
LAUNCHER = r"""
import os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""

UDFS = ("Embed", "Tokenize", "Classify")
KINDS = ("steady", "leak", "fragment", "arrow")
CHUNK = 8 * 1024 * 1024  # bytes written per write()
EVERY = 32  # calls between snapshots
FOREIGN_SHARE = 0.10
GOAL_LINES_S = 200_000
GOAL_RSS_MIB = 100.0


@dataclass
class Worker:
    """One worker process: its rendered heads, its line prefix and its memory's shape."""

    udf: str
    pid: int
    host: str
    tag: str
    prefix: str
    kind: str
    base: float  # private RSS after setup, MiB
    slope: float  # MiB per call (leak, fragment, arrow)
    heads: dict[str, str] = field(default_factory=dict)  # event name -> rendered head
    call: int = 0
    snapshots: int = 0
    released: float = 0.0


def make_workers(n: int, fmt: str, rng: random.Random) -> list[Worker]:
    """``n`` workers on ``n // 8`` hosts; a third of them behind Ray's driver-console prefix."""
    hosts = [f"10.0.{i // 250}.{i % 250 + 2}" for i in range(max(1, n // 8))]
    pids = rng.sample(range(1000, 4_000_000), n)
    workers = []
    for i in range(n):
        udf, host, pid = UDFS[i % len(UDFS)], hosts[i % len(hosts)], pids[i]
        prefix = f"(MapWorker(MapBatches({udf})) pid={pid}, ip={host}) " if i % 3 == 0 else ""
        kind = KINDS[i % len(KINDS)]
        slope = {"steady": 0.0, "leak": 0.02, "fragment": 0.01, "arrow": 0.015}[kind] * rng.uniform(0.5, 1.5)
        w = Worker(udf, pid, host, worker_tag(host, pid), prefix, kind, rng.uniform(300, 2500), slope)
        w.heads = {name: _render.head(fmt, name, udf, pid, host, w.tag) for name in _events.BY_NAME}
        workers.append(w)
    return workers


def memory(w: Worker, rng: random.Random, blocks: bool) -> _events.Memory:
    """The memory block of ``w`` at its current call: its trend plus noise, related as udfmem's probes relate them."""
    grown = w.slope * w.call - w.released
    noise = rng.random() * 8.0
    anon = w.base + noise + (grown if w.kind in ("leak", "fragment") else 0.0)
    arrow = 40.0 + (grown if w.kind == "arrow" else 0.0)
    free = 20.0 + noise + (grown if w.kind == "fragment" else 0.0)
    in_use = anon - free - arrow - 30.0  # malloc in use, mmapped chunks included
    shared = 180.0
    rss = anon + shared
    return _events.Memory(
        rss_mb=round(rss, 1),
        rss_anon_mb=round(anon, 1),
        rss_shared_mb=shared,
        peak_rss_mb=round(rss + noise, 1),
        arrow_live_mb=round(arrow, 1),
        arrow_backend="jemalloc",
        gap_mb=round(rss - arrow, 1),
        heap_in_use_mb=round(in_use, 1),
        heap_free_mb=round(free, 1),
        heap_mmap_mb=64.0,
        limit_mb=8192.0,
        headroom_mb=round(8192.0 - rss, 1),
        py_blocks=1_200_000 + w.call * 3 if blocks else None,
    )


def events_of(w: Worker, rng: random.Random) -> list[_events.Event]:
    """The worker's next events: its setup at first, then a snapshot, now and then a trim or suspect."""
    if w.call == 0 and w.snapshots == 0:
        w.snapshots = 1
        return [_events.Setup("__init__", round(rng.uniform(2, 40), 2), memory(w, rng, True), round(w.base, 1))]
    w.call += EVERY
    w.snapshots += 1
    out: list[_events.Event] = [
        _events.Snapshot(w.call, memory(w, rng, w.snapshots % 8 == 0), round(w.slope * w.call, 1), EVERY, 1.6)
    ]
    if w.kind in ("fragment", "arrow") and w.snapshots % 50 == 0:
        released = round(w.slope * EVERY * 40, 1)
        w.released += released
        out.append(_events.Trim("auto", released, released * 0.8, released * 0.2, 3.4, 900.0, 900.0 - released))
    elif w.kind == "leak" and w.snapshots % 400 == 0:
        out.append(
            _events.Suspect("growth", w.call // 2, round(w.slope * 100, 2), 50_000, "anon", "slope over 400", "fix")
        )
    return out


def foreign(rng: random.Random, ts: str, w: Worker) -> list[str]:
    """A foreign entry: one of Ray's log lines, a worker's own output or a traceback (6 lines)."""
    day, clock = ts[:10], ts[11:23].replace(".", ",")
    pick = rng.randrange(10)
    n = rng.randrange(100_000)
    if pick == 0:
        return [
            f"{w.prefix}Traceback (most recent call last):",
            f'{w.prefix}  File "/home/ray/anaconda3/lib/python3.11/site-packages/ray/data/_internal/execution/'
            f'operators/map_transformer.py", line 287, in __call__',
            f"{w.prefix}    yield from self._batch_fn(input, ctx)",
            f'{w.prefix}  File "/app/pipeline/{w.udf.lower()}.py", line {n % 400}, in __call__',
            f'{w.prefix}    out = self.model(batch["text"])',
            f"{w.prefix}RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 22.20 GiB total)",
        ]
    if pick == 1:
        return [
            f"{day} {clock}\tINFO streaming_executor.py:{n % 900}"
            f" -- Execution plan: InputDataBuffer[Input] -> TaskPoolMapOperator[ReadParquet] ->"
            f" ActorPoolMapOperator[MapBatches({w.udf})] -> TaskPoolMapOperator[Write]"
        ]
    if pick == 2:
        return [f"[{day} {clock} I {w.pid} {w.pid + 57}] core_worker.cc:{n % 4000}: Finished task {n:016x}, OK"]
    if pick == 3:
        return [
            f"(raylet, ip={w.host}) [{day} {clock} E {n} {n + 1}] (raylet) node_manager.cc:3069: 1 Workers"
            f" (tasks / actors) killed due to memory pressure (OOM), 0 Workers crashed due to other reasons"
            f" at node (ID: {n:056x}, IP: {w.host}) over the last time period."
        ]
    if pick == 4:
        return [
            f"Running Dataset: dataset_3_0. Active & requested resources: 8/8 CPU, 1.9GB/4.0GB object store:"
            f" : {n} row [00:{n % 60:02d}, 98.1 row/s]"
        ]
    if pick == 5:
        return ["(autoscaler +1m2s) Tip: use `ray status` to view detailed cluster status. To disable these"]
    if pick == 6:
        return [f"{w.prefix}/app/pipeline/setup.py:12: UserWarning: udfmem.tracked: UDFMEM_EVERY is 0; using 32"]
    if pick == 7:
        return [f'{w.prefix}{{"level": "info", "msg": "batch done", "rows": {n}, "ms": {n % 997}}}']
    return [f"{w.prefix}INFO {day} {clock} {w.udf.lower()}.py:{n % 300} processed batch {n} in 0.{n % 97:02d}s"]


def write_log(
    path: Path,
    fmt: str,
    size_mb: float,
    n_workers: int,
    seed: int = 7,
    layout: Callable[[str], str] | None = None,
    snapshots: int | None = None,
) -> tuple[int, int]:
    """Write a log of about ``size_mb`` MiB at ``path``; returns (lines, udfmem event lines).

    ``layout`` rewrites each rendered udfmem line (another key order, extra keys, another
    renderer); ``snapshots`` stops once every worker wrote that many snapshots.
    """
    rng = random.Random(seed)
    workers = make_workers(n_workers, fmt, rng)
    target = int(size_mb * 1024 * 1024)
    written = lines = events = foreign_lines = 0
    second, ms = 1_795_375_800, 0  # 2026-11-22T...
    prefix = _render.ts_prefix(second)
    buf: list[str] = []
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        while written + size < target and (snapshots is None or workers[-1].snapshots <= snapshots):
            order = workers[:]
            rng.shuffle(order)
            for w in order:
                ms += rng.randrange(1, 8)
                if ms >= 1000:
                    second, ms = second + ms // 1000, ms % 1000
                    prefix = _render.ts_prefix(second)
                ts = f"{prefix}.{ms:03d}Z"
                for event in events_of(w, rng):
                    line = _render.render(event, w.heads[event.EVENT], ts, fmt)
                    text = w.prefix + (layout(line) if layout is not None else line) + "\n"
                    buf.append(text)
                    size += len(text)
                    events += 1
                    lines += 1
                while foreign_lines < (lines - foreign_lines) * FOREIGN_SHARE / (1 - FOREIGN_SHARE):
                    for text in foreign(rng, ts, w):
                        buf.append(text + "\n")
                        size += len(text) + 1
                        foreign_lines += 1
                        lines += 1
                if size >= CHUNK:
                    written += _flush(out, buf)
                    size = 0
        for w in workers:  # the last snapshot of every worker
            event = _events.Snapshot(w.call + 1, memory(w, rng, True), None, 1, 0.1, True)
            line = _render.render(event, w.heads[event.EVENT], f"{prefix}.999Z", fmt)
            buf.append(w.prefix + (layout(line) if layout is not None else line) + "\n")
            events += 1
            lines += 1
        _flush(out, buf)
    return lines, events


def _flush(out: TextIO, buf: list[str]) -> int:
    text = "".join(buf)
    buf.clear()
    out.write(text)
    return len(text)  # ASCII only: characters are bytes


@dataclass
class Run:
    """One reader process, as the kernel accounted it."""

    wall_s: float
    cpu_s: float
    rss_mib: float
    stdout: str


def measure(cmd: list[str]) -> Run:
    """Run ``cmd`` to its end through :data:`LAUNCHER`: wall time, user+sys CPU time and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as figures:
        proc = subprocess.run(
            [sys.executable, "-c", LAUNCHER, figures.name, *cmd], stdout=out, stderr=subprocess.PIPE, check=False
        )
        wall, cpu, maxrss_kib, code = figures.read().split()
        out.seek(0)
        stdout = out.read().decode()
    if proc.returncode != 0 or code != "0":
        raise RuntimeError(f"{cmd} exited {code}: {proc.stderr.decode()[-2000:]}")
    return Run(float(wall), float(cpu), int(maxrss_kib) / 1024, stdout)


def udfmem_cmd(path: Path) -> list[str]:
    """``udfmem diagnose FILE --json``."""
    return [sys.executable, "-m", "udfmem", "diagnose", str(path), "--json"]


def naive_cmd(path: Path, fmt: str) -> list[str]:
    """The naive reader over ``path``."""
    return [sys.executable, "-c", NAIVE, str(path), fmt]


def check(reader: str, run: Run, lines: int, events: int) -> None:
    """Both readers must have seen every event (else the figures compare different work)."""
    if reader == "udfmem":
        seen = json.loads(run.stdout)["lines"]
        if seen["read"] != lines or seen["events"] != events:
            raise RuntimeError(f"udfmem read {seen}, the log has {lines} lines and {events} events")
    elif int(run.stdout) < events:
        raise RuntimeError(f"naive kept {run.stdout.strip()} dicts, the log has {events} events")


def summary(runs: list[Run], lines: int) -> dict[str, Any]:
    """Min and median of each figure over the rounds (lines/s: best and median)."""
    walls = [r.wall_s for r in runs]
    cpus = [r.cpu_s for r in runs]
    rss = [r.rss_mib for r in runs]
    return {
        "runs": len(runs),
        "wall_s": {"min": min(walls), "median": statistics.median(walls), "all": walls},
        "cpu_s": {"min": min(cpus), "median": statistics.median(cpus), "all": cpus},
        "lines_per_s": {"max": lines / min(walls), "median": lines / statistics.median(walls)},
        "lines_per_cpu_s": {"max": lines / min(cpus), "median": lines / statistics.median(cpus)},
        "rss_mib": {"min": min(rss), "median": statistics.median(rss), "max": max(rss)},
    }


def bench(
    path: Path, fmt: str, lines: int, events: int, rounds: int, naive: bool, log: TextIO
) -> dict[str, dict[str, Any]]:
    """Both readers over ``path``, rounds interleaved."""
    runs: dict[str, list[Run]] = {"udfmem": []}
    if naive:
        runs["naive"] = []
    for i in range(rounds):
        for reader in runs:
            run = measure(udfmem_cmd(path) if reader == "udfmem" else naive_cmd(path, fmt))
            check(reader, run, lines, events)
            runs[reader].append(run)
            print(
                f"  {path.name} round {i + 1} {reader}: {run.wall_s:.2f} s wall, {run.cpu_s:.2f} s cpu,"
                f" {run.rss_mib:.1f} MiB",
                file=log,
                flush=True,
            )
    return {reader: summary(r, lines) for reader, r in runs.items()}


def main() -> int:
    """Generate the logs, run both readers side by side, print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=float, default=100, help="throughput logs, MiB each (default 100)")
    parser.add_argument("--big-mb", type=float, default=1024, help="peak-RSS logs, MiB each (default 1024; 0 skips)")
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each reader on each log (default 3)")
    parser.add_argument("--no-naive-big", action="store_true", help="skip the naive reader on the big logs")
    parser.add_argument("--dir", default="/tmp", help="where the logs are written (deleted afterwards)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--scenarios", action="store_true", help="layouts, garbage heads, many workers (issue 18)")
    parser.add_argument("--garbage-mb", type=float, default=100, help="garbage-heads log, MiB (default 100)")
    parser.add_argument("--many-workers", type=int, default=10_000, help="workers of the many-workers log")
    parser.add_argument("--snapshots", type=int, default=200, help="snapshots per worker there (default 200)")
    args = parser.parse_args()
    log = sys.stderr
    if args.scenarios:
        tmp = Path(tempfile.mkdtemp(prefix="udfmem-bench-diagnose-", dir=args.dir))
        try:
            found = scenarios(args, tmp, log)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if args.json:
            print(json.dumps(found, indent=2))
        else:
            print_scenarios(found, args)
        return 0
    results: dict[str, Any] = {"workers": args.workers, "rounds": args.rounds, "logs": {}}
    tmp = Path(tempfile.mkdtemp(prefix="udfmem-bench-diagnose-", dir=args.dir))
    try:
        plan = [("throughput", args.size_mb, True), ("big", args.big_mb, not args.no_naive_big)]
        for role, size_mb, naive in plan:
            if size_mb <= 0:
                continue
            for fmt in ("logfmt", "json"):
                path = tmp / f"{role}-{fmt}.log"
                t0 = time.perf_counter()
                lines, events = write_log(path, fmt, size_mb, args.workers)
                took = time.perf_counter() - t0
                mib = path.stat().st_size / 2**20
                print(f"wrote {path.name}: {mib:.0f} MiB, {lines:,} lines in {took:.1f} s", file=log, flush=True)
                entry: dict[str, Any] = {"role": role, "format": fmt, "mib": mib, "lines": lines, "events": events}
                entry["readers"] = bench(path, fmt, lines, events, args.rounds, naive, log)
                results["logs"][f"{role}-{fmt}"] = entry
                path.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    """The side-by-side table: per log, each reader's lines/s, CPU lines/s and peak RSS, and ratios."""
    runs = f"{results['workers']} workers, 10% foreign lines, {results['rounds']} rounds"
    print(f"{runs}; figures are median (best; RSS: max)")
    print(
        f"{'log':18s} {'MiB':>6s} {'lines':>10s} {'reader':7s} {'lines/s wall':>22s} {'lines/s cpu':>22s}"
        f" {'peak RSS MiB':>16s}"
    )
    for name, entry in results["logs"].items():
        readers = entry["readers"]
        for reader, s in readers.items():
            print(
                f"{name:18s} {entry['mib']:6.0f} {entry['lines']:10,d} {reader:7s}"
                f" {s['lines_per_s']['median']:>12,.0f} ({s['lines_per_s']['max']:>7,.0f})"
                f" {s['lines_per_cpu_s']['median']:>12,.0f} ({s['lines_per_cpu_s']['max']:>7,.0f})"
                f" {s['rss_mib']['median']:7.1f} ({s['rss_mib']['max']:6.1f})"
            )
        if "naive" in readers:
            u, n = readers["udfmem"], readers["naive"]
            print(
                f"{'':18s} udfmem / naive: lines/s {u['lines_per_s']['median'] / n['lines_per_s']['median']:.2f}x,"
                f" peak RSS {u['rss_mib']['median'] / n['rss_mib']['median']:.3f}x"
            )
    for name, entry in results["logs"].items():
        u = entry["readers"]["udfmem"]
        if entry["role"] == "throughput":
            rate = u["lines_per_s"]["median"]
            verdict = "met" if rate >= GOAL_LINES_S else "NOT met"
            print(f"goal >= {GOAL_LINES_S:,} lines/s on {name}: {rate:,.0f} (median) - {verdict}")
        else:
            rss = u["rss_mib"]["max"]
            verdict = "met" if rss <= GOAL_RSS_MIB else "NOT met"
            size = f"{entry['mib']:.0f} MiB"
            print(f"goal <= {GOAL_RSS_MIB:.0f} MiB peak RSS on {name} ({size}): {rss:.1f} (max) - {verdict}")


# -- scenarios (issue 18): other layouts, garbage heads, many workers --------------------------

_RAW_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def _fields(line: str) -> dict[str, Any]:
    fields = _parse.parse_line(line)
    assert fields is not None, line
    return fields


def _structlog(renderer: Callable[[Any, str, dict[str, Any]], Any]) -> Callable[[str], str]:
    """A layout: the event as a user's structlog pipeline would render it (fields, then event, level, timestamp)."""

    def layout(line: str) -> str:
        fields = _fields(line)
        event, ts = fields.pop("event"), fields.pop("ts")
        return str(renderer(None, "info", {**fields, "event": event, "level": "info", "timestamp": ts}))

    return layout


def _reordered(line: str) -> str:
    """``ts`` first, then the pairs sorted by name (``event`` among them)."""
    pairs = _RAW_PAIR.findall(line)
    ts = next(v for k, v in pairs if k == "ts")
    return f"ts={ts} " + " ".join(f"{k}={v}" for k, v in sorted(pairs) if k != "ts")


def _extra_keys(line: str) -> str:
    """Extra pairs after ``ts`` and before ``schema``, as a wrapper adding its context would."""
    head, _, rest = line.partition(" ts=")
    ts, _, rest = rest.partition(" ")
    rest = rest.replace(" schema=", " shard=3 schema=")
    return f"{head} ts={ts} level=info logger=udfmem.worker job=backfill-7 {rest}"


def layouts() -> dict[str, tuple[str, Callable[[str], str] | None]]:
    """Every layout the reader accepts: name -> (the format rendered, the rewrite of each udfmem line)."""
    import structlog

    return {
        "udfmem-logfmt": ("logfmt", None),
        "udfmem-json": ("json", None),
        "v1-noschema-logfmt": ("logfmt", lambda line: line.replace(" schema=1", "")),
        "v1-noschema-json": ("json", lambda line: line.replace(',"schema":1', "")),
        "reordered-logfmt": ("logfmt", _reordered),
        "extra-keys-logfmt": ("logfmt", _extra_keys),
        "structlog-kv": ("logfmt", _structlog(structlog.processors.KeyValueRenderer())),
        "structlog-logfmt": ("logfmt", _structlog(structlog.processors.LogfmtRenderer())),
        "structlog-json": ("logfmt", _structlog(structlog.processors.JSONRenderer())),
    }


def write_garbage(path: Path, size_mb: float, seed: int = 11) -> int:
    """``size_mb`` MiB of distinct snapshot-like lines whose heads cannot be read (a pid that is no number)."""
    rng = random.Random(seed)
    target, written, lines = int(size_mb * 2**20), 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            buf = []
            for _ in range(20_000):
                n = rng.getrandbits(64)
                buf.append(
                    f"event=udfmem.snapshot udf=Embed pid=p{n:x} host=10.0.0.{n % 250} worker=w{n:x}"
                    f" ts=2026-11-22T21:30:00.{n % 1000:03d}Z call={32 * (n % 999 + 1)} rss_mb=512.5"
                    f" rss_anon_mb=400.1 peak_rss_mb=530.0 heap_in_use_mb=300.2 heap_free_mb=20.0 schema=1\n"
                )
            written += _flush(out, buf)
            lines += 20_000
    return lines


def udfmem_run(path: Path) -> tuple[Run, dict[str, int]]:
    """``udfmem diagnose --json`` over ``path``: the run and its line counts."""
    run = measure(udfmem_cmd(path))
    return run, json.loads(run.stdout)["lines"]


def scenarios(args: argparse.Namespace, tmp: Path, log: TextIO) -> dict[str, Any]:
    """Layouts (throughput), garbage heads (memory flat), many workers (memory per worker), rounds interleaved."""
    out: dict[str, Any] = {}
    runs: dict[str, list[Run]] = {}
    logs: dict[str, tuple[Path, int, int]] = {}
    for name, (fmt, layout) in layouts().items():
        path = tmp / f"layout-{name}.log"
        lines, events = write_log(path, fmt, args.size_mb, args.workers, layout=layout)
        logs[name] = (path, lines, events)
    for name, size in (("garbage-small", args.garbage_mb / 16), ("garbage", args.garbage_mb)):
        path = tmp / f"{name}.log"
        lines = write_garbage(path, size)
        logs[name] = (path, lines, 0)
    for name, n in (("workers-small", max(1, args.many_workers // 100)), ("workers", args.many_workers)):
        path = tmp / f"{name}.log"
        lines, events = write_log(path, "logfmt", 1e9, n, snapshots=args.snapshots)
        logs[name] = (path, lines, events)
    for path, lines, _ in logs.values():
        print(f"wrote {path.name}: {path.stat().st_size / 2**20:.0f} MiB, {lines:,} lines", file=log, flush=True)
    for i in range(args.rounds):
        for name, (path, lines, events) in logs.items():
            run, seen = udfmem_run(path)
            runs.setdefault(name, []).append(run)
            out.setdefault(name, {"lines": lines, "events": events, "mib": path.stat().st_size / 2**20})["seen"] = seen
            print(
                f"  {name} round {i + 1}: {run.wall_s:.2f} s, {lines / run.wall_s:,.0f} lines/s,"
                f" {run.rss_mib:.1f} MiB, events {seen['events']:,} of {events:,}",
                file=log,
                flush=True,
            )
    for name, entry in out.items():
        entry.update(summary(runs[name], entry["lines"]))
    small, big = out["workers-small"], out["workers"]
    n_small, n_big = max(1, args.many_workers // 100), args.many_workers
    per_worker = (big["rss_mib"]["median"] - small["rss_mib"]["median"]) * 2**20 / (n_big - n_small)
    out["per_worker_bytes"] = per_worker
    return out


def print_scenarios(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The scenarios' table: lines/s per layout, peak RSS of garbage and many workers."""
    print(f"{args.rounds} rounds, figures median (best)")
    print(f"{'log':22s} {'MiB':>6s} {'lines':>10s} {'events read':>16s} {'lines/s':>20s} {'peak RSS MiB':>13s}")
    for name, e in results.items():
        if not isinstance(e, dict):
            continue
        print(
            f"{name:22s} {e['mib']:6.0f} {e['lines']:10,d} {e['seen']['events']:>7,d}/{e['events']:<8,d}"
            f" {e['lines_per_s']['median']:>9,.0f} ({e['lines_per_s']['max']:>8,.0f}) {e['rss_mib']['median']:13.1f}"
        )
    shape = f"{args.many_workers:,} workers x {args.snapshots} snapshots"
    print(f"per worker ({shape}): {results['per_worker_bytes']:,.0f} B")


if __name__ == "__main__":
    sys.exit(main())
