"""A lifetime peak is never judged as a window peak (issue 20, platforms).

Where the kernel's peak cannot be reset (macOS; ``/proc/self/clear_refs`` not writable),
each snapshot's ``peak_rss_mb`` is the process's lifetime peak and says
``peak_is_lifetime=true``. A big transient early in the run then stands in every later
snapshot: read as window peaks, a flat worker was named ``peak-too-big``.

The logs here are written by udfmem in a real child process where the reset is really
impossible: the child makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), so the
kernel gives its ``/proc/self`` files to root, and runs as an unprivileged user (``nobody``
through ``setpriv`` when the tests run as root), so opening ``clear_refs`` for writing fails
with EACCES as it would where the file is missing. macOS itself cannot run here; this is the
same condition on the real kernel (udfmem's probes, windows and renderer all real). A control
run of the same UDF where the reset works (the window peaks are real) must be named
``peak-too-big``: the transient is real, only its meaning differs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from udfmem.analysis import diagnosis as _diagnosis
from udfmem.analysis import patterns as P
from udfmem.commands.diagnose import load
from udfmem.events.parse import parse_event, parse_line
from udfmem.events.schema import Snapshot, Suspect
from udfmem.policies.detector import Detector

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534
READY = "udfmem-child-ready"
_PRELUDE = """
import ctypes, os, sys
if NO_RESET:
    ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self goes to root
    try:
        os.close(os.open("/proc/self/clear_refs", os.O_WRONLY))
    except FileNotFoundError:
        pass  # no clear_refs at all: the reset is impossible too
    except PermissionError:
        pass
    else:
        sys.exit("clear_refs still writable")
import udfmem
print("READY", flush=True)
"""

TRANSIENT = """
import structlog
if STRUCTLOG:  # the user's own structlog, as udfmem's log_format="structlog" hands it the events
    structlog.configure(
        processors=[structlog.processors.LogfmtRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )

@udfmem.tracked(every=10)
class Flat:
    def __init__(self):
        self.held = bytearray(400 * 2**20)  # ~430 MiB RSS all along
        self.held[::4096] = b"x" * len(self.held[::4096])

    def __call__(self, i):
        if i == 0:  # one huge transient at the first call (~3.5x the RSS), then flat
            b = bytearray(1100 * 2**20)
            b[::4096] = b"x" * len(b[::4096])
            del b
        return i

udf = Flat()
for i in range(1500):  # 150 snapshots: past the series' 128 points, dropped peaks are folded
    udf(i)
"""
"""A flat UDF (~430 MiB) whose first call touches 1.1 GiB and frees it: a peak 3.5x its RSS, once."""


def run_child(body: str, no_reset: bool, env: dict[str, str] | None = None, **flags: bool) -> str:
    """Run ``body`` after udfmem's import in a child (this venv), the peak reset impossible if ``no_reset``; its stderr.

    ``flags`` are set as upper-case globals of the script (``structlog=True`` -> ``STRUCTLOG``).
    Skipped where the condition cannot be made: root without ``setpriv``, a checkout or
    interpreter ``nobody`` cannot read, a kernel that still lets the child reset its peak.
    """
    names = {"NO_RESET": no_reset, **{k.upper(): v for k, v in flags.items()}}
    script = "\n".join(f"{k} = {v!r}" for k, v in names.items())
    script += textwrap.dedent(_PRELUDE).replace("READY", READY) + textwrap.dedent(body)
    cmd = [sys.executable, "-c", script]
    if no_reset and os.getuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root without setpriv: cannot run a child whose peak reset is impossible")
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    full_env.update({"PYTHONPATH": str(ROOT), "UDFMEM_SUSPECT": "1", **(env or {})})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=600, check=False)
    if no_reset and READY not in proc.stdout:
        if "clear_refs still writable" in proc.stderr:
            pytest.skip("this kernel lets a non-dumpable unprivileged process reset its peak")
        if "Permission denied" in proc.stderr:
            pytest.skip(f"the unprivileged child cannot read this checkout or interpreter: {proc.stderr[-300:]}")
    assert 0 == proc.returncode, proc.stderr[-2000:]
    return proc.stderr


_RUNS: dict[tuple[bool, str], list[str]] = {}


def lines(no_reset: bool, fmt: str) -> list[str]:
    """The udfmem lines of the transient UDF's run (once per session): ``fmt`` logfmt, json or structlog."""
    key = (no_reset, fmt)
    if key not in _RUNS:
        env = {"UDFMEM_LOG_FORMAT": fmt}
        out = run_child(TRANSIENT, no_reset, env, structlog=fmt == "structlog")
        _RUNS[key] = [line for line in out.splitlines() if "udfmem." in line]
    return _RUNS[key]


# -- the layouts the readers meet, from the real lines -----------------------------------


def _extra_key(line: str) -> str:
    """An extra key right after ``ts`` (another renderer's order): read by name, not matched whole."""
    if line.startswith("{"):
        return re.sub(r'("ts":"[^"]*")', r'\1,"level":"info"', line, count=1)
    return re.sub(r"( ts=\S*)", r"\1 level=info", line, count=1)


def _quoted(line: str) -> str:
    """A quoted (logfmt) or escaped (JSON) extra value: read by pairs or by the general parser."""
    if line.startswith("{"):
        return line[:-1] + ',"logger":"udf \\"worker\\""}'
    return line + ' logger="udf worker"'


def _nested(line: str) -> str:
    """A nested object (JSON: the general parser's) or a quoted key before ``event=`` (logfmt, as structlog's level)."""
    if line.startswith("{"):
        return line[:-1] + ',"ctx":{"task":1}}'
    return 'level="info" ' + line


VARIANTS: dict[str, Callable[[str], str]] = {
    "as-written": lambda line: line,
    "console": lambda line: "(MapWorker pid=4242, ip=10.0.0.7) " + line,  # Ray's driver console
    "extra-key": _extra_key,
    "quoted": _quoted,
    "nested": _nested,
}
CASES = [(fmt, v) for fmt in ("logfmt", "json") for v in VARIANTS] + [("structlog", "as-written")]


def _diagnosed(tmp_path: Path, found: list[str], variant: str) -> list[dict[str, Any]]:
    """The ``--json`` workers of a log holding ``found`` in ``variant``'s layout."""
    log = tmp_path / "worker.log"
    log.write_text("".join(VARIANTS[variant](line) + "\n" for line in found))
    result = load([str(log)])
    workers: list[dict[str, Any]] = result.to_dict()["workers"]
    return workers


def test_the_lines_are_lifetime_peaks_of_an_early_transient() -> None:
    """The premise: every snapshot says peak_is_lifetime, its peak over 3x the RSS (the first call's transient)."""
    snaps = [f for f in map(parse_line, lines(True, "logfmt")) if f and f["event"] == "udfmem.snapshot"]
    assert 150 <= len(snaps)
    assert [True] * len(snaps) == [s.get("peak_is_lifetime") for s in snaps]
    rss = statistics.median(s["rss_mb"] for s in snaps)
    assert all(s["peak_rss_mb"] > 3 * rss for s in snaps)


@pytest.mark.parametrize(("fmt", "variant"), CASES)
def test_a_lifetime_peak_is_not_peak_too_big_in_any_reader_path(tmp_path: Path, fmt: str, variant: str) -> None:
    """Every layout, every reader path: the flat worker is not peak-too-big, has no max peak, and a note says why."""
    (worker,) = _diagnosed(tmp_path, lines(True, fmt), variant)
    assert (P.HEALTHY, None) == (worker["pattern"], worker.get("also"))
    assert "peak_max_mb" not in worker  # unknown, not the lifetime peak
    assert [_diagnosis.LIFETIME_NOTE] == [n for n in worker["notes"] if n.startswith("peaks not judged")]


@pytest.mark.parametrize(("fmt", "variant"), [c for c in CASES if c[0] != "structlog"])
def test_the_same_transient_with_window_peaks_is_peak_too_big(tmp_path: Path, fmt: str, variant: str) -> None:
    """The control, through the same layouts: where the peak is reset, the transient's window says peak-too-big."""
    (worker,) = _diagnosed(tmp_path, lines(False, fmt), variant)
    assert P.PEAK_TOO_BIG in (worker["pattern"], worker.get("also"))
    assert 1000 < worker["peak_max_mb"]
    assert "notes" not in worker


def _suspects(found: list[str]) -> list[str]:
    """The patterns the child's own online detector said (its ``udfmem.suspect`` lines)."""
    return [f["pattern"] for f in map(parse_line, found) if f and f["event"] == "udfmem.suspect"]


def test_the_online_detector_in_the_worker_never_says_peak_too_big_for_lifetime_peaks() -> None:
    """The child's own detector: silent on peak-too-big under lifetime peaks, and says it where peaks are windows'."""
    assert P.PEAK_TOO_BIG not in _suspects(lines(True, "logfmt"))
    assert P.PEAK_TOO_BIG in _suspects(lines(False, "logfmt"))


def _fed(found: list[str]) -> list[Suspect]:
    """What a fresh detector says when fed the snapshots of ``found`` (its cost clock standing still)."""
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    detector = Detector(lambda: (None, None), clock=clock, cost_clock=lambda: 0.0)
    said = []
    for line in found:
        event = parse_event(line)
        if isinstance(event, Snapshot):
            suspect = detector.observe(event)
            if suspect is not None:
                said.append(suspect)
    return said


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_a_detector_fed_lifetime_snapshots_never_says_peak_too_big(fmt: str) -> None:
    """udfmem.policies.detector fed the real lifetime snapshots says no peak-too-big; fed the control's, it does."""
    assert P.PEAK_TOO_BIG not in [s.pattern for s in _fed(lines(True, fmt))]
    assert P.PEAK_TOO_BIG in [s.pattern for s in _fed(lines(False, fmt))]


def test_diagnose_says_once_per_udf_that_lifetime_peaks_were_not_judged(tmp_path: Path) -> None:
    """The text names the note once for the UDF's workers (two workers here), the JSON per worker."""
    log = tmp_path / "two.log"
    first = lines(True, "logfmt")
    pid = parse_line(first[0])["pid"]  # type: ignore[index]
    second = [line.replace(f"pid={pid} ", "pid=7 ") for line in first]
    log.write_text("\n".join(first + second) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "udfmem", "diagnose", str(log)], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    notes = [line for line in out.splitlines() if _diagnosis.LIFETIME_NOTE in line]
    assert 1 == len(notes), out
    assert "and 1 more worker)" in notes[0]
    data = json.loads(
        subprocess.run(
            [sys.executable, "-m", "udfmem", "diagnose", "--json", str(log)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout
    )
    assert [[_diagnosis.LIFETIME_NOTE]] * 2 == [
        [n for n in w["notes"] if n == _diagnosis.LIFETIME_NOTE] for w in data["workers"]
    ]
