"""On a real local Ray cluster: a worker reports Ray's memory monitor as its limit, the driver does not.

The driver sets ``RAY_memory_usage_threshold=0.5`` before ``ray.init``: the raylet and the
workers it starts inherit it. This machine has no cgroup memory limit, so Ray's monitor
kills a worker at half the node's ``MemTotal``, judging ``MemTotal - MemAvailable``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import engine_script

pytest.importorskip("ray")
pytestmark = pytest.mark.engines

MIB = 1024 * 1024

SCRIPT = '''
"""One actor and one task on a local cluster whose memory monitor kills at 0.5 of the node."""
import json
import os
import sys

os.environ["RAY_memory_usage_threshold"] = "0.5"  # before ray.init: the raylet reads it at start

import ray

import udfmem
import udfmem.testing


def meminfo():
    """(MemTotal, MemAvailable) bytes now."""
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0]) * 1024
    return values["MemTotal"], values["MemAvailable"]


@udfmem.tracked(every=1)
class Udf:
    def __call__(self, x):
        return x + 1


@ray.remote(num_cpus=0.5)
class Worker:
    def run(self):
        with udfmem.testing.capture() as events:
            udf = Udf()
            udf(1)
            udf(2)
        snaps = [e for e in events if e["event"] == "udfmem.snapshot"]
        return snaps[-1], meminfo()


@ray.remote(num_cpus=0.5)
def task():
    s = udfmem.sample()
    return [s.limit_mb, s.limit_source, s.headroom_mb], meminfo()


def main():
    ray.init(num_cpus=2, _temp_dir=sys.argv[1], include_dashboard=False)
    snap, actor_mem = ray.get(Worker.remote().run.remote(), timeout=600)
    sample, task_mem = ray.get(task.remote(), timeout=600)
    driver = udfmem.sample()
    result = {
        "snapshot": snap,
        "actor_mem": actor_mem,
        "task": sample,
        "task_mem": task_mem,
        "driver": [driver.limit_mb, driver.limit_source],
    }
    ray.shutdown()
    print("RESULT " + json.dumps(result))


main()
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the script once on a fresh local cluster; its RESULT."""
    script = tmp_path_factory.mktemp("ray_limits") / "ray_limits_script.py"
    script.write_text(SCRIPT)
    with engine_script(Path(script)) as done:
        return done.result


def test_actor_snapshot_reports_rays_threshold_of_the_node(run: dict[str, Any]) -> None:
    """A tracked actor's snapshot: limit_source ray-monitor:0.5, limit_mb half the node's MemTotal."""
    snap = run["snapshot"]
    total, _ = run["actor_mem"]
    assert "ray-monitor:0.5" == snap["limit_source"]
    assert snap["limit_mb"] == pytest.approx(total * 0.5 / MIB, abs=0.1)


def test_actor_headroom_is_the_threshold_less_the_nodes_used_memory(run: dict[str, Any]) -> None:
    """The headroom is Ray's: the threshold less MemTotal - MemAvailable (read in the actor just after, ~256 MiB)."""
    snap = run["snapshot"]
    total, available = run["actor_mem"]
    expected = (total * 0.5 - (total - available)) / MIB
    assert snap["headroom_mb"] == pytest.approx(expected, abs=256)


def test_task_sample_reports_the_same_limit(run: dict[str, Any]) -> None:
    """A plain task's udfmem.sample() in its worker says the same: Ray's monitor at half the node."""
    (limit, source, headroom), (total, _) = run["task"], run["task_mem"]
    assert "ray-monitor:0.5" == source
    assert limit == pytest.approx(total * 0.5 / MIB, abs=0.1)
    assert headroom is not None and headroom < limit


def test_the_driver_is_judged_by_the_node_not_by_rays_monitor(run: dict[str, Any]) -> None:
    """The driver (no RAY_RAYLET_PID: Ray's monitor kills workers only) reports the node's memory."""
    limit, source = run["driver"]
    total, _ = run["actor_mem"]
    assert "node" == source
    assert limit == pytest.approx(total / MIB, abs=0.1)
