"""LanceDB Geneva end to end: @geneva.udf over @tracked, add_columns and backfill on a local Ray cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, engine_script, parse_events

pytest.importorskip("geneva")
pytestmark = pytest.mark.engines

ENGINES = Path(__file__).parent / "engines"


class GenevaRun:
    """The result line of one backfill run, the driver's events and the workers' events."""

    def __init__(self, result: dict[str, Any], driver: Events, workers: Events) -> None:
        self.result = result
        self.driver = driver
        self.workers = workers

    def snapshots(self, udf: str) -> dict[int, list[int]]:
        """Worker snapshot call numbers of ``udf`` per pid."""
        by_pid: dict[int, list[int]] = defaultdict(list)
        for e in self.workers:
            if e["event"] == "udfmem.snapshot" and e["udf"] == udf:
                by_pid[e["pid"]].append(e["call"])
        return dict(by_pid)


@pytest.fixture(scope="module")
def geneva_run() -> Iterator[GenevaRun]:
    """Create a table, add a scalar and a batch UDF column, backfill both (with worker_env(every=2))."""
    with engine_script(ENGINES / "geneva_script.py", logs="ray/session_latest/logs") as run:
        yield GenevaRun(run.result, parse_events(run.console), parse_events(run.worker_logs))


def test_backfilled_values_equal_the_undecorated_logic(geneva_run: GenevaRun) -> None:
    """Both columns hold exactly what the undecorated UDF logic computes."""
    assert (True, True) == (geneva_run.result["y_ok"], geneva_run.result["z_ok"])


def test_scalar_udf_snapshots_in_the_worker_logs(geneva_run: GenevaRun) -> None:
    """Scalar UDF: one call per row; worker_env(every=2) in extra_env overrides every=1000."""
    (calls,) = geneva_run.snapshots("Doubler").values()
    assert list(range(2, 201, 2)) == calls


def test_batch_udf_snapshots_in_the_worker_logs(geneva_run: GenevaRun) -> None:
    """pa.Array UDF: one call per batch (4 checkpoints of 50 rows)."""
    (calls,) = geneva_run.snapshots("BatchTripler").values()
    assert [2, 4] == calls


def test_init_runs_on_the_driver_and_nothing_else_does(geneva_run: GenevaRun) -> None:
    """Geneva runs __init__ on the driver: its setup event is the driver's; snapshots are the workers'."""
    driver_pid = geneva_run.result["driver_pid"]
    assert [("udfmem.setup", "Doubler", "__init__", driver_pid)] == [
        (e["event"], e["udf"], e["method"], e["pid"]) for e in geneva_run.driver
    ]
    assert driver_pid not in {e["pid"] for e in geneva_run.workers}
    assert {"udfmem.snapshot"} == {e["event"] for e in geneva_run.workers}


def test_udf_versions_are_the_same_in_two_processes() -> None:
    """Geneva hashes a UDF's code (udfmem's wrapper and its closure included): two processes agree.

    A random id in the wrapper's state would change every process's UDF version and
    invalidate Geneva's checkpoints; the class's own cloudpickle bytes are Geneva's
    business (they differ for undecorated classes too), so the code digest is compared.
    """
    outputs = [
        subprocess.run(
            [sys.executable, str(ENGINES / "geneva_hash.py")], capture_output=True, text=True, timeout=300, check=True
        ).stdout.splitlines()[-1]
        for _ in range(2)
    ]
    first, second = (json.loads(o) for o in outputs)
    assert first == second
    assert {"class_code_digest", "named_class_version", "function_version"} == set(first)
