"""memray through one env var, on real profiles: endings, one tracker per process, `udfmem report`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import parse_events, run_python

import udfmem
from udfmem.policies import memray as _memray

pytest.importorskip("memray")
UDFS = str(Path(__file__).parent)

RUN = """
import os, sys
sys.path.insert(0, {udfs!r})
from udfs.memory import {cls}
udf = {cls}()
udf.setup()
for i in range({calls}):
    udf(i)
    if i + 1 == {kill_at}:
        os.kill(os.getpid(), 9)
"""


def profile(
    tmp_path: Path, cls: str, calls: int = 256, kill_at: int = -1, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``calls`` calls of ``cls`` in a fresh process with UDFMEM_MEMRAY_DIR=tmp_path/prof."""
    code = RUN.format(udfs=UDFS, cls=cls, calls=calls, kill_at=kill_at)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    full_env.update({"UDFMEM_MEMRAY_DIR": str(tmp_path / "prof"), **env})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300)


def report(*paths: Path | str, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """``udfmem report --json`` on ``paths``."""
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", "--json", *extra, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def test_clean_udf_retains_its_setup_only(tmp_path: Path) -> None:
    """Setup keeps 64 MiB, calls use 4 MiB scratch: report says ~64 MiB retained, all from setup."""
    proc = profile(tmp_path, "Clean")
    assert 0 == proc.returncode, proc.stderr
    (summary,) = report(tmp_path / "prof")
    assert ("Clean", "setup only") == (summary["udf"], summary["verdict"])
    assert summary["setup_leaked_mb"] == pytest.approx(64, abs=1)
    assert summary["per_call_leaked_mb"] < 1
    assert summary["peak_mb"] == pytest.approx(68, abs=2)


def test_leaky_udf_retains_per_call(tmp_path: Path) -> None:
    """8 MiB kept per call for 256 calls: ~2048 MiB retained, from the call method."""
    proc = profile(tmp_path, "Leaky")
    assert 0 == proc.returncode, proc.stderr
    (summary,) = report(tmp_path / "prof")
    assert ("Leaky", "per-call retention") == (summary["udf"], summary["verdict"])
    assert summary["per_call_leaked_mb"] == pytest.approx(256 * 8, abs=2)
    assert summary["per_call_share"] > 0.99
    assert "__call__ (memory.py:34)" == summary["top_stacks"][0]["stack"][0]


def test_normal_exit_closes_the_tracker_first(tmp_path: Path) -> None:
    """At a normal exit udfmem closes the tracker before teardown: started and stopped events, exact leaks."""
    proc = profile(tmp_path, "Leaky", calls=16)
    events = parse_events(proc.stderr, "udfmem.memray")
    assert [("started", None), ("stopped", "exit")] == [(e["action"], e.get("reason")) for e in events]
    (path,) = {e["path"] for e in events}
    assert Path(path).parent == tmp_path / "prof"
    (summary,) = report(path)
    assert summary["per_call_leaked_mb"] == pytest.approx(16 * 8, abs=1)


def test_stop_after_n_calls(tmp_path: Path) -> None:
    """UDFMEM_MEMRAY_CALLS=16 finalizes the file after call 16; later calls are not in it."""
    proc = profile(tmp_path, "Leaky", calls=48, UDFMEM_MEMRAY_CALLS="16")
    events = parse_events(proc.stderr, "udfmem.memray")
    assert [("started", None), ("stopped", "calls")] == [(e["action"], e.get("reason")) for e in events]
    (summary,) = report(tmp_path / "prof")
    assert summary["per_call_leaked_mb"] == pytest.approx(16 * 8, abs=1)


def test_sigkilled_worker_file_is_readable_and_marked_incomplete(tmp_path: Path) -> None:
    """A worker SIGKILLed after 32 calls (no atexit) leaves a readable file with its retention, marked incomplete."""
    proc = profile(tmp_path, "Leaky", calls=256, kill_at=32)
    assert -9 == proc.returncode
    events = parse_events(proc.stderr, "udfmem.memray")
    assert ["started"] == [e["action"] for e in events]
    (summary,) = report(tmp_path / "prof")
    assert ("incomplete profile", False) == (summary["verdict"], summary["complete"])
    assert summary["per_call_leaked_mb"] == pytest.approx(32 * 8, abs=9)


def test_a_healthy_udf_killed_mid_call_never_passes_or_fails_as_retention(tmp_path: Path) -> None:
    """Killed in the middle of a call: no per-call verdict; the CI gate fails on it unless told to allow it."""
    proc = profile(tmp_path, "Clean", calls=256, kill_at=32)
    assert -9 == proc.returncode
    (summary,) = report(tmp_path / "prof")
    assert ("incomplete profile", False) == (summary["verdict"], summary["complete"])

    def gate(*extra: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "udfmem", "report", "--fail-on-per-call", *extra, str(tmp_path / "prof")]
        return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)

    assert 1 == gate().returncode
    assert 0 == gate("--allow-incomplete").returncode


def test_a_profile_cut_in_half_fails_the_gate(tmp_path: Path) -> None:
    """A truncated profile cannot be judged: one line, and --fail-on-per-call exits 1 (a CI gate must not pass it)."""
    proc = profile(tmp_path, "Clean", calls=32)
    assert 0 == proc.returncode, proc.stderr
    (path,) = (tmp_path / "prof").glob("*.bin")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    gate = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", "--fail-on-per-call", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 1 == gate.returncode
    assert f"udfmem report: cannot read {path}" in gate.stderr
    assert "Traceback" not in gate.stderr


def test_second_udf_in_the_process_runs_unprofiled(tmp_path: Path) -> None:
    """One tracker per process: the second tracked UDF warns once and runs; one file."""
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {UDFS!r})
        from udfs.memory import Clean, Leaky
        a, b = Clean(), Leaky()
        a.setup(); b.setup()
        for i in range(4):
            a(i); b(i)
        """,
        env={"UDFMEM_MEMRAY_DIR": str(tmp_path / "prof")},
    )
    warnings = parse_events(proc.stderr, "udfmem.warning")
    assert [("memray-busy", "Leaky")] == [(w["what"], w["udf"]) for w in warnings]
    assert 1 == len(list((tmp_path / "prof").glob("*.bin")))


def test_a_user_tracker_wins(tmp_path: Path) -> None:
    """A memray tracker the user opened first: udfmem warns and the UDF runs unprofiled."""
    proc = run_python(
        f"""
        import sys, memray
        sys.path.insert(0, {UDFS!r})
        from udfs.memory import Clean
        with memray.Tracker({str(tmp_path / "user.bin")!r}):
            udf = Clean()
            udf.setup()
            print("RESULT", udf(1))
        """,
        env={"UDFMEM_MEMRAY_DIR": str(tmp_path / "prof")},
    )
    assert "RESULT 4194305" in proc.stdout
    assert ["memray-failed"] == [w["what"] for w in parse_events(proc.stderr, "udfmem.warning")]


def test_memray_missing_warns_once_and_runs(tmp_path: Path) -> None:
    """memray not installed: one warning, the UDF runs. Simulated: the import is blocked."""
    proc = run_python(
        f"""
        import sys
        sys.modules["memray"] = None  # import memray now raises ImportError
        sys.path.insert(0, {UDFS!r})
        from udfs.memory import Clean
        udf = Clean()
        udf.setup()
        print("RESULT", sum(udf(i) for i in range(3)))
        """,
        env={"UDFMEM_MEMRAY_DIR": str(tmp_path / "prof")},
    )
    assert f"RESULT {3 * 4 * 1024 * 1024 + 3}" in proc.stdout
    assert ["memray-missing"] == [w["what"] for w in parse_events(proc.stderr, "udfmem.warning")]


def test_memray_missing_warning_names_the_variable_that_switched_it_on(tmp_path: Path) -> None:
    """With memray_env="MY_PROFILE_DIR", the warning names that variable, not UDFMEM_MEMRAY_DIR. Import blocked."""
    proc = run_python(
        """
        import sys
        sys.modules["memray"] = None  # import memray now raises ImportError
        import udfmem

        @udfmem.tracked(every=1000, memray_env="MY_PROFILE_DIR")
        class Udf:
            def __call__(self, x):
                return x

        print("RESULT", Udf()(5))
        """,
        env={"MY_PROFILE_DIR": str(tmp_path / "prof")},
    )
    assert "RESULT 5" in proc.stdout
    (warning,) = parse_events(proc.stderr, "udfmem.warning")
    assert ("memray-missing", "MY_PROFILE_DIR") == (warning["what"], warning["var"])
    assert "UDFMEM_MEMRAY_DIR" not in warning["message"]


def test_without_the_variable_memray_is_never_imported() -> None:
    """No UDFMEM_MEMRAY_DIR: memray is not even imported."""
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {UDFS!r})
        from udfs.memory import Clean
        udf = Clean()
        udf.setup()
        udf(1)
        print("IMPORTED", "memray" in sys.modules)
        """
    )
    assert "IMPORTED False" in proc.stdout


def test_never_started_in_init_and_custom_variable(tmp_path: Path) -> None:
    """__init__ alone (Geneva's driver) opens no tracker; the first call does. memray_env names the variable."""
    proc = run_python(
        """
        import os, sys, udfmem
        @udfmem.tracked(every=1000, memray_env="MY_UDF_MEMRAY_OUT_DIR", name="../../esc ape")
        class Udf:
            def __init__(self):
                self.table = bytearray(1024)
            def __call__(self, x):
                return x
        udf = Udf()
        out = os.environ["MY_UDF_MEMRAY_OUT_DIR"]
        print("AFTER_INIT", os.listdir(out) if os.path.isdir(out) else [])
        udf(1)
        """,
        env={"MY_UDF_MEMRAY_OUT_DIR": str(tmp_path / "custom")},
    )
    assert "AFTER_INIT []" in proc.stdout
    (started,) = [e for e in parse_events(proc.stderr, "udfmem.memray") if e["action"] == "started"]
    path = Path(started["path"])
    assert tmp_path / "custom" == path.parent
    assert path.name.startswith("memray-esc_ape-")


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b\\c", "..", "", "名前 with spaces"])
def test_file_name_cannot_escape_the_directory(name: str) -> None:
    """Whatever the UDF's name, the file name is one plain path component."""
    fname = _memray.file_name(name, 42, 1)
    assert os.path.basename(fname) == fname
    assert fname.startswith("memray-") and fname.endswith("-42-1.bin")
    assert ".." not in fname


def test_report_flamegraph_summary_md_and_fail_on(tmp_path: Path) -> None:
    """--flamegraph writes memray's HTML next to the file; --summary-md a table; --fail-on-per-call exits 1."""
    profile(tmp_path, "Leaky", calls=8)
    md = tmp_path / "summary.md"
    (summary,) = report(tmp_path / "prof", extra=("--flamegraph", "--summary-md", str(md)))
    html = Path(summary["flamegraph"])
    assert html.exists() and html.stat().st_size > 1000
    assert "| file | udf | pid |" in md.read_text()
    assert "per-call retention" in md.read_text()
    code = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", "--fail-on-per-call", str(tmp_path / "prof")],
        capture_output=True,
        timeout=300,
    ).returncode
    assert 1 == code


def test_released_instance_closes_the_tracker_with_its_memory(tmp_path: Path) -> None:
    """Ray tears actors down before atexit: the tracker closes when the UDF object is released.

    Here the object is dropped by hand mid-process; the file still shows its 16 x 8 MiB.
    """
    proc = run_python(
        f"""
        import gc, sys
        sys.path.insert(0, {UDFS!r})
        from udfs.memory import Leaky
        udf = Leaky()
        udf.setup()
        for i in range(16):
            udf(i)
        del udf
        gc.collect()
        print("AFTER")
        """,
        env={"UDFMEM_MEMRAY_DIR": str(tmp_path / "prof")},
    )
    events = parse_events(proc.stderr, "udfmem.memray")
    assert [("started", None), ("stopped", "instance-released")] == [(e["action"], e.get("reason")) for e in events]
    (summary,) = report(tmp_path / "prof")
    assert summary["per_call_leaked_mb"] == pytest.approx(16 * 8, abs=1)


def test_worker_env_memray_settings() -> None:
    """worker_env() carries the memray switches, the directory made absolute."""
    env = udfmem.worker_env(memray_dir="prof", memray_native=True, memray_calls=100)
    assert {
        "UDFMEM_MEMRAY_DIR": os.path.abspath("prof"),
        "UDFMEM_MEMRAY_NATIVE": "1",
        "UDFMEM_MEMRAY_CALLS": "100",
    } == env


def test_generator_udf_with_init_is_profiled(tmp_path: Path) -> None:
    """A generator __call__ whose __init__ ran first (and bound udfmem) still opens memray at its first call."""
    run_python(
        """
        import udfmem

        @udfmem.tracked(every=1000)
        class Gen:
            def __init__(self):
                self.n = 2

            def __call__(self, x):
                yield from range(self.n)

        udf = Gen()
        print("RESULT", [list(udf(i)) for i in range(3)])
        """,
        env={"UDFMEM_MEMRAY_DIR": str(tmp_path / "prof")},
    )
    assert 1 == len(list((tmp_path / "prof").glob("memray-Gen-*.bin")))
