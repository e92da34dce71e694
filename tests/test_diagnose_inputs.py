"""What the log and profile commands do with inputs they cannot read: name them, read the rest, never pass a gate.

Unreadable here is real: the tests run as root, whose CAP_DAC_OVERRIDE reads through any
``chmod 000``, so the commands run in a child process that dropped CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH from its bounding set before ``exec`` (still uid 0, owner of the test's
files, so its permission bits apply to it as to any user). Run as an ordinary user, the child
runs unchanged. Special and pseudo files are real too: a FIFO made here and ``/proc``'s own.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LEAK, run_python

from udfmem.commands import main

HEALTHY = """
import udfmem
@udfmem.tracked(every=8)
class Steady:
    def __call__(self, x):
        return bytes(64 * 1024)[:1]
udf = Steady()
for i in range(403):
    udf(i)
"""

PROFILE = """
import sys
sys.path.insert(0, {udfs!r})
from udfs.memory import Clean
udf = Clean()
udf.setup()
for i in range(32):
    udf(i)
"""

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
TIMEOUT = 300  # seconds for a command that must not block (a loaded machine starts Python slowly)


def _drop_file_capabilities() -> None:
    """In the child, before exec: lose root's power to read through permission bits (no-op for a non-root user)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def udfmem(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m udfmem ARGS`` in a child that permission bits bind (see the module docstring)."""
    return subprocess.run(
        [sys.executable, "-m", "udfmem", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_drop_file_capabilities,
        check=False,
    )


@pytest.fixture(scope="module")
def permissions_bind(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless a mode-000 file is unreadable to the child :func:`udfmem` starts (probed once)."""
    path = tmp_path_factory.mktemp("probe") / "locked.log"
    path.write_text("x\n")
    path.chmod(0)
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(path)!r}).read()"],
        capture_output=True,
        preexec_fn=_drop_file_capabilities,
        timeout=TIMEOUT,
        check=False,
    )
    path.chmod(0o644)
    if probe.returncode == 0:
        pytest.skip("permission bits do not bind a child process here (cannot drop CAP_DAC_OVERRIDE)")


@pytest.fixture
def locked(tmp_path: Path, permissions_bind: None) -> Iterator[Path]:
    """A directory holding a log, made unreadable (mode 000) under ``tmp_path``."""
    path = tmp_path / "locked"
    path.mkdir()
    (path / "leak.log").write_text("x\n")
    path.chmod(0)
    yield path
    path.chmod(0o755)


@pytest.fixture(scope="module")
def logs() -> dict[str, str]:
    """Real stderr of a healthy UDF and of a leaking one (403 calls each, every=8)."""
    env = {"UDFMEM_SUSPECT": "0"}
    return {"healthy": run_python(HEALTHY, env=env).stderr, "leak": run_python(LEAK, env=env).stderr}


@pytest.fixture(scope="module")
def clean_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real memray profile of a UDF that retains only its setup (closed: a complete profile)."""
    pytest.importorskip("memray")
    out = tmp_path_factory.mktemp("prof")
    run_python(PROFILE.format(udfs=str(Path(__file__).parent)), env={"UDFMEM_MEMRAY_DIR": str(out)})
    (path,) = out.glob("*.bin")
    return path


def copy_profile(profile: Path, to: Path) -> None:
    """Copy a memray file and its sidecar (``.bin.json``) to ``to`` (a ``.bin`` path)."""
    shutil.copy(profile, to)
    shutil.copy(f"{profile}.json", f"{to}.json")


def stderr_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The child's stderr, one entry a line; no traceback allowed."""
    assert "Traceback" not in proc.stderr
    return proc.stderr.splitlines()


# -- diagnose --------------------------------------------------------------------------


def test_an_unreadable_subdirectory_fails_the_gate_beside_a_healthy_log(
    tmp_path: Path, locked: Path, logs: dict[str, str]
) -> None:
    """A worker's directory that cannot be listed: named, the readable verdict printed, ``--fail-on`` exits 1.

    ``--allow-unreadable`` judges what was read (exit 0), still naming the directory.
    """
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "worker.log").write_text(logs["healthy"])
    gate = udfmem("diagnose", "--fail-on", "heap-leak", str(tmp_path))
    assert 1 == gate.returncode
    assert "1 of 1 `Steady` workers healthy" in gate.stdout
    assert f"udfmem diagnose: cannot read {locked}: permission denied" in stderr_lines(gate)

    allowed = udfmem("diagnose", "--fail-on", "heap-leak", "--allow-unreadable", str(tmp_path))
    assert 0 == allowed.returncode
    assert f"udfmem diagnose: cannot read {locked}: permission denied" in stderr_lines(allowed)

    plain = udfmem("diagnose", str(tmp_path))
    assert 2 == plain.returncode  # unreadable input, as the contract says; what was read is printed
    assert "1 of 1 `Steady` workers healthy" in plain.stdout


def test_one_unreadable_file_loses_no_other_verdict(
    tmp_path: Path, logs: dict[str, str], permissions_bind: None
) -> None:
    """Two readable logs and one unreadable file: both verdicts, one line naming the file, exit 2; JSON names it."""
    (tmp_path / "a.log").write_text(logs["leak"])
    (tmp_path / "b.log").write_text(logs["healthy"])
    bad = tmp_path / "c.log"
    bad.write_text(logs["leak"])
    bad.chmod(0)
    proc = udfmem("diagnose", str(tmp_path))
    assert 2 == proc.returncode
    assert "1 of 1 `Leak` workers: heap-leak" in proc.stdout
    assert "1 of 1 `Steady` workers healthy" in proc.stdout
    assert [f"udfmem diagnose: cannot read {bad}: permission denied"] == stderr_lines(proc)

    as_json = udfmem("diagnose", "--json", str(tmp_path))
    assert 2 == as_json.returncode
    result = json.loads(as_json.stdout)
    assert {"version", "workers", "summary", "lines", "unreadable"} == set(result)
    assert [{"path": str(bad), "reason": "permission denied"}] == result["unreadable"]
    assert {"Leak": {"heap-leak": 1}, "Steady": {"healthy": 1}} == result["summary"]

    assert 0 == udfmem("diagnose", "--allow-unreadable", str(tmp_path)).returncode


def test_a_broken_link_in_a_directory_is_named(tmp_path: Path, logs: dict[str, str]) -> None:
    """A link whose log is gone is an input that cannot be read: named, exit 2, the other log still judged."""
    (tmp_path / "a.log").write_text(logs["healthy"])
    (tmp_path / "gone.log").symlink_to(tmp_path / "rotated-away.log")
    proc = udfmem("diagnose", str(tmp_path))
    assert 2 == proc.returncode
    assert "1 of 1 `Steady` workers healthy" in proc.stdout
    assert [f"udfmem diagnose: cannot read {tmp_path / 'gone.log'}: a broken link"] == stderr_lines(proc)


@pytest.mark.parametrize("layout", ["no-snapshots", "empty-directory"])
def test_no_snapshots_fails_the_gate(
    tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str], logs: dict[str, str]
) -> None:
    """A wrong path gives nothing to judge: ``--fail-on`` exits 1 (even with ``--allow-unreadable``); plain is 0."""
    if layout == "no-snapshots":
        (tmp_path / "app.log").write_text("INFO starting\nINFO done\n")
    assert 1 == main(["diagnose", "--fail-on", "heap-leak", str(tmp_path)])
    captured = capsys.readouterr()
    assert "no udfmem snapshots found" in captured.out
    assert ["udfmem diagnose: --fail-on: no udfmem snapshots to judge"] == captured.err.splitlines()
    assert 1 == main(["diagnose", "--fail-on", "heap-leak", "--allow-unreadable", str(tmp_path)])
    assert 0 == main(["diagnose", str(tmp_path)])


def test_a_udf_filter_that_matches_nothing_fails_the_gate(tmp_path: Path, logs: dict[str, str]) -> None:
    """``--udf`` naming no UDF of the logs leaves nothing to judge: the gate fails (a typo must not pass CI)."""
    (tmp_path / "w.log").write_text(logs["healthy"])
    assert 1 == main(["diagnose", "--fail-on", "heap-leak", "--udf", "Stedy", str(tmp_path)])
    assert 0 == main(["diagnose", "--fail-on", "heap-leak", "--udf", "Steady", str(tmp_path)])


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib (the plot extra) is missing")
def test_plot_draws_what_it_read_and_names_the_rest(
    tmp_path: Path, logs: dict[str, str], permissions_bind: None
) -> None:
    """``udfmem plot``: the readable worker is drawn (PNG written), the unreadable file named, exit 2."""
    (tmp_path / "a.log").write_text(logs["healthy"])
    bad = tmp_path / "b.log"
    bad.write_text(logs["leak"])
    bad.chmod(0)
    out = tmp_path / "mem.png"
    proc = udfmem("plot", "-o", str(out), str(tmp_path))
    assert 2 == proc.returncode
    assert [f"udfmem plot: cannot read {bad}: permission denied"] == stderr_lines(proc)
    assert f"wrote {out}: 1 panel of 1 worker, worst first" in proc.stdout
    assert out.stat().st_size > 0


# -- pseudo and special files (item 15) ------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="no /proc here")
@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_proc_files_are_refused_without_blocking(command: str) -> None:
    """``/proc/kmsg`` (a regular file per stat, whose read blocks) and ``/proc/self/status``: named, exit 2, at once."""
    paths = [p for p in ("/proc/kmsg", "/proc/self/status") if os.path.exists(p)]
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", command, *paths], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert 2 == proc.returncode
    lines = stderr_lines(proc)
    for path in paths:
        assert f"udfmem {command}: cannot read {path}: a pseudo file (proc), not a log" in lines


@pytest.mark.parametrize("command", ["diagnose", "report"])
def test_a_fifo_never_blocks(tmp_path: Path, command: str, logs: dict[str, str], clean_profile: Path) -> None:
    """A FIFO named explicitly is refused (exit 2); one inside a directory is noted and the directory's files read."""
    fifo = tmp_path / ("stuck.bin" if command == "report" else "stuck.log")
    os.mkfifo(fifo)
    named = subprocess.run(
        [sys.executable, "-m", "udfmem", command, str(fifo)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert 2 == named.returncode
    assert f"udfmem {command}: cannot read {fifo}: not a regular file (a FIFO)" in stderr_lines(named)

    if command == "report":
        copy_profile(clean_profile, tmp_path / "clean.bin")
    else:
        (tmp_path / "w.log").write_text(logs["healthy"])
    walked = subprocess.run(
        [sys.executable, "-m", "udfmem", command, str(tmp_path)], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert 0 == walked.returncode, walked.stderr
    assert [f"udfmem {command}: note: skipped {fifo}: not a regular file (a FIFO)"] == stderr_lines(walked)


# -- report ----------------------------------------------------------------------------


def test_report_gate_fails_on_an_unreadable_subdirectory(tmp_path: Path, locked: Path, clean_profile: Path) -> None:
    """A profile directory that cannot be listed beside a readable clean profile: named, reported, gate exits 1.

    ``--allow-unreadable`` passes the gate on what was read; without the gate the exit is 2.
    """
    (tmp_path / "ok").mkdir()
    copy_profile(clean_profile, tmp_path / "ok" / "clean.bin")
    gate = udfmem("report", "--fail-on-per-call", str(tmp_path))
    assert 1 == gate.returncode
    assert "setup only" in gate.stdout
    assert f"udfmem report: cannot read {locked}: permission denied" in stderr_lines(gate)

    assert 0 == udfmem("report", "--fail-on-per-call", "--allow-unreadable", str(tmp_path)).returncode
    assert 2 == udfmem("report", str(tmp_path)).returncode


def test_report_gate_fails_with_nothing_to_judge(tmp_path: Path) -> None:
    """No profile found under the path: without a gate exit 2 (as before), with ``--fail-on-per-call`` exit 1."""
    assert 2 == main(["report", str(tmp_path)])
    assert 1 == main(["report", "--fail-on-per-call", str(tmp_path)])
    assert 1 == main(["report", "--fail-on-per-call", "--allow-unreadable", "--allow-incomplete", str(tmp_path)])
