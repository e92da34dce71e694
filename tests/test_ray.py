"""End to end on a real local Ray cluster: Ray Data map_batches with two actors."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import parse_events, run_python

pytest.importorskip("ray.data")
pytestmark = pytest.mark.engines

SCRIPT = """
import time, ray, udfmem

ray.init(num_cpus=2, _temp_dir={temp!r}, include_dashboard=False)
ray.data.DataContext.get_current().wait_for_min_actors_s = 120

@udfmem.tracked(every=4)
class Embed:
    def __call__(self, batch):
        time.sleep(0.05)  # some work, so batches spread over both actors
        return {{"id": batch["id"] * 2}}

ds = ray.data.range(480, override_num_blocks=48).map_batches(
    Embed, concurrency=2, num_cpus=0.5, batch_size=10
)
rows = ds.take_all()
print("ROWS", len(rows), sum(r["id"] for r in rows))
ray.shutdown()
"""


def test_map_batches_two_actors_log_snapshots_with_consistent_counts() -> None:
    """Worker logs hold snapshot lines from two distinct pids, each counting 4, 8, 12, ... exactly."""
    temp = tempfile.mkdtemp(prefix="/tmp/udfr")  # Ray's socket paths must stay short
    try:
        proc = run_python(SCRIPT.format(temp=temp), timeout=300)
        assert f"ROWS 480 {2 * sum(range(480))}" in proc.stdout
        paths = glob.glob(os.path.join(temp, "session_latest", "logs", "worker-*"))
        worker_logs = "".join(Path(path).read_text(errors="replace") for path in paths)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    snaps = parse_events(worker_logs, "udfmem.snapshot")
    by_pid: dict[int, list[int]] = defaultdict(list)
    for snap in snaps:
        by_pid[snap["pid"]].append(snap["call"])
        assert "Embed" == snap["udf"]
        assert 4 == snap["window_calls"]
    assert 2 == len(by_pid), by_pid
    for calls in by_pid.values():
        assert list(range(4, 4 * len(calls) + 1, 4)) == calls
    assert 48 - 2 * 4 < sum(max(calls) for calls in by_pid.values()) <= 48
    driver = parse_events(proc.stdout + proc.stderr, "udfmem.snapshot")
    assert driver, "no snapshot line reached the driver console"
    assert {s["pid"] for s in driver} <= set(by_pid)
