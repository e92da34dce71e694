"""`udfmem report` tells memory left once, on the first calls, from memory that grows with the calls.

Real memray files of real numpy UDFs (a subprocess with UDFMEM_MEMRAY_DIR, as in test_memray),
and the rule itself on records whose times are given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import udfmem
from udfmem.analysis import patterns, profile
from udfmem.analysis.profile import Frame, LeakRecord, ProfileHeader
from udfmem.commands.report import notes as report_notes

pytest.importorskip("memray")
pytest.importorskip("numpy")

MIB = patterns.MIB

UDF = """
import numpy as np
import udfmem


@udfmem.tracked(every=8)
class Embed:
    def setup(self):
        self.w = np.random.default_rng(0).standard_normal((512, 256))
        self.table = None
        self.kept = []

    def __call__(self, i):
        if self.table is None:  # a lookup table built lazily, at the first call: kept, never again
            self.table = np.ones(1 << 20)  # 8 MiB
        x = np.random.default_rng(i).standard_normal((256, 512))
        y = x @ self.w  # OpenBLAS allocates its buffer at the first product
        if KEEP:
            self.kept.append(y)  # 512 KiB per call
        return float(y.sum())
"""

RUN = """
import sys
sys.path[:0] = [{elsewhere!r}, {udfs!r}]
import udfmem, embed
assert udfmem.__file__.startswith({elsewhere!r}), udfmem.__file__
embed.KEEP = {keep}
udf = embed.Embed()
udf.setup()
for i in range({calls}):
    udf(i)
"""


def numpy_profile(tmp_path: Path, keep: bool, calls: int = 200) -> Path:
    """Run ``calls`` calls of the numpy UDF in a fresh process under memray; the profiles' directory.

    The worker imports udfmem from a copy elsewhere (as a Ray ``working_dir`` does): its frames
    are at other paths than the reporting udfmem's.
    """
    elsewhere = tmp_path / "working_dir"
    shutil.copytree(Path(udfmem.__file__).parent, elsewhere / "udfmem", ignore=shutil.ignore_patterns("__pycache__"))
    udfs = tmp_path / "udfs"
    udfs.mkdir()
    (udfs / "embed.py").write_text(UDF)
    code = RUN.format(elsewhere=str(elsewhere), udfs=str(udfs), keep=keep, calls=calls)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    env.update(UDFMEM_MEMRAY_DIR=str(tmp_path / "prof"), OPENBLAS_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert 0 == proc.returncode, proc.stderr
    return tmp_path / "prof"


def report(directory: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    """``udfmem report --json --top 50 [extra]`` on ``directory``: its exit status, summaries and stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", "--json", "--top", "50", *extra, str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    summaries: list[dict[str, Any]] = json.loads(proc.stdout)
    return proc.returncode, summaries, proc.stderr


def frames_of(summary: dict[str, Any]) -> list[str]:
    """Every rendered frame of a summary's stacks."""
    return [frame for entry in summary["top_stacks"] for frame in entry["stack"]]


def test_a_healthy_numpy_udf_passes_the_gate(tmp_path: Path) -> None:
    """200 calls of ``x @ w``, an 8 MiB table built at the first call: one-time, not per-call; the gate passes.

    The one-time bytes are the table (8 MiB) and whatever BLAS kept at its first product
    (OpenBLAS: 32 MiB here); nothing grows with the calls. udfmem's own allocations (its
    snapshots, its detector) are shown as udfmem's, never as ``judge``/``observe`` frames,
    although the worker's udfmem lives elsewhere.
    """
    directory = numpy_profile(tmp_path, keep=False)
    code, (summary,), stderr = report(directory, "--fail-on-per-call")
    assert 0 == code
    assert "MiB left by the first calls only" in stderr
    assert patterns.PER_CALL != summary["verdict"]
    assert summary["per_call_leaked_mb"] < 1
    assert summary["one_time_leaked_mb"] >= 8
    assert summary["call_snapshots"] >= profile.MIN_CALL_SNAPSHOTS
    table = [e for e in summary["top_stacks"] if "__call__ (embed.py:15)" in e["stack"]]
    assert [(8.0, True)] == [(e["leaked_mb"], e.get("one_time", False)) for e in table]
    names = {frame.partition(" ")[0] for frame in frames_of(summary)}
    assert set() == names & {"judge", "_judge_now", "observe", "call_wrapper", "setup_wrapper", "snapshot"}
    assert [profile.UDFMEM_OWN] in [e["stack"] for e in summary["top_stacks"]]


def test_a_numpy_udf_that_keeps_its_results_fails_the_gate(tmp_path: Path) -> None:
    """The same UDF keeping each 512 KiB product: ~100 MiB per-call retention, and the gate exits 1."""
    directory = numpy_profile(tmp_path, keep=True)
    code, (summary,), _ = report(directory, "--fail-on-per-call")
    assert 1 == code
    assert patterns.PER_CALL == summary["verdict"]
    assert 200 * 0.5 == pytest.approx(summary["per_call_leaked_mb"], rel=0.4)  # + BLAS's buffer at the same line
    assert 8.0 == summary["one_time_leaked_mb"]


SOURCE = "/src/udfs/embed.py"
SIDECAR = {"udf": "Embed", "pid": 7, "methods": ["__call__"], "setup": ["setup"], "source": SOURCE}
HEADER = ProfileHeader(pid=7, peak_bytes=0, native_traces=False, ended=True)
CALL: Frame = ("__call__", SOURCE, 20)
TABLE: Frame = ("__call__", SOURCE, 14)
LOOP: Frame = ("<module>", "/src/run.py", 9)
WARMUP: Frame = ("<module>", "/src/run.py", 7)
ELSEWHERE_WRAPPER: Frame = ("call_wrapper", "/tmp/ray/session_1/working_dir/udfmem/runtime/wrappers.py", 136)


def scratch(*snapshots: int) -> LeakRecord:
    """A per-call stack that allocated at ``snapshots`` and freed it all (nothing left)."""
    return LeakRecord((CALL, LOOP), 0, 0, (), snapshots)


def kept(frames: tuple[Frame, ...], *born: int, size: int = MIB) -> LeakRecord:
    """A record of ``frames`` with ``size`` bytes left from each snapshot of ``born``."""
    return LeakRecord(frames, size * len(born), len(born), tuple((at, size) for at in born), born)


def summarize(*records: LeakRecord) -> profile.ProfileSummary:
    """The summary of a profile made of ``records``."""
    return profile.summarize("p.bin", SIDECAR, HEADER, records)


def test_bytes_left_by_the_first_calls_only_are_one_time() -> None:
    """Calls span snapshots 1-40: 32 MiB born at snapshot 1 only is one-time; 1 MiB from each call is per-call."""
    once = summarize(scratch(*range(1, 41)), kept((TABLE, LOOP), 1, size=32 * MIB))
    assert (0.0, 32.0, patterns.SETUP_ONLY) == (once.per_call_leaked_mb, once.one_time_leaked_mb, once.verdict)
    growing = summarize(scratch(*range(1, 41)), kept((CALL, LOOP), *range(1, 41)))
    assert (40.0, 0.0, patterns.PER_CALL) == (growing.per_call_leaked_mb, growing.one_time_leaked_mb, growing.verdict)


def test_one_late_byte_makes_the_whole_site_per_call() -> None:
    """A site with bytes from the first calls and one from a late call grows with the calls: all of it per-call."""
    s = summarize(scratch(*range(1, 41)), kept((TABLE, LOOP), 1, 2, 3), kept((TABLE, LOOP), 39))
    assert (4.0, 0.0, patterns.PER_CALL) == (s.per_call_leaked_mb, s.one_time_leaked_mb, s.verdict)


def test_a_warm_up_call_or_udfmem_wrapper_line_is_not_another_site() -> None:
    """The same line reached from a warm-up call or udfmem's slow path is one site: the late bytes count for all."""
    first = kept((CALL, ELSEWHERE_WRAPPER, WARMUP), 1)
    later = kept((CALL, LOOP), *range(2, 41))
    s = summarize(first, later)
    assert (40.0, 0.0) == (s.per_call_leaked_mb, s.one_time_leaked_mb)


def test_too_few_call_snapshots_tell_nothing_apart() -> None:
    """Calls seen at fewer than MIN_CALL_SNAPSHOTS snapshots: early cannot be told from late, all is per-call."""
    few = range(1, profile.MIN_CALL_SNAPSHOTS)
    s = summarize(scratch(*few), kept((TABLE, LOOP), 1, size=32 * MIB))
    assert (32.0, 0.0, patterns.PER_CALL) == (s.per_call_leaked_mb, s.one_time_leaked_mb, s.verdict)


def test_the_report_says_what_it_split_or_why_it_could_not() -> None:
    """A one-time split is named; a per-call verdict from a run too short to split says to run more calls."""
    once = summarize(scratch(*range(1, 41)), kept((TABLE, LOOP), 1, size=32 * MIB))
    assert ["note: p.bin: 32.0 MiB left by the first calls only"] == [n.partition(",")[0] for n in report_notes(once)]
    short = summarize(scratch(1, 2, 3), kept((TABLE, LOOP), 1, size=32 * MIB))
    assert [
        "note: p.bin: the calls span 3 memory snapshots only: one-time buffers cannot be told from per-call growth "
        "(run more calls)"
    ] == report_notes(short)
    assert [] == report_notes(summarize(kept((CALL, LOOP), *range(1, 41))))


def test_records_without_times_are_per_call() -> None:
    """Records without times (a memray without temporal records) give the old answer: per-call."""
    s = summarize(scratch(*range(1, 41)), LeakRecord((TABLE, LOOP), 32 * MIB, 1))
    assert (32.0, 0.0, patterns.PER_CALL) == (s.per_call_leaked_mb, s.one_time_leaked_mb, s.verdict)


def test_the_first_calls_are_counted_by_rank_not_time() -> None:
    """An idle hour before the last batch (snapshots 37 to 3,600) does not make the calls before it 'early'.

    Calls at snapshots 1-36 and 3,600-3,603: bytes born at snapshot 20, the middle of the calls, are per-call.
    """
    calls = (*range(1, 37), *range(3600, 3604))
    s = summarize(scratch(*calls), kept((TABLE, LOOP), 20))
    assert (1.0, 0.0) == (s.per_call_leaked_mb, s.one_time_leaked_mb)


def test_udfmem_frames_are_told_by_module_wherever_installed() -> None:
    """A frame of udfmem's module at another path is udfmem's; a user's ``udfmem/`` file that is no module is not."""
    verdict_elsewhere: Frame = ("judge", "/tmp/ray/session_1/working_dir/udfmem/analysis/verdict.py", 80)
    relative: Frame = ("lag_slope", "udfmem/analysis/series.py", 40)
    users: Frame = ("helper", "/src/udfmem/mine.py", 3)
    assert "udfmem.analysis.verdict" == profile.own_module(verdict_elsewhere[1])
    assert "udfmem.runtime.wrappers" == profile.own_module(ELSEWHERE_WRAPPER[1])
    assert profile.own_module(users[1]) is None
    assert ["__call__ (embed.py:20)", "helper (mine.py:3)"] == profile.user_frames([CALL, ELSEWHERE_WRAPPER, users])
    assert [profile.NO_PYTHON_FRAME] == profile.user_frames([verdict_elsewhere, relative])


def test_an_allocation_inside_udfmem_is_shown_as_udfmems() -> None:
    """udfmem's detector keeping a point during a call: shown as udfmem's own, not as the user's loop."""
    verdict_elsewhere: Frame = ("judge", "/opt/venv/site-packages/udfmem/analysis/verdict.py", 80)
    s = summarize(kept((verdict_elsewhere, ELSEWHERE_WRAPPER, LOOP), 1, size=2 * MIB))
    assert [((profile.UDFMEM_OWN,), 2.0)] == [(e.stack, e.leaked_mb) for e in s.top_stacks]
    assert (0.0, 2.0) == (s.per_call_leaked_mb, s.other_leaked_mb)


def test_the_summary_round_trips_through_json() -> None:
    """The new fields survive the child's JSON reply (``to_dict`` then ``from_dict``)."""
    s = summarize(scratch(*range(1, 41)), kept((TABLE, LOOP), 1, size=32 * MIB))
    assert s == profile.ProfileSummary.from_dict(json.loads(json.dumps(s.to_dict())))


def test_a_pre_aggregated_capture_is_reported_without_a_one_time_split(tmp_path: Path) -> None:
    """A ``memray run --aggregate`` file keeps no allocation history: it is read from its plain leaked records.

    Its figures come as before the one-time split (no ``one_time_leaked_mb``); the temporal
    reader would raise ``NotImplementedError`` on it.
    """
    import memray

    path = tmp_path / "memray-Agg-1-1.bin"
    kept: list[bytearray] = []
    with memray.Tracker(str(path), file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS):
        kept.extend(bytearray(1 << 20) for _ in range(4))
    code, (summary,), stderr = report(tmp_path)
    assert 0 == code, stderr
    assert summary["leaked_mb"] >= 4
    assert "one_time_leaked_mb" not in summary


def test_the_notes_escape_a_path_s_control_characters() -> None:
    """A file name with a terminal escape is printed escaped in the notes, as everywhere else in the report."""
    once = summarize(scratch(*range(1, 41)), kept((TABLE, LOOP), 1, size=32 * MIB))
    (note,) = report_notes(dataclasses.replace(once, path="p\x1b[2J.bin"))
    assert "\x1b" not in note
    assert note.startswith("note: p\\x1b[2J.bin: ")
