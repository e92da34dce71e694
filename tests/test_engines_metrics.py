"""Ray metrics on a real local Ray cluster: udfmem's gauges on Ray's Prometheus endpoint, kept alive.

One driver script (``engines/ray_metrics_script.py``) starts a cluster with a metrics
export port, runs a tracked UDF on 2 Ray Data actors (``worker_env(metrics="ray")`` in
the operator's ``env_vars``), holds one upstream block back so the actors idle long
after their last call, and scrapes the endpoint every 2 s. The driver releases the held
block on events (every other call logged, then answered scrapes 30 s past that), not after
a fixed time, so a loaded machine only makes the run longer. The tests compare the
scrapes with the workers' own log lines.
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, engine_script, parse_events

pytest.importorskip("ray.data")
pytestmark = [pytest.mark.engines, pytest.mark.timeout(1800)]  # the run's own waits end within 20 minutes

SCRIPT = Path(__file__).parent / "engines" / "ray_metrics_script.py"
UDF = "MetricsEmbed"
STILL_THERE_S = 30.0  # the promise: the series is still present this long after the last call
SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Sample:
    """One Prometheus sample line: name, labels, value."""

    def __init__(self, line: str) -> None:
        match = SAMPLE.match(line)
        assert match is not None, line
        self.name = match.group(1)
        self.labels = dict(LABEL.findall(match.group(2)))
        self.value = float(match.group(3))


def _ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class MetricsRun:
    """The scrapes, and the workers' events split at the held-back batch's call."""

    def __init__(self, result: dict[str, Any], worker_logs: str) -> None:
        self.result = result
        # the scrapes the endpoint answered (one may time out on a loaded machine)
        self.scrapes = [(t, [Sample(line) for line in lines]) for t, lines in result["scrapes"] if lines is not None]
        assert self.scrapes, f"the metrics endpoint answered none of {len(result['scrapes'])} scrapes"
        assert "released_at" in result, "the driver never released the held block"
        # the driver released the held block after every other call was logged: only its call comes later
        self.held_at: float = result["released_at"]
        events = [e for e in parse_events(worker_logs) if e["udf"] == UDF]
        before = [e for e in events if _ts(e["ts"]) < self.held_at]
        snaps = [_ts(e["ts"]) for e in before if e["event"] == "udfmem.snapshot"]
        assert snaps, f"no {UDF} snapshot in the workers' logs before the release ({len(events)} events in all)"
        self.last_call_at = max(snaps)
        self.before: dict[str, Events] = defaultdict(list)  # per worker tag, in log order
        for e in before:
            self.before[e["worker"]].append(e)

    def idle_scrapes(self) -> list[list[Sample]]:
        """The scrapes taken ``STILL_THERE_S`` or more after the last call, while the actors idled."""
        return [s for t, s in self.scrapes if self.last_call_at + STILL_THERE_S <= t < self.held_at]


@pytest.fixture(scope="module")
def metrics_run() -> Iterator[MetricsRun]:
    """Run the driver script once on a fresh local cluster."""
    with engine_script(SCRIPT) as run:
        yield MetricsRun(run.result, run.worker_logs)


def test_results_are_unchanged(metrics_run: MetricsRun) -> None:
    """Every row comes back once, transformed as without udfmem."""
    assert metrics_run.result["rows_ok"] is True


def test_rss_gauge_of_both_workers_is_on_the_endpoint_with_the_right_tags(metrics_run: MetricsRun) -> None:
    """``ray_udfmem_rss_mb`` has one series per actor, tagged udf, host and worker (the logs' word), no pid."""
    workers = set(metrics_run.before)
    assert 2 == len(workers)
    seen = [s for _, samples in metrics_run.scrapes for s in samples if s.name == "ray_udfmem_rss_mb"]
    assert {(UDF, metrics_run.result["host"], w) for w in workers} == {
        (s.labels["udf"], s.labels["host"], s.labels["worker"]) for s in seen
    }
    assert not any("pid" in s.labels for s in seen)


def test_gauges_are_still_there_30_s_after_the_last_call(metrics_run: MetricsRun) -> None:
    """While the actors idle, every scrape 30 s or more after their last call still has both workers' series.

    The control gauge the UDF set with plain ``ray.util.metrics`` at each call is gone
    from those scrapes: Ray drops a series not set again, so what keeps udfmem's is its
    daemon timer re-setting them.
    """
    idle = metrics_run.idle_scrapes()
    assert idle, (metrics_run.last_call_at, metrics_run.held_at, [t for t, _ in metrics_run.scrapes])
    control_seen = any(s.name == "ray_udfmem_test_control" for _, samples in metrics_run.scrapes for s in samples)
    assert control_seen  # the control was exported while the UDF ran
    for samples in idle:
        assert set(metrics_run.before) == {s.labels["worker"] for s in samples if s.name == "ray_udfmem_rss_mb"}
        assert [] == [s for s in samples if s.name == "ray_udfmem_test_control"]


def test_gauges_hold_the_last_snapshots_values(metrics_run: MetricsRun) -> None:
    """At the last idle scrape, each worker's gauges equal its snapshots' last known figures; the counters its trims."""
    idle = metrics_run.idle_scrapes()
    assert idle, (metrics_run.last_call_at, metrics_run.held_at, [t for t, _ in metrics_run.scrapes])
    samples = idle[-1]
    for worker, events in metrics_run.before.items():
        snaps = [e for e in events if e["event"] == "udfmem.snapshot"]
        trims = [e for e in events if e["event"] == "udfmem.trim"]
        got = {s.name: s.value for s in samples if s.labels.get("worker") == worker}
        # a figure a snapshot skipped (its probe's time budget) keeps its last known value
        known = {k: v for snap in snaps for k, v in snap.items()}
        expected = {
            "ray_udfmem_rss_mb": known["rss_mb"],
            "ray_udfmem_peak_rss_mb": known["peak_rss_mb"],
            "ray_udfmem_arrow_live_mb": known["arrow_live_mb"],
            "ray_udfmem_heap_in_use_mb": known["heap_in_use_mb"],
            "ray_udfmem_heap_free_mb": known["heap_free_mb"],
            "ray_udfmem_growth_mb": known["growth_mb"],
            "ray_udfmem_headroom_mb": known.get("headroom_mb"),  # None (not exported) without a memory limit
            "ray_udfmem_calls": float(snaps[-1]["call"]),
            "ray_udfmem_trims_total": float(len(trims)),
        }
        assert expected == {k: got.get(k) for k in expected}
        released = sum(max(0.0, e["released_mb"]) for e in trims)
        assert released == pytest.approx(got["ray_udfmem_trim_released_mb_total"], abs=0.01)
        assert "ray_udfmem_growth_slope_mb_per_100_calls" in got  # the detector judged ~40 snapshots
