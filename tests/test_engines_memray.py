"""memray in real Ray Data workers, switched on from the driver with worker_env(memray_dir=...)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray.data")
pytest.importorskip("memray")
pytestmark = [pytest.mark.engines, pytest.mark.timeout(1800)]  # a loaded machine is many times slower

SCRIPT = Path(__file__).parent / "engines" / "ray_memray_script.py"


def test_ray_workers_profile_and_report(tmp_path: Path) -> None:
    """Each actor writes its own file; the report tells the clean UDF's setup from the leaky one's calls."""
    temp = tempfile.mkdtemp(prefix="/tmp/udfm")  # Ray's socket paths must stay short
    try:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), temp, str(tmp_path / "prof")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert 0 == proc.returncode, proc.stderr[-5000:]
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert "ROWS CleanBatches 2560" in proc.stdout and "ROWS LeakyBatches 2560" in proc.stdout
    out = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", "--json", str(tmp_path / "prof")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    by_udf = {s["udf"]: s for s in json.loads(out)}
    assert {"CleanBatches", "LeakyBatches"} == set(by_udf)
    clean, leaky = by_udf["CleanBatches"], by_udf["LeakyBatches"]
    assert "setup only" == clean["verdict"]
    assert clean["setup_leaked_mb"] == pytest.approx(64, abs=2)
    assert clean["per_call_leaked_mb"] < 2
    assert "per-call retention" == leaky["verdict"]
    assert leaky["per_call_leaked_mb"] == pytest.approx(256 * 8, abs=16)
