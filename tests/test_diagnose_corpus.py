"""``udfmem diagnose`` and the online detector on the scenario corpus: real engine runs, a truth per worker.

``tests/data/diagnose/`` holds the logs of real runs (Ray Data in numpy, pandas and pyarrow
formats, plain Ray actors with fast calls, threaded and async, Daft row-wise and batch on
its native and Ray runners, a Geneva scalar UDF; made by
``tests/engines/diagnose_scenarios.py`` from the shapes of ``benchmarks/shapes.py``) and
their truths (``EXPECTED.json``, read by ``shapes.expected``). Each Ray run made for
issue 19 is stored twice, Ray's worker files and the driver's console (not Geneva's, whose
console carries no worker line; the first twelve runs have worker files only). Three logs
are derived from stored ones with the private/shared split dropped (``no-split-*``: what
older udfmem and platforms without ``statm`` write), the only stand-in here.

Offline, every worker of every source must get its truth. Online, each worker's lines are
replayed through the real detector (``shapes.replay``) and must meet the issue's targets
(``shapes.online_misses``: the right pattern before a third of the run, one event per
change of truth, none on healthy runs). Cases the rule or detector do not meet yet are
``xfail(strict=True)`` with what they get now: each turns into a failure the day it is
met, to be flipped. The live test makes two scenarios again on a local Ray cluster.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from udfmem.commands.diagnose import load

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import shapes

DATA = Path(__file__).parent / "data" / "diagnose"
EXPECTED = shapes.expected(DATA)
SCRIPT = Path(__file__).parent / "engines" / "diagnose_scenarios.py"

OFFLINE_MISSES: dict[tuple[str, str], str] = {}
"""``(scenario, source)`` judged wrong offline today, and what it gets (none: every worker of every source is right)."""
BELOW_FLOOR = (
    "a leak just above the detection floor over the whole run is still under it at a third of the run "
    "(the target and 'just above the floor' cannot both hold): "
)
KEPT_PAGES = (
    "kept zero-copy batches are judged from 16 snapshots after the warm-up (a healthy reader's first fill of "
    "the object store is as steady over fewer): "
)
ONLINE_MISSES: dict[str, str] = {
    "late-onset": "one worker (pid 20432) first said heap-leak at call 464 (onset 400, target: by 463 of 590)",
    "leak-near-floor-16k": BELOW_FLOOR + "+7 MiB in all (floor 4 MiB), first said at call 304 of ~415",
    "pandas-kept-batches": KEPT_PAGES + "one worker first said arrow-leak at call 144 (target: by 130 of 390)",
    "pyarrow-kept-batches": KEPT_PAGES + "one worker first said arrow-leak at call 144 (target: by 130 of 390)",
    "untracked-growth-64k": BELOW_FLOOR + "private RSS +26 MiB in all (floor 16 MiB), first said at call 304",
}
"""Scenarios whose replayed workers miss an online target today, and how."""


def offline_cases() -> list[Any]:
    """``(scenario, source)`` for every stored log, the known misses marked ``xfail(strict=True)``."""
    cases = []
    for scenario in sorted(EXPECTED):
        for source in shapes.sources(scenario, DATA):
            reason = OFFLINE_MISSES.get((scenario, source))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(scenario, source, marks=marks, id=f"{scenario}-{source}"))
    return cases


def online_cases() -> list[Any]:
    """Every stored scenario, the known misses marked ``xfail(strict=True)``."""
    return [
        pytest.param(s, marks=[pytest.mark.xfail(strict=True, reason=ONLINE_MISSES[s])] if s in ONLINE_MISSES else [])
        for s in sorted(EXPECTED)
    ]


@pytest.mark.parametrize(("scenario", "source"), offline_cases())
def test_every_worker_of_every_scenario_gets_its_true_pattern(scenario: str, source: str) -> None:
    """Every worker of each stored log (worker files, driver console) gets its truth; no line of Ray's is an event."""
    result = load([str(shapes.sources(scenario, DATA)[source])])
    truth = EXPECTED[scenario].pattern
    assert len(result.workers) >= 1
    assert {w.pid: truth for w in result.workers} == {w.pid: w.verdict.pattern for w in result.workers}
    assert all(w.calls >= 300 for w in result.workers)
    assert result.lines.read == result.lines.events + result.lines.skipped
    assert split_lines(shapes.sources(scenario, DATA)[source]) == result.lines.unreadable


@pytest.mark.parametrize("scenario", online_cases())
def test_the_online_detector_meets_its_targets_on_every_worker(scenario: str) -> None:
    """Replayed, each worker's detector names the truth once, before a third of the run, and says nothing on healthy."""
    runs = shapes.replay(shapes.lines_of(shapes.sources(scenario, DATA)["files"]))
    assert len(runs) >= 1
    assert {r.pid: [] for r in runs} == {r.pid: shapes.online_misses(r, EXPECTED[scenario]) for r in runs}


def split_lines(path: Path) -> int:
    """Lines of ``path`` holding a udfmem event's head but not its end (``schema=``): a line Ray's log monitor split."""
    return sum("event=udfmem." in line and "schema=" not in line for line in shapes.lines_of(path))


@pytest.mark.parametrize("scenario", [s for s in sorted(EXPECTED) if "console" in shapes.sources(s, DATA)])
def test_the_console_carries_every_snapshot_but_the_lines_ray_split(scenario: str) -> None:
    """The driver's console carries each worker's snapshots as its worker files do, less the lines Ray split in two.

    Ray's log monitor can read a worker file mid-line and relay the line as two (one case
    in this corpus, ``pyarrow-kept-batches``): that snapshot is lost to the console.
    """
    found = shapes.sources(scenario, DATA)
    files = {(r.pid, r.worker): r.snapshots for r in shapes.replay(shapes.lines_of(found["files"]))}
    console = {(r.pid, r.worker): r.snapshots for r in shapes.replay(shapes.lines_of(found["console"]))}
    assert files.keys() == console.keys()
    assert split_lines(found["console"]) == sum(files.values()) - sum(console.values())


def test_replay_counts_one_line_once_per_worker() -> None:
    """Worker files and console read together (the same lines twice) replay as the worker files alone."""
    found = shapes.sources("pyarrow-kept-batches", DATA)
    both = [*shapes.lines_of(found["files"]), *shapes.lines_of(found["console"])]
    alone = shapes.replay(shapes.lines_of(found["files"]))
    assert sorted((r.pid, r.snapshots) for r in alone) == sorted((r.pid, r.snapshots) for r in shapes.replay(both))


def test_online_misses_names_each_missed_target() -> None:
    """The target check itself: a late, wrong, repeated or withdrawn verdict is named; a right one is not."""
    leak = shapes.Truth("heap-leak")
    right = shapes.Replay("h", 1, "w", "U", 50, 400, ((96, "heap-leak"),))
    assert [] == shapes.online_misses(right, leak)
    late = shapes.Replay("h", 1, "w", "U", 50, 400, ((200, "heap-leak"),))
    assert ["first event at call 200, outside calls 0-133 of 400"] == shapes.online_misses(late, leak)
    flip = shapes.Replay("h", 1, "w", "U", 50, 400, ((96, "untracked-growth"), (120, "heap-leak")))
    assert ["first said untracked-growth at call 96", f"2 events (2 flips), not one: {list(flip.said)}"] == (
        shapes.online_misses(flip, leak)
    )
    alarm = shapes.Replay("h", 1, "w", "U", 50, 400, ((96, "heap-leak"), (200, "healthy")))
    assert [f"healthy run got 2 event(s): {list(alarm.said)}"] == shapes.online_misses(alarm, shapes.Truth("healthy"))
    cache = shapes.Truth("healthy", saturates_call=200)
    assert [] == shapes.online_misses(alarm, cache)
    assert ["withdrawn at call 300, after 267 (saturated at 200)"] == shapes.online_misses(
        shapes.Replay("h", 1, "w", "U", 50, 400, ((96, "heap-leak"), (300, "healthy"))), cache
    )
    onset = shapes.Truth("heap-leak", onset_call=300)
    assert ["first event at call 96, outside calls 300-333 of 400"] == shapes.online_misses(right, onset)


def test_the_whole_corpus_at_once_gives_one_verdict_per_worker() -> None:
    """Read together (a directory of worker files and consoles: each line twice), each worker keeps its own verdict."""
    alone = {
        (w.host, w.pid, w.worker, w.udf): w.verdict.pattern
        for s in EXPECTED
        for w in load([str(shapes.sources(s, DATA)["files"])]).workers
    }
    together = load([str(DATA)])
    assert alone == {(w.host, w.pid, w.worker, w.udf): w.verdict.pattern for w in together.workers}


@pytest.mark.engines
@pytest.mark.timeout(1800)  # a loaded machine runs a Ray Data job many times slower
@pytest.mark.parametrize("scenario", ["heap-leak-cache", "healthy-noisy"])
def test_a_fresh_ray_run_gets_its_true_pattern(scenario: str, tmp_path: Path) -> None:
    """The scenario made again now, on a real local Ray cluster with this checkout's udfmem, is judged right."""
    root = str(Path(__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    # its own session: on a timeout the whole cluster it started is killed with it
    with subprocess.Popen(
        [sys.executable, str(SCRIPT), scenario, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            _, stderr = proc.communicate(timeout=1500)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert 0 == proc.returncode, stderr[-3000:]
    for source in ("files", "console"):
        result = load([str(shapes.sources(scenario, tmp_path)[source])])
        assert [EXPECTED[scenario].pattern] * 2 == [w.verdict.pattern for w in result.workers]
