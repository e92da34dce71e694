"""The command line: ``udfmem demo`` through the console script and ``python -m udfmem``; report errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import parse_events


@pytest.mark.parametrize("command", [["udfmem"], [sys.executable, "-m", "udfmem"]], ids=["script", "module"])
def test_demo_shows_snapshots_and_names_the_leaky_udf(command: list[str]) -> None:
    """The demo prints snapshot lines for both UDFs, diagnose's pattern for each, and points at diagnose and plot."""
    if command[0] == "udfmem":
        script = shutil.which("udfmem", path=os.path.dirname(sys.executable))
        if script is None:
            pytest.skip("the udfmem console script is not installed in this environment")
        command = [script]
    proc = subprocess.run([*command, "demo"], capture_output=True, text=True, timeout=120, check=False)
    assert 0 == proc.returncode, proc.stderr
    snaps = parse_events(proc.stderr, "udfmem.snapshot")
    assert {"HealthyEmbed", "LeakyEmbed"} == {s["udf"] for s in snaps}
    assert [16 * i for i in range(1, 21)] == [s["call"] for s in snaps if s["udf"] == "LeakyEmbed"]
    lines = proc.stdout.splitlines()
    leaky = next(line for line in lines if line.startswith("LeakyEmbed:"))
    healthy = next(line for line in lines if line.startswith("HealthyEmbed:"))
    assert leaky.startswith("LeakyEmbed: heap-leak")
    assert healthy.startswith("HealthyEmbed: healthy")
    assert "udfmem diagnose" in proc.stdout and "udfmem plot" in proc.stdout
    assert "udfmem.testing.assert_no_growth" in proc.stdout
    last_leaky = [s for s in snaps if s["udf"] == "LeakyEmbed"][-1]
    assert last_leaky["growth_mb"] == pytest.approx(160, abs=16)


def test_version_flag() -> None:
    """``udfmem --version`` prints the package version."""
    import udfmem

    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert f"udfmem {udfmem.__version__}" == proc.stdout.strip()


def test_report_flame_graph_failure_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """memray cannot write the flame graph (its HTML path is a directory): one stderr line, the report, exit 2."""
    pytest.importorskip("memray")
    profile = tmp_path / "p.bin"
    code = f"import memray\nwith memray.Tracker({str(profile)!r}):\n    kept = bytearray(1 << 20)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    (tmp_path / "p.html").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", "--json", "--flamegraph", str(profile)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 2 == proc.returncode
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"udfmem report: flame graph failed for {profile}: ")
    assert "Is a directory" in line
    (summary,) = json.loads(proc.stdout)
    assert str(profile) == summary["path"] and "flamegraph" not in summary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--summary-md", "/nonexistent-dir/sub/summary.md"], "udfmem report: cannot write /nonexistent-dir/sub/"),
        (["--top", "-1"], "must be >= 0"),
    ],
)
def test_report_usage_and_output_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    """An unwritable --summary-md or a negative --top: exit 2, no traceback."""
    pytest.importorskip("memray")
    profile = tmp_path / "p.bin"
    code = f"import memray\nwith memray.Tracker({str(profile)!r}):\n    kept = bytearray(1 << 20)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", str(profile), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 2 == proc.returncode
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
