"""``udfmem diagnose`` on the scenario corpus: real Ray Data worker logs, one scenario per pattern.

``tests/data/diagnose/`` holds the worker logs of twelve real runs (two actors, ~415 calls
each; made by ``tests/engines/diagnose_scenarios.py``) and their true patterns. The live
test makes two scenarios again on a local Ray cluster with this checkout's udfmem.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from udfmem.commands.diagnose import load

DATA = Path(__file__).parent / "data" / "diagnose"
EXPECTED: dict[str, str] = json.loads((DATA / "EXPECTED.json").read_text())
SCRIPT = Path(__file__).parent / "engines" / "diagnose_scenarios.py"


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_every_worker_of_every_scenario_gets_its_true_pattern(scenario: str) -> None:
    """Both workers of each stored scenario get the scenario's true pattern; nothing of Ray's own output is an event."""
    result = load([str(DATA / f"{scenario}.log.gz")])
    assert [EXPECTED[scenario]] * 2 == [w.verdict.pattern for w in result.workers]
    assert all(w.calls >= 300 for w in result.workers)
    assert result.lines.read == result.lines.events + result.lines.skipped
    assert 0 == result.lines.unreadable


def test_the_whole_corpus_at_once_gives_one_verdict_per_worker() -> None:
    """Read together (a directory), the 24 workers keep their own verdicts: the summary counts them by UDF."""
    result = load([str(DATA)])
    assert 24 == len(result.workers)
    found = sorted(w.verdict.pattern for w in result.workers)
    assert sorted(p for p in EXPECTED.values() for _ in range(2)) == found


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
    result = load([str(tmp_path / f"{scenario}.log.gz")])
    assert [EXPECTED[scenario]] * 2 == [w.verdict.pattern for w in result.workers]
