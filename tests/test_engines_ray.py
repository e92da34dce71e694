"""End to end on a real local Ray cluster: Ray Data with every method kind, env, dedup, actors.

One driver script (``engines/ray_data_script.py``) runs every scenario on one cluster
(fractional CPUs: the machine has 2 cores); the tests read its worker log files and its
driver console output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, engine_script, parse_events

pytest.importorskip("ray.data")
pytestmark = pytest.mark.engines

SCRIPT = Path(__file__).parent / "engines" / "ray_data_script.py"
KINDS = ("Sync", "Gen", "Async", "Agen")


class RayRun:
    """What one run of the driver script left behind."""

    def __init__(self, result: dict[str, Any], driver: str, worker_logs: str) -> None:
        self.result = result
        self.driver = parse_events(driver)
        self.workers = parse_events(worker_logs)

    def series(self, udf: str, event: str = "udfmem.snapshot", source: str = "workers") -> dict[int, Events]:
        """Events of ``udf`` per pid, in log order."""
        by_pid: dict[int, Events] = defaultdict(list)
        for e in getattr(self, source):
            if e["udf"] == udf and e["event"] == event:
                by_pid[e["pid"]].append(e)
        return dict(by_pid)


@pytest.fixture(scope="module")
def ray_run() -> Iterator[RayRun]:
    """Run the driver script once on a fresh local cluster (default Ray log settings)."""
    with engine_script(SCRIPT) as run:
        yield RayRun(run.result, run.console, run.worker_logs)


def test_results_are_unchanged(ray_run: RayRun) -> None:
    """Every operator returns every row once, transformed as without udfmem; the actor's results are exact."""
    assert {"v_ok": True, "ids": True, "doubled_ok": True} == {
        k: ray_run.result[k] for k in ("v_ok", "ids", "doubled_ok")
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("word", "workers", "every"), [("One", 1, 2), ("Two", 2, 1)])
def test_every_worker_logs_setup_and_monotonic_snapshots(
    ray_run: RayRun, kind: str, word: str, workers: int, every: int
) -> None:
    """Each actor emits udfmem.setup and snapshots every K calls with its own pid; all 48 batches counted."""
    udf = f"Embed{kind}{word}"
    snaps = ray_run.series(udf)
    setups = ray_run.series(udf, "udfmem.setup")
    assert workers == len(snaps), snaps.keys()
    assert set(snaps) == set(setups)
    for pid, events in snaps.items():
        assert ["__init__"] == [e["method"] for e in setups[pid]]
        calls = [e["call"] for e in events]
        assert list(range(every, every * len(calls) + 1, every)) == calls
        assert {pid} == {e["pid"] for e in events}
    assert 48 == sum(events[-1]["call"] for events in snaps.values())


def test_worker_env_every_reaches_the_workers(ray_run: RayRun) -> None:
    """worker_env(every=4) in the operator's runtime_env overrides @tracked(every=1000) there."""
    (events,) = ray_run.series("EveryFromEnv").values()
    assert list(range(4, 49, 4)) == [e["call"] for e in events]


def test_worker_env_disable_silences_the_workers(ray_run: RayRun) -> None:
    """worker_env(disable=True) in the operator's runtime_env: not one line from that UDF."""
    assert [] == [e for e in ray_run.workers + ray_run.driver if e["udf"] == "Silenced"]


@pytest.mark.parametrize("kind", KINDS)
def test_both_workers_reach_the_driver_despite_dedup(ray_run: RayRun, kind: str) -> None:
    """With default Ray settings, snapshot lines of both workers of an operator reach the driver console."""
    udf = f"Embed{kind}Two"
    worker_pids = set(ray_run.series(udf))
    assert worker_pids == set(ray_run.series(udf, source="driver"))
    driver_calls = sorted(e["call"] for events in ray_run.series(udf, source="driver").values() for e in events)
    worker_calls = sorted(e["call"] for events in ray_run.series(udf).values() for e in events)
    assert worker_calls == driver_calls


def test_each_workers_series_ends_where_its_work_ended(ray_run: RayRun) -> None:
    """every=5 over 48 batches on 2 actors: Ray releases each actor's UDF object, whose final snapshot is the last call.

    48 is no multiple of 5, so at least one worker's last calls come after its last regular snapshot;
    the final snapshots make the workers' last calls add up to all 48 batches.
    """
    snaps = ray_run.series("Finals")
    assert 2 == len(snaps)
    assert 48 == sum(events[-1]["call"] for events in snaps.values())
    finals = [e for events in snaps.values() for e in events if e.get("final")]
    assert finals
    for events in snaps.values():
        assert [e["call"] for e in events] == sorted({e["call"] for e in events})
        assert all(e is events[-1] for e in events if e.get("final"))  # only the last one is final


def test_threaded_plain_actor_counts_exactly(ray_run: RayRun) -> None:
    """@ray.remote(max_concurrency=4) over @tracked(methods=("process",)): 400 calls, last snapshot at 400."""
    (events,) = ray_run.series("ThreadedActor").values()
    calls = [e["call"] for e in events]
    assert 400 == calls[-1]
    assert calls == sorted(calls)
    assert 400 == sum(e["window_calls"] for e in events)
