"""Real engine runs that make the ``udfmem diagnose`` scenario corpus in ``tests/data/diagnose/``.

The shapes (UDF classes, engines, settings, truths) are ``benchmarks/shapes.py``'s
``SCENARIOS``; this script runs one on its engine and stores its logs:

- ``ray-data``: ``map_batches`` with ``concurrency=2`` actors at ``num_cpus=0.5`` on a fresh
  local Ray cluster (``ray.init(num_cpus=2)``), ``CALLS`` batches of ``ROWS_PER_BATCH`` rows
  (``ray.data.range``, or ``ray.data.range_tensor`` rows of ``row_kib`` KiB), in blocks of
  ``CALLS_PER_BLOCK`` batches;
- ``ray-actor``: two plain ``@ray.remote(num_cpus=0.5, max_concurrency=…)`` actors, ``calls``
  calls each of ``method``, up to 64 in flight per actor;
- ``geneva``: a Geneva UDF column backfilled over ``calls`` rows (one call per row for a
  scalar UDF), one worker, on a local Ray cluster;
- ``daft``: Daft's native runner, one UDF over ``calls`` rows (``@daft.cls`` over the
  tracked class), in this process; ``daft-ray``: the same on Daft's Ray runner.

udfmem settings go to the workers through ``udfmem.worker_env(every=…, trim=…)``. Ray's
worker log files (``worker-*.err`` and ``worker-*.out``, every line as Ray wrote it, Ray's
own included) are concatenated and gzipped to ``<OUTDIR>/<scenario>.log.gz``; the
driver's console (stdout and stderr, where Ray relays worker lines behind
``(MapWorker(...) pid=…)`` prefixes) to ``<OUTDIR>/<scenario>.console.log.gz``. For Daft's
native runner the process's own output is the worker's log (``.log.gz``).
``EXPECTED.json`` there maps each scenario to its truth (``shapes.Scenario.entry``).

    python tests/engines/diagnose_scenarios.py NAME OUTDIR      # one scenario (and its EXPECTED entry)
    python tests/engines/diagnose_scenarios.py --all OUTDIR     # every scenario, one at a time (~40 min)
    python tests/engines/diagnose_scenarios.py --derive OUTDIR  # the no-split logs from stored ones
    python tests/engines/diagnose_scenarios.py --list

Run it with the udfmem you want in the logs first on ``PYTHONPATH`` (Ray's workers inherit
the driver's environment; the driver changes into its Ray temp directory first, so that
Ray, which puts the driver's working directory on its workers' ``sys.path``, cannot
shadow it with a checkout in the current directory). Each scenario runs in its own
interpreter (the console is its output) and cluster, prints its runtime and, per worker,
its snapshot count and the first and last values of the main snapshot fields. Scenarios
with ``busy`` set run that many ``while 1: pass`` processes beside them (a loaded machine).
Each needs up to ~3 GiB and 20-90 s on 2 cores.

``--derive`` writes logs without the private/shared split (issue 19, item 11: older udfmem,
platforms without ``statm``): ``no-split-<name>`` is stored scenario ``<name>``'s worker
file with ``rss_anon_mb`` and ``rss_shared_mb`` dropped from every udfmem line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import reproducers
import shapes
from shapes import CALLS_PER_BLOCK, ROWS_PER_BATCH, SCENARIOS, Scenario

import udfmem

DERIVED = {
    "no-split-healthy": "healthy",
    "no-split-pyarrow-healthy": "pyarrow-healthy",
    "no-split-heap-leak-cache": "heap-leak-cache",
}
"""Derived logs without the private/shared split: name → the stored scenario they come from."""
_SPLIT = re.compile(rb" rss_(?:anon|shared)_mb=\S+")
_HOST = re.compile(rb"(\bhost=[^\s\"]+)")


def gzip_to(target: Path, data: bytes) -> None:
    """Write ``data`` gzipped to ``target`` (no name, no time in the header: the same bytes give the same file)."""
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)


def _ray_start() -> str:
    """A fresh local Ray cluster on 2 CPUs in a short temp directory (also this process's cwd); the directory."""
    import ray

    temp = tempfile.mkdtemp(prefix="udf", dir="/tmp")  # Ray's socket paths must stay short
    os.chdir(temp)  # Ray puts the driver's cwd on the workers' sys.path: keep checkouts out of it
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False)
    ray.cloudpickle.register_pickle_by_value(reproducers)  # workers cannot import benchmarks/: sent with the UDF
    ray.cloudpickle.register_pickle_by_value(shapes)
    return temp


def _ray_stop(temp: str) -> bytes:
    """Let released actors write their final snapshots, stop Ray; the worker log files' bytes."""
    import ray

    time.sleep(3)
    ray.shutdown()
    logs = sorted(Path(temp, "session_latest", "logs").glob("worker-*"))
    data = b"".join(p.read_bytes() for p in logs)
    os.chdir("/")
    shutil.rmtree(temp, ignore_errors=True)
    return data


def run_ray_data(spec: Scenario) -> bytes:
    """``spec`` through Ray Data's ``map_batches``; the worker files' bytes."""
    import ray

    temp = _ray_start()
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = 120
    ctx.enable_progress_bars = False
    rows, blocks = spec.calls * ROWS_PER_BATCH, spec.calls // CALLS_PER_BLOCK
    if spec.data == "tensor":
        ds = ray.data.range_tensor(rows, shape=(spec.row_kib * 1024 // 8,), override_num_blocks=blocks)
    else:
        ds = ray.data.range(rows, override_num_blocks=blocks)
    tracked = udfmem.tracked(every=spec.every)(spec.make())
    out = ds.map_batches(
        tracked,
        batch_size=ROWS_PER_BATCH,
        batch_format=spec.batch_format,
        concurrency=2,
        num_cpus=0.5,
        runtime_env={"env_vars": udfmem.worker_env(every=spec.every, trim=spec.trim)},
    ).materialize()
    print(f"{spec.name}: {out.count()} rows")
    return _ray_stop(temp)


def run_ray_actor(spec: Scenario) -> bytes:
    """``spec`` as two plain Ray actors, ``spec.calls`` calls each (64 in flight per actor); the worker files' bytes."""
    import ray

    temp = _ray_start()
    cls = udfmem.tracked(every=spec.every, methods=(spec.method,))(spec.make())
    actor_cls = ray.remote(num_cpus=0.5, max_concurrency=spec.max_concurrency)(cls)
    env = {"env_vars": udfmem.worker_env(every=spec.every, trim=spec.trim)}
    actors = [actor_cls.options(runtime_env=env).remote() for _ in range(2)]
    pending: list[Any] = []
    done = 0
    for i in range(spec.calls):
        for actor in actors:
            pending.append(getattr(actor, spec.method).remote(i))
        if len(pending) >= 128:
            ready, pending = ray.wait(pending, num_returns=64)
            done += len(ray.get(ready))
    done += len(ray.get(pending))
    print(f"{spec.name}: {done} calls")
    del actors  # released: each writes its final snapshot
    return _ray_stop(temp)


def run_daft(spec: Scenario) -> bytes | None:
    """``spec`` on Daft over ``spec.calls`` rows; the worker files' bytes, or None on the native runner.

    The native runner runs in this process (its output is the log); ``daft-ray`` is the
    Ray runner on a local cluster.
    """
    import daft

    temp = None
    if spec.engine == "daft-ray":
        temp = _ray_start()
        daft.set_runner_ray()
    tracked = udfmem.tracked(every=spec.every, methods=(spec.method,))(spec.make())
    udf = daft.cls(tracked)()
    df = daft.from_pydict({"x": list(range(spec.calls))})
    expr = udf(df["x"]) if spec.method == "__call__" else getattr(udf, spec.method)(df["x"])
    out = df.select(expr.alias("y")).collect()
    print(f"{spec.name}: {len(out)} rows")
    del udf, out
    return None if temp is None else _ray_stop(temp)


def run_geneva(spec: Scenario) -> bytes:
    """``spec`` as a Geneva UDF column backfilled over ``spec.calls`` rows on a local Ray cluster; the worker files."""
    import geneva
    import pyarrow as pa
    from geneva.runners.ray._mgr import ray_cluster

    work = tempfile.mkdtemp(prefix="udf", dir="/tmp")
    os.chdir(work)
    db = geneva.connect(os.path.join(work, "db"))
    table = db.create_table("t", pa.table({"x": pa.array(range(spec.calls), pa.int64())}))
    tracked = udfmem.tracked(every=spec.every, methods=(spec.method,))(spec.make())
    table.add_columns({"y": geneva.udf(data_type=pa.int64(), num_cpus=0.25)(tracked)()})  # __init__ runs here
    env = {**udfmem.worker_env(every=spec.every, trim=spec.trim), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    kwargs = {"num_cpus": 2, "_temp_dir": os.path.join(work, "ray"), "include_dashboard": False}
    with ray_cluster(local=True, extra_env=env, ray_init_kwargs=kwargs):
        table.backfill("y", concurrency=1, num_cpus=0.25, checkpoint_size=spec.calls, _admission_check=False)
        time.sleep(3)
    print(f"{spec.name}: {table.count_rows()} rows")
    logs = sorted(Path(work, "ray", "session_latest", "logs").glob("worker-*"))
    data = b"".join(p.read_bytes() for p in logs)
    os.chdir("/")
    shutil.rmtree(work, ignore_errors=True)
    return data


def child(name: str) -> None:
    """Run scenario ``name`` in this interpreter; Ray's worker files go to ``$SCENARIO_FILES`` (gzipped)."""
    spec = SCENARIOS[name]
    os.environ.update(udfmem.worker_env(every=spec.every, trim=spec.trim))  # Daft's native runner: this process
    t0 = time.perf_counter()
    if spec.engine == "ray-data":
        gzip_to(Path(os.environ["SCENARIO_FILES"]), run_ray_data(spec))
    elif spec.engine == "ray-actor":
        gzip_to(Path(os.environ["SCENARIO_FILES"]), run_ray_actor(spec))
    elif spec.engine == "geneva":
        gzip_to(Path(os.environ["SCENARIO_FILES"]), run_geneva(spec))
    elif spec.engine == "daft":
        run_daft(spec)
    elif spec.engine == "daft-ray":
        gzip_to(Path(os.environ["SCENARIO_FILES"]), run_daft(spec) or b"")
    else:
        raise SystemExit(f"unknown engine {spec.engine}")
    print(f"{name}: ran {time.perf_counter() - t0:.1f} s", flush=True)


def run_scenario(spec: Scenario, outdir: Path) -> Path:
    """Run ``spec`` in a fresh interpreter (with ``spec.busy`` busy loops beside it); store its logs in ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    files = outdir / f"{spec.name}.log.gz"
    console = outdir / f"{spec.name}.console.log.gz"
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(spec.busy)]
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryFile() as out:
            env = {**os.environ, "SCENARIO_FILES": str(files)}
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", spec.name],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            out.seek(0)
            output = out.read()
            if done.returncode:
                sys.stderr.write(output[-4000:].decode(errors="replace"))
                raise SystemExit(f"{spec.name}: the run failed (exit {done.returncode})")
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    runtime = time.perf_counter() - t0
    gzip_to(files if spec.engine == "daft" else console, output)
    print(f"{spec.name}: {runtime:.1f} s ({spec.busy} busy loops), {files.stat().st_size} bytes")
    print(summarize(gzip.decompress(files.read_bytes()).decode(errors="replace")))
    return files


def derive(outdir: Path) -> None:
    """Write the ``DERIVED`` logs: stored worker files without ``rss_anon_mb`` and ``rss_shared_mb``.

    Only udfmem's lines change: the two fields dropped, and ``host=`` given a ``-nosplit``
    suffix, so that a directory holding the source log and the derived one reads as
    different workers.
    """
    for name, source in DERIVED.items():
        lines = gzip.decompress((outdir / f"{source}.log.gz").read_bytes()).splitlines(keepends=True)
        out = b"".join(
            _HOST.sub(rb"\1-nosplit", _SPLIT.sub(b"", line)) if b"udfmem." in line else line for line in lines
        )
        gzip_to(outdir / f"{name}.log.gz", out)
        print(f"{name}: from {source}")


def derived_entry(name: str, outdir: Path) -> dict[str, Any]:
    """The ``EXPECTED.json`` entry of a derived log: its source's truth, and where it comes from."""
    source = DERIVED[name]
    truth = shapes.expected(outdir)[source]
    return {"truth": truth.pattern, "engine": truth.engine, "derived_from": source}


def write_expected(outdir: Path, names: list[str]) -> None:
    """Add (or replace) the entries of ``names`` in ``outdir/EXPECTED.json``, keeping every other entry."""
    path = outdir / "EXPECTED.json"
    entries: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        entries[name] = derived_entry(name, outdir) if name in DERIVED else SCENARIOS[name].entry()
    path.write_text(json.dumps(entries, indent=2) + "\n")


FIELDS = (
    "rss_mb",
    "rss_anon_mb",
    "rss_shared_mb",
    "heap_in_use_mb",
    "heap_free_mb",
    "arrow_live_mb",
    "py_blocks",
    "growth_mb",
)


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
        regular = [s for s in series if not s.get("final")] or series
        parts = [f"  pid {pid}: {len(series)} snapshots, calls {series[-1]['call']}, trims {trims[pid]}"]
        parts.append(f"final={final is not None}")
        for field in FIELDS:
            values = [s[field] for s in regular if field in s]
            if values:
                after = f" final {final[field]}" if final is not None and field in final else ""
                parts.append(f"{field} {values[0]}→{values[-1]} ({len(values)}){after}")
        gaps = [s["peak_rss_mb"] - s["rss_mb"] for s in regular if "peak_rss_mb" in s]
        parts.append(f"max peak-rss {max(gaps, default=0.0):.1f}")
        lines.append(", ".join(parts))
    return "\n".join(lines)


def main() -> int:
    """``NAME OUTDIR`` runs one scenario; ``--all OUTDIR`` each in turn; ``--derive OUTDIR``; ``--list``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    parser.add_argument("outdir", nargs="?", type=Path)
    parser.add_argument("--all", metavar="OUTDIR", type=Path, help="run every scenario and write EXPECTED.json")
    parser.add_argument("--derive", metavar="OUTDIR", type=Path, help="write the logs without the private/shared split")
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help="list the scenarios and their truths")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    if args.list:
        for spec in SCENARIOS.values():
            print(f"{spec.name:26s} {spec.engine:10s} {spec.truth}")
        return 0
    if args.derive is not None:
        derive(args.derive.resolve())
        write_expected(args.derive.resolve(), list(DERIVED))
        return 0
    if args.all is not None:
        outdir = args.all.resolve()
        for spec in SCENARIOS.values():
            run_scenario(spec, outdir)
            write_expected(outdir, [spec.name])
        derive(outdir)
        write_expected(outdir, list(DERIVED))
        return 0
    if args.scenario is None or args.outdir is None:
        parser.error("give SCENARIO OUTDIR, --all OUTDIR, --derive OUTDIR or --list")
    run_scenario(SCENARIOS[args.scenario], args.outdir.resolve())
    write_expected(args.outdir.resolve(), [args.scenario])
    return 0


if __name__ == "__main__":
    sys.exit(main())
