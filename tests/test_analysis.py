"""Pure analysis: the robust slope and the memray profile verdict on synthetic records."""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
from pathlib import Path

import pytest

from udfmem.analysis import patterns, profile
from udfmem.analysis.profile import Frame, LeakRecord, ProfileHeader
from udfmem.analysis.series import Point, lag_slope
from udfmem.analysis.verdict import Verdict

MIB = patterns.MIB
SOURCE = "/src/udfs/embed.py"
SIDECAR = {"udf": "Embed", "pid": 7, "methods": ["__call__"], "setup": ["__init__", "setup"], "source": SOURCE}
HEADER = ProfileHeader(pid=99, peak_bytes=300 * MIB, native_traces=False, ended=True)
WRAPPER: Frame = ("wrapper", os.path.join(profile.UDFMEM_DIR, "_decorator.py"), 40)
ENGINE: Frame = ("map_batches", "/site-packages/engine/worker.py", 120)
CALL: Frame = ("__call__", SOURCE, 20)
SETUP: Frame = ("setup", SOURCE, 12)
ELSEWHERE: Frame = ("<module>", "/src/app.py", 3)


def leak(size: int, *frames: Frame, allocations: int = 1) -> LeakRecord:
    """A leaked record at ``frames`` (innermost first)."""
    return LeakRecord(frames, size, allocations)


def verdict(*records: LeakRecord) -> str:
    """The verdict of a profile made of ``records``."""
    return profile.summarize("p.bin", SIDECAR, HEADER, records).verdict


def line(*values: float, segments: tuple[int, ...] = ()) -> list[Point]:
    """Points at calls 8, 16, ... with RSS ``values`` (segment i from index segments[i] on)."""
    out = []
    for i, v in enumerate(values):
        seg = sum(i >= start for start in segments)
        out.append(Point(8 * (i + 1), v, v, v, None, None, None, None, None, None, seg))
    return out


def test_lag_slope_is_exact_on_a_line_and_ignores_one_spike() -> None:
    """On y = 0.25 x the slope is 0.25 per call; one spike anywhere does not move it; one point gives None."""
    straight = [2.0 * (i + 1) for i in range(20)]
    assert 0.25 == lag_slope(line(*straight), lambda p: p.private)
    spiked = [*straight[:12], 900.0, *straight[13:]]
    assert 0.25 == lag_slope(line(*spiked), lambda p: p.private)
    assert lag_slope(line(5.0), lambda p: p.private) is None


def test_lag_slope_never_spans_a_trim() -> None:
    """A sawtooth that trims bring down every 5 points rises within each segment only: its slope is the rise."""
    values = [100.0 + 8 * (i % 5) for i in range(20)]
    assert 1.0 == lag_slope(line(*values, segments=(5, 10, 15)), lambda p: p.private)


def test_pattern_vocabulary_is_the_contracts() -> None:
    """The seven pattern names of DESIGN.md, each once."""
    expected = ("healthy", "heap-leak", "arrow-leak", "untracked-growth", "allocator-retention", "peak-too-big")
    assert (*expected, "insufficient-data") == patterns.PATTERNS


def test_profile_verdict_per_call() -> None:
    """Bytes kept under ``__call__`` (through udfmem's wrapper) make a per-call verdict."""
    assert patterns.PER_CALL == verdict(leak(64 * MIB, CALL, WRAPPER, ENGINE), leak(100 * MIB, SETUP, ENGINE))


def test_profile_verdict_setup_only() -> None:
    """Bytes kept under ``setup`` only: the model, not a leak."""
    assert patterns.SETUP_ONLY == verdict(leak(64 * MIB, SETUP, ENGINE), leak(MIB // 2, CALL, ENGINE))


def test_profile_verdict_nothing() -> None:
    """Less than MIN_RETAINED_MIB in all retains nothing, wherever it came from."""
    assert patterns.NOTHING == verdict(leak(MIB - 1, CALL, ENGINE))
    assert patterns.NOTHING == verdict()


def test_profile_verdict_elsewhere() -> None:
    """Mostly outside the UDF's methods; a ``__call__`` in another file is not the UDF's."""
    assert patterns.ELSEWHERE == verdict(leak(64 * MIB, ELSEWHERE), leak(64 * MIB, ("__call__", "/other.py", 1)))


def test_profile_verdict_thresholds() -> None:
    """Per-call needs MIN_RETAINED_MIB and PER_CALL_MIN_SHARE of the total; setup SETUP_MIN_SHARE."""
    assert patterns.PER_CALL == patterns.profile_verdict(MIB, 0, 4 * MIB)
    assert patterns.ELSEWHERE == patterns.profile_verdict(MIB, 0, 4 * MIB + 1)
    assert patterns.SETUP_ONLY == patterns.profile_verdict(0, 2 * MIB, 4 * MIB)
    assert patterns.ELSEWHERE == patterns.profile_verdict(0, 2 * MIB - 1, 4 * MIB)
    assert patterns.ELSEWHERE == patterns.profile_verdict(MIB - 1, 0, MIB)


def test_classify_stack_innermost_method_decides() -> None:
    """The innermost frame that is one of the UDF's methods names the origin."""
    attribution = profile.Attribution.from_sidecar(SIDECAR)
    assert profile.CALL == profile.classify_stack([CALL, SETUP], attribution)
    assert profile.SETUP == profile.classify_stack([SETUP, CALL], attribution)
    assert profile.OTHER == profile.classify_stack([ELSEWHERE, ENGINE], attribution)
    assert profile.CALL == profile.classify_stack([("__call__", "/any.py", 1)], profile.Attribution())


def test_user_frames_drop_udfmem_wrappers() -> None:
    """udfmem's own frames are left out; a stack of nothing else gets the stand-in."""
    assert ["__call__ (embed.py:20)", "map_batches (worker.py:120)"] == profile.user_frames([CALL, WRAPPER, ENGINE])
    assert [profile.NO_PYTHON_FRAME] == profile.user_frames([WRAPPER])


def test_summary_numbers_and_top_stacks() -> None:
    """Sizes in MiB rounded, the per-call share, stacks merged by user frames and ranked by size."""
    records = [
        leak(3 * MIB, CALL, WRAPPER, ENGINE, allocations=3),
        leak(1 * MIB, CALL, ENGINE, allocations=1),
        leak(2 * MIB, SETUP, ENGINE, allocations=2),
        leak(MIB // 10, ELSEWHERE),
    ]
    s = profile.summarize("dir/p.bin", SIDECAR, HEADER, records, top=2)
    assert ("Embed", 7, 300.0) == (s.udf, s.pid, s.peak_mb)
    assert (6.1, 4.0, 2.0, 0.1) == (s.leaked_mb, s.per_call_leaked_mb, s.setup_leaked_mb, s.other_leaked_mb)
    assert 0.656 == s.per_call_share
    assert [(4.0, 4), (2.0, 2)] == [(e.leaked_mb, e.allocations) for e in s.top_stacks]
    assert ("__call__ (embed.py:20)", "map_batches (worker.py:120)") == s.top_stacks[0].stack
    assert s.complete and s.flamegraph is None


def test_no_sidecar_uses_defaults_and_the_header() -> None:
    """Without a sidecar: ``__call__``/``setup`` anywhere, the header's pid; a file never closed has no verdict."""
    ended = ProfileHeader(pid=99, peak_bytes=0, native_traces=True, ended=True)
    s = profile.summarize("p.bin", {}, ended, [leak(8 * MIB, ("__call__", "/x.py", 1))])
    assert (None, 99, patterns.PER_CALL, True, True) == (s.udf, s.pid, s.verdict, s.native_traces, s.complete)
    killed = ProfileHeader(pid=99, peak_bytes=0, native_traces=True, ended=False)
    s = profile.summarize("p.bin", {}, killed, [leak(8 * MIB, ("__call__", "/x.py", 1))])
    assert (patterns.INCOMPLETE, False, 8.0) == (s.verdict, s.complete, s.per_call_leaked_mb)


@pytest.mark.parametrize("package", ["analysis", "reporters"])
def test_analysis_and_reporters_never_import_the_runtime(package: str) -> None:
    """analysis/ imports the stdlib and itself; reporters/ the stdlib, itself, analysis/, _text (png.py: matplotlib).

    ``udfmem._text`` (escaping what is printed from input) is a leaf importing the stdlib
    alone, checked here too, so a reporter importing it loads no runtime.
    """
    allowed = {"analysis"} if package == "analysis" else {"analysis", "reporters", "_text"}
    leaf = ast.parse((Path(profile.UDFMEM_DIR) / "_text.py").read_text())
    leaf_imports = {a.name for n in ast.walk(leaf) if isinstance(n, ast.Import) for a in n.names}
    leaf_imports |= {n.module or "." for n in ast.walk(leaf) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in leaf_imports} <= sys.stdlib_module_names | {"__future__"}
    for path in (Path(profile.UDFMEM_DIR) / package).glob("*.py"):
        extra = {"matplotlib"} if path.name == "png.py" else set()
        known = sys.stdlib_module_names | {"__future__"} | extra
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert {a.name.split(".")[0] for a in node.names} <= known, path
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (node.module or "").split(".")[0] in known, path
            elif isinstance(node, ast.ImportFrom):
                target = package if node.level == 1 else (node.module or "").split(".")[0]
                assert node.level <= 2 and target in allowed, (path, node.module)


def test_every_threshold_is_named_with_its_reason() -> None:
    """Each upper-case constant of patterns.py (thresholds, names) has a docstring right after it; none is set twice."""
    body = ast.parse(Path(patterns.__file__).read_text()).body
    names: list[str] = []
    undocumented: list[str] = []
    for node, after in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
            names += targets
            if not (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
                undocumented += targets
    assert ([], len(names)) == (undocumented, len(set(names)))
    assert {"GROWTH_SHARE", "MIN_GROWTH_MIB", "RETENTION_SHARE", "STEP_WINDOWS", "ONSET_FLAT_SHARE"} <= set(names)


def test_verdict_fields_are_a_contract() -> None:
    """Verdict keeps every field users read, since_call added last (a default, so positional callers still work)."""
    fields = [f.name for f in dataclasses.fields(Verdict)]
    expected = ["pattern", "fix", "evidence", "also", "slope_mb_per_100_calls", "calls_to_limit", "grew", "since_call"]
    assert expected == fields
    assert Verdict("healthy", "", "").since_call is None
