"""Daft end to end: @daft.cls over @tracked, on the native runner (threads, processes) and the Ray runner.

``engines/daft_script.py`` runs the same UDF classes with and without udfmem and prints
whether the results are identical; the tests read the udfmem events it left behind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, engine_script, parse_events

pytest.importorskip("daft")
pytestmark = pytest.mark.engines

SCRIPT = Path(__file__).parent / "engines" / "daft_script.py"
MULTI_CALLS = 20 + 20 + 20 + 3  # 20 rows through __call__, repeat and aadd; 3 batches of 8 through double
ADDK_CALLS = 200  # 4 parquet files of 50 rows


class DaftRun:
    """The result line of one script run, and its udfmem events grouped by (udf, pid)."""

    def __init__(self, mode: str, result: dict[str, Any], events: Events) -> None:
        self.mode = mode
        self.result = result
        self.snaps: dict[tuple[str, int], list[int]] = defaultdict(list)
        self.setups: dict[tuple[str, int], int] = defaultdict(int)
        for e in events:
            if e["event"] == "udfmem.snapshot":
                self.snaps[(e["udf"], e["pid"])].append(e["call"])
            elif e["event"] == "udfmem.setup":
                self.setups[(e["udf"], e["pid"])] += 1

    def pids(self, udf: str) -> dict[int, list[int]]:
        """Snapshot call numbers of ``udf`` per pid."""
        return {pid: calls for (name, pid), calls in self.snaps.items() if name == udf}


@pytest.fixture(scope="module", params=["thread", "process", "ray"])
def daft_run(request: pytest.FixtureRequest) -> Iterator[DaftRun]:
    """Run the script once per mode (process mode needs DAFT_PROGRESS_BAR=0 off a TTY)."""
    mode = request.param
    with engine_script(SCRIPT, mode, env={"DAFT_PROGRESS_BAR": "0"}) as run:
        # the Ray runner: read the worker log files, not the driver's relay
        yield DaftRun(mode, run.result, parse_events(run.worker_logs if mode == "ray" else run.console))


def test_results_identical_to_the_undecorated_classes(daft_run: DaftRun) -> None:
    """Row-wise, batch, generator and async methods give exactly the undecorated results."""
    assert {"identical": True, "added_ok": True, "gen_rows": 40} == daft_run.result


@pytest.mark.parametrize(("udf", "total"), [("Multi", MULTI_CALLS), ("AddK", ADDK_CALLS)])
def test_counts_are_exact_and_continuous_per_process(daft_run: DaftRun, udf: str, total: int) -> None:
    """Every call of every method counts once per process, across re-created instances (every=1)."""
    pids = daft_run.pids(udf)
    assert pids
    for calls in pids.values():
        assert calls == sorted(set(calls))  # strictly increasing within a process
    assert total == sum(calls[-1] for calls in pids.values())


def test_every_instance_logs_its_setup(daft_run: DaftRun) -> None:
    """Daft runs only __init__: each instance logs a udfmem.setup in the process that runs it."""
    for (udf, pid), _ in daft_run.snaps.items():
        assert daft_run.setups[(udf, pid)] >= 1


def test_where_the_calls_run(daft_run: DaftRun) -> None:
    """Threads and the Ray runner's actor: one process; use_process=True with max_concurrency=2: two, each from 1."""
    pids = daft_run.pids("AddK")
    assert {"thread": 1, "process": 2, "ray": 1}[daft_run.mode] == len(pids)
    if daft_run.mode == "process":
        for calls in pids.values():
            assert list(range(1, len(calls) + 1)) == calls
