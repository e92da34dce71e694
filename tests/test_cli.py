"""The command line: ``udfmem demo`` through the console script and ``python -m udfmem``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import parse_events


@pytest.mark.parametrize("command", [["udfmem"], [sys.executable, "-m", "udfmem"]], ids=["script", "module"])
def test_demo_shows_snapshots_and_names_the_leaky_udf(command: list[str]) -> None:
    """The demo prints snapshot lines for both UDFs and a summary saying which one grew."""
    if command[0] == "udfmem":
        script = shutil.which("udfmem", path=os.path.dirname(sys.executable))
        if script is None:
            pytest.skip("the udfmem console script is not installed in this environment")
        command = [script]
    proc = subprocess.run([*command, "demo"], capture_output=True, text=True, timeout=120, check=False)
    assert 0 == proc.returncode, proc.stderr
    snaps = parse_events(proc.stderr, "udfmem.snapshot")
    assert {"HealthyEmbed", "LeakyEmbed"} == {s["udf"] for s in snaps}
    assert [32 * i for i in range(1, 11)] == [s["call"] for s in snaps if s["udf"] == "LeakyEmbed"]
    lines = proc.stdout.splitlines()
    leaky = next(line for line in lines if line.startswith("LeakyEmbed:"))
    healthy = next(line for line in lines if line.startswith("HealthyEmbed:"))
    assert "per-call retention" in leaky
    assert "flat" in healthy
    last_leaky = [s for s in snaps if s["udf"] == "LeakyEmbed"][-1]
    assert last_leaky["growth_mb"] == pytest.approx(160, abs=16)


def test_version_flag() -> None:
    """``udfmem --version`` prints the package version."""
    import udfmem

    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert f"udfmem {udfmem.__version__}" == proc.stdout.strip()
