"""Reporters render a hand-built ProfileSummary to exactly the text, Markdown and JSON ``udfmem report`` prints."""

from __future__ import annotations

import dataclasses
import json

from udfmem.analysis import patterns
from udfmem.analysis.profile import NO_PYTHON_FRAME, ProfileSummary, StackEntry
from udfmem.reporters import json as json_reporter
from udfmem.reporters import markdown, text

STACK = ("__call__ (memory.py:34)", "map (engine.py:10)", "run (engine.py:20)", "loop (engine.py:30)", "main (x.py:1)")
SUMMARY = ProfileSummary(
    path="/prof/memray-Leaky-42-1.bin",
    udf="Leaky",
    pid=42,
    peak_mb=2056.3,
    leaked_mb=2048.0,
    per_call_leaked_mb=2047.9,
    setup_leaked_mb=0.0,
    other_leaked_mb=0.1,
    per_call_share=1.0,
    verdict=patterns.PER_CALL,
    top_stacks=(StackEntry(2047.9, 256, STACK), StackEntry(0.1, 3, (NO_PYTHON_FRAME,))),
    native_traces=False,
    complete=True,
)
CLEAN = dataclasses.replace(
    SUMMARY,
    path="/prof/memray-Clean-7-1.bin",
    udf="Clean",
    pid=7,
    verdict=patterns.NOTHING,
    top_stacks=(),
)
KEYS = [
    "path",
    "udf",
    "pid",
    "peak_mb",
    "leaked_mb",
    "per_call_leaked_mb",
    "setup_leaked_mb",
    "other_leaked_mb",
    "per_call_share",
    "verdict",
    "top_stacks",
    "native_traces",
    "complete",
]


def test_text() -> None:
    """Per profile a header, the sizes, the verdict and the top stacks (four frames each), no trailing newline."""
    expected = (
        "/prof/memray-Leaky-42-1.bin  (udf=Leaky pid=42)\n"
        "  peak 2056.3 MiB, leaked 2048.0 MiB: per-call 2047.9 MiB, setup 0.0 MiB, other 0.1 MiB\n"
        "  verdict: per-call retention\n"
        "       2047.9 MiB in 256 allocations: "
        "__call__ (memory.py:34) <- map (engine.py:10) <- run (engine.py:20) <- loop (engine.py:30)\n"
        "          0.1 MiB in 3 allocations: (no Python frame: the interpreter or a native library)\n"
        "/prof/memray-Clean-7-1.bin  (udf=Clean pid=7)\n"
        "  peak 2056.3 MiB, leaked 2048.0 MiB: per-call 2047.9 MiB, setup 0.0 MiB, other 0.1 MiB\n"
        "  verdict: nothing retained"
    )
    assert expected == text.render([SUMMARY, CLEAN])
    assert "" == text.render([])


def test_markdown() -> None:
    """A table row per profile, then each profile's stacks."""
    expected = """# udfmem memray report

| file | udf | pid | peak MiB | leaked MiB | per-call MiB | one-time MiB | setup MiB | verdict |
|---|---|---|---|---|---|---|---|---|
| memray-Leaky-42-1.bin | Leaky | 42 | 2056.3 | 2048.0 | 2047.9 | - | 0.0 | per-call retention |
| memray-Clean-7-1.bin | Clean | 7 | 2056.3 | 2048.0 | 2047.9 | - | 0.0 | nothing retained |

## memray-Leaky-42-1.bin

- 2047.9 MiB: `__call__ (memory.py:34) <- map (engine.py:10) <- run (engine.py:20) <- loop (engine.py:30)`
- 0.1 MiB: `(no Python frame: the interpreter or a native library)`

## memray-Clean-7-1.bin

"""
    assert expected == markdown.render([SUMMARY, CLEAN])


def test_json_keys_and_values() -> None:
    """The keys ``udfmem report --json`` has always printed, in order; ``flamegraph`` only when rendered."""
    (plain, rendered) = json.loads(json_reporter.render([SUMMARY, dataclasses.replace(SUMMARY, flamegraph="f.html")]))
    assert KEYS == list(plain)
    assert [*KEYS, "flamegraph"] == list(rendered)
    assert "f.html" == rendered["flamegraph"]
    assert {"leaked_mb": 2047.9, "allocations": 256, "stack": list(STACK)} == plain["top_stacks"][0]
    assert SUMMARY.to_dict() == plain
    assert json.dumps([plain], indent=2) == json_reporter.render([SUMMARY])


ONE_TIME = dataclasses.replace(
    SUMMARY,
    verdict=patterns.SETUP_ONLY,
    per_call_leaked_mb=0.0,
    one_time_leaked_mb=32.0,
    call_snapshots=20,
    top_stacks=(StackEntry(32.0, 1, STACK, one_time=True),),
)


def test_text_and_markdown_show_one_time_bytes_when_the_profile_had_times() -> None:
    """Bytes left by the first calls only are shown apart, and their stack is marked, in both human formats."""
    lines = text.render([ONE_TIME]).splitlines()
    assert (
        "  peak 2056.3 MiB, leaked 2048.0 MiB: per-call 0.0 MiB, one-time 32.0 MiB (first calls only), "
        "setup 0.0 MiB, other 0.1 MiB"
    ) == lines[1]
    assert lines[3].startswith("         32.0 MiB in 1 allocations (one-time): __call__ (memory.py:34)")
    table = markdown.render([ONE_TIME]).splitlines()
    assert "| memray-Leaky-42-1.bin | Leaky | 42 | 2056.3 | 2048.0 | 0.0 | 32.0 | 0.0 | setup only |" == table[4]
    assert any(line.startswith("- 32.0 MiB (one-time): `__call__") for line in table)
