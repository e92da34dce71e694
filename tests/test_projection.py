"""calls_to_limit projects from the whole cgroup's growth: N leaking workers under one limit die ~N times sooner.

The unit tests judge hand-built series (pure arithmetic); the last test runs real leaking
workers in a real cgroup v1 child with a 2 GiB limit on this machine (root only), once
with one worker and once with three, and judges their logs as ``udfmem diagnose`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from udfmem.analysis import patterns as P
from udfmem.analysis.series import Point, Series
from udfmem.analysis.verdict import cgroup_growth, judge
from udfmem.commands.diagnose import load

V1_ROOT = Path("/sys/fs/cgroup/memory")
LIMIT_MIB = 2048


def leaking(workers: int, calls: int = 400, every: int = 10, limit: float = 4096.0) -> Series:
    """A worker leaking 1 MiB a call on the heap, under ``limit`` shared with ``workers`` such workers."""
    series = Series()
    for call in range(every, calls + 1, every):
        private = 100.0 + call  # 1 MiB per call
        heap = 40.0 + call
        headroom = limit - workers * (private + 20.0)
        series.add(Point(call, private, private + 20.0, private + 20.0, heap, 5.0, 0.0, None, limit, headroom, 0))
    return series


def test_one_worker_projects_from_its_own_slope() -> None:
    """Alone under its limit, the headroom falls at the worker's own pace: calls_to_limit = headroom / slope."""
    series = leaking(workers=1)
    verdict = judge(series)
    last = series.points[-1]
    assert P.HEAP_LEAK == verdict.pattern
    assert 100.0 == verdict.slope_mb_per_100_calls
    assert 1.0 == cgroup_growth(series.points)
    assert int(last.headroom or 0) == verdict.calls_to_limit
    assert "cgroup" not in verdict.evidence


def test_three_workers_sharing_the_limit_project_three_times_sooner() -> None:
    """Three such workers under one limit: the headroom falls 3 MiB a call; calls_to_limit divides by that."""
    series = leaking(workers=3)
    verdict = judge(series)
    last = series.points[-1]
    assert P.HEAP_LEAK == verdict.pattern
    assert 100.0 == verdict.slope_mb_per_100_calls  # the worker's own slope is still said
    assert 3.0 == cgroup_growth(series.points)
    assert int((last.headroom or 0) / 3) == verdict.calls_to_limit
    assert "it grows 3.0x this worker's, other processes share the limit" in verdict.evidence


def test_a_cgroup_growing_slower_than_the_worker_does_not_slow_the_projection() -> None:
    """Another worker freeing memory as this one leaks: the faster pace (this worker's own) is kept."""
    series = Series()
    for call in range(10, 401, 10):
        private = 100.0 + call
        headroom = 4096.0 - private - 20.0 - (1000.0 - 2 * call)  # another worker shrinks by 2 MiB a call
        series.add(Point(call, private, private + 20.0, None, 40.0 + call, 5.0, 0.0, None, 4096.0, headroom, 0))
    verdict = judge(series)
    assert P.HEAP_LEAK == verdict.pattern
    assert int((series.points[-1].headroom or 0) / 1.0) == verdict.calls_to_limit
    assert "cgroup" not in verdict.evidence


def test_a_cgroup_pace_within_noise_of_the_workers_own_keeps_the_own() -> None:
    """A lone worker whose headroom falls a little faster than it grows (page cache, noise): its own slope projects."""
    series = Series()
    for call in range(10, 401, 10):
        private = 100.0 + call
        headroom = 4096.0 - private - 20.0 - 0.05 * call  # the cgroup's pace: 1.05 times the worker's
        series.add(Point(call, private, private + 20.0, None, 40.0 + call, 5.0, 0.0, None, 4096.0, headroom, 0))
    verdict = judge(series)
    assert 1.05 == pytest.approx(cgroup_growth(series.points))
    assert int(series.points[-1].headroom or 0) == verdict.calls_to_limit
    assert "cgroup" not in verdict.evidence


def test_too_few_headroom_readings_give_no_cgroup_pace() -> None:
    """Without ``CGROUP_MIN_READINGS`` readings of the headroom, the cgroup's growth is unknown."""
    points = leaking(workers=3).points[: P.CGROUP_MIN_READINGS - 1]
    assert None is cgroup_growth(points)


WORKER = """
import os, sys, time
cgroup, ready, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:  # in the cgroup before udfmem reads its limit
    f.write(str(os.getpid()))
import udfmem
MIB = 1 << 20

@udfmem.tracked(every=5, trim="off")
class Leak:
    def __init__(self):
        self.kept = []
    def __call__(self, i):
        self.kept.append(b"\\x01" * MIB)  # 1 MiB a call, touched: resident
        time.sleep(0.02)  # the pace: the workers sleep more than they work, so they keep a similar one
        return i

udf = Leak()
open(os.path.join(ready, str(os.getpid())), "w").close()
deadline = time.monotonic() + 120
while len(os.listdir(ready)) < n and time.monotonic() < deadline:  # start the calls together
    time.sleep(0.01)
for i in range(300):
    udf(i)
"""


def run_in_cgroup(workers: int, tmp: Path) -> list[tuple[int | None, float, float | None, str, int | None]]:
    """Run ``workers`` leaking workers in a fresh v1 cgroup limited to ``LIMIT_MIB``; judge their logs.

    Per worker: (calls_to_limit, own slope MiB/call, headroom at the last snapshot, evidence,
    the online detector's last calls_to_limit).
    """
    cgroup = V1_ROOT / f"udfmem-proj-{os.getpid()}-{workers}"
    logs, ready = tmp / f"logs{workers}", tmp / f"ready{workers}"
    logs.mkdir()
    ready.mkdir()
    cgroup.mkdir()
    try:
        (cgroup / "memory.limit_in_bytes").write_text(str(LIMIT_MIB << 20))
        env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
        env["UDFMEM_LOG_DIR"] = str(logs)
        code = textwrap.dedent(WORKER)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(cgroup), str(ready), str(workers)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert 0 == proc.returncode, err
    finally:
        for _ in range(50):  # the cgroup empties once its processes are reaped
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.1)
    diagnosis = load([str(logs)])
    out = []
    for w in diagnosis.workers:
        slope = (w.verdict.slope_mb_per_100_calls or 0.0) / 100
        online = None if w.online is None else w.online.calls_to_limit
        last = w.series.points[-1].headroom
        out.append((w.verdict.calls_to_limit, slope, last, w.verdict.evidence, online))
    return out


@pytest.mark.skipif(
    not (hasattr(os, "geteuid") and os.geteuid() == 0 and (V1_ROOT / "memory.limit_in_bytes").exists()),
    reason="needs root and a cgroup v1 memory controller to make a limited cgroup",
)
def test_three_leaking_workers_in_a_real_cgroup_get_a_projection_about_three_times_sooner(tmp_path: Path) -> None:
    """Three workers leaking 1 MiB a call under one real 2 GiB limit: calls_to_limit at most half of one worker's.

    Each worker's own slope alone would project each of the three about as far as the lone
    worker (its headroom over 1 MiB a call); projected from the cgroup's working set, it
    comes ~3 times sooner, and the evidence says other processes share the limit. The online
    detector, which judges with the same rule, says so too.
    """
    (single,) = run_in_cgroup(1, tmp_path)
    three = run_in_cgroup(3, tmp_path)
    ctl1, slope1, headroom1, evidence1, online1 = single
    assert ctl1 is not None and headroom1 is not None and slope1 > 0, evidence1
    assert "other processes share the limit" not in evidence1
    assert headroom1 / slope1 >= ctl1 >= headroom1 / (P.CGROUP_SHARED_FACTOR * slope1), evidence1
    assert 3 == len(three)
    for ctl3, slope3, headroom3, evidence3, online3 in three:
        assert ctl3 is not None and headroom3 is not None and slope3 > 0, evidence3
        assert 2 * ctl3 <= ctl1, (ctl3, ctl1, evidence3)
        assert 2 * ctl3 <= headroom3 / slope3, (ctl3, headroom3, slope3, evidence3)  # not the smaller headroom alone
        assert "other processes share the limit" in evidence3
        assert online1 is not None and online3 is not None and 2 * online3 <= online1, (online3, online1)
