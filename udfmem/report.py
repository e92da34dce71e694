"""Summaries of memray files written by udfmem: what a worker still held, and from where.

For each ``.bin`` file: the peak heap, the bytes still allocated when the tracker closed
("leaked"), how much of that was allocated under the UDF's per-call methods versus under
``setup()``/``__init__`` (read from the ``.json`` sidecar udfmem writes next to the file),
the top leaking stacks, and a verdict: ``per-call retention`` (memory kept across calls:
the classic stateful-UDF leak), ``setup only`` (the model and friends), ``nothing
retained``, or ``retained outside the UDF's methods``.

Leak sizes are exact because udfmem opens its trackers with Python allocator tracing
(``trace_python_allocators=True``); without it, pymalloc's arenas hide frees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

MIB = 1024 * 1024
PER_CALL = "per-call retention"
SETUP_ONLY = "setup only"
NOTHING = "nothing retained"
ELSEWHERE = "retained outside the UDF's methods"


def find_files(paths: Iterable[str]) -> list[str]:
    """The memray files named by ``paths``: files as given, directories searched for ``*.bin``."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                found += sorted(os.path.join(root, n) for n in names if n.endswith(".bin"))
        else:
            found.append(path)
    return found


def _sidecar(path: str) -> dict[str, Any]:
    try:
        with open(path + ".json", encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return {}


def _classify(stack: Sequence[tuple[str, str, int]], methods: set[str], setups: set[str], source: str | None) -> str:
    """``call``, ``setup`` or ``other``: the innermost frame that is one of the UDF's methods decides."""
    for function, filename, _ in stack:  # innermost first
        if source is not None and os.path.abspath(filename) != os.path.abspath(source):
            continue
        if function in setups:
            return "setup"
        if function in methods:
            return "call"
    return "other"


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frames(stack: Sequence[tuple[str, str, int]]) -> list[str]:
    """The stack without udfmem's own wrapper frames, rendered innermost first."""
    frames = [_frame(f) for f in stack if os.path.dirname(os.path.abspath(f[1])) != _OWN_DIR]
    return frames or ["(no Python frame: the interpreter or a native library)"]


def _frame(frame: tuple[str, str, int]) -> str:
    function, filename, line = frame
    return f"{function} ({os.path.basename(filename)}:{line})"


def summarize(path: str, top: int = 5) -> dict[str, Any]:
    """Summarize one memray file written by udfmem (see the module docstring)."""
    import memray

    side = _sidecar(path)
    methods = set(side.get("methods") or ["__call__"])
    setups = set(side.get("setup") or ["__init__", "setup"])
    source = side.get("source")
    reader = memray.FileReader(path)
    try:
        meta = reader.metadata
        totals = {"call": 0, "setup": 0, "other": 0}
        stacks: dict[tuple[str, ...], list[int]] = {}
        for record in reader.get_leaked_allocation_records(merge_threads=True):
            stack = record.stack_trace()
            kind = _classify(stack, methods, setups, source)
            totals[kind] += record.size
            key = tuple(_user_frames(stack)[:8])
            entry = stacks.setdefault(key, [0, 0])
            entry[0] += record.size
            entry[1] += record.n_allocations
    finally:
        reader.close()
    leaked = sum(totals.values())
    return {
        "path": path,
        "udf": side.get("udf"),
        "pid": side.get("pid", meta.pid),
        "peak_mb": round(meta.peak_memory / MIB, 1),
        "leaked_mb": round(leaked / MIB, 1),
        "per_call_leaked_mb": round(totals["call"] / MIB, 1),
        "setup_leaked_mb": round(totals["setup"] / MIB, 1),
        "other_leaked_mb": round(totals["other"] / MIB, 1),
        "per_call_share": round(totals["call"] / leaked, 3) if leaked else 0.0,
        "verdict": verdict(totals["call"], totals["setup"], leaked),
        "top_stacks": [
            {"leaked_mb": round(size / MIB, 1), "allocations": count, "stack": list(stack)}
            for stack, (size, count) in sorted(stacks.items(), key=lambda kv: -kv[1][0])[:top]
        ],
        "native_traces": bool(meta.has_native_traces),
        "complete": not side or bool(meta.end_time),
    }


def verdict(per_call: int, setup: int, leaked: int) -> str:
    """Name the pattern from the leaked bytes by origin."""
    if leaked < MIB:
        return NOTHING
    if per_call >= MIB and per_call >= 0.25 * leaked:
        return PER_CALL
    if setup >= 0.5 * leaked:
        return SETUP_ONLY
    return ELSEWHERE


def flamegraph(path: str) -> str:
    """Render memray's own leaks flame graph next to ``path``; return the HTML's path."""
    out = path[: -len(".bin")] + ".html" if path.endswith(".bin") else path + ".html"
    subprocess.run(
        [sys.executable, "-m", "memray", "flamegraph", "--leaks", "--force", "-o", out, path],
        check=True,
        capture_output=True,
        text=True,
    )
    return out


def render_text(summaries: list[dict[str, Any]]) -> str:
    """Human-readable report of several summaries."""
    lines: list[str] = []
    for s in summaries:
        lines.append(f"{s['path']}  (udf={s['udf']} pid={s['pid']})")
        lines.append(
            f"  peak {s['peak_mb']} MiB, leaked {s['leaked_mb']} MiB: per-call {s['per_call_leaked_mb']} MiB, "
            f"setup {s['setup_leaked_mb']} MiB, other {s['other_leaked_mb']} MiB"
        )
        lines.append(f"  verdict: {s['verdict']}")
        for entry in s["top_stacks"]:
            where = " <- ".join(entry["stack"][:4])
            lines.append(f"    {entry['leaked_mb']:>9.1f} MiB in {entry['allocations']} allocations: {where}")
    return "\n".join(lines)


def render_markdown(summaries: list[dict[str, Any]]) -> str:
    """A ``summary.md`` for CI artifacts: one table row per file, then the top stacks."""
    out = [
        "# udfmem memray report",
        "",
        "| file | udf | pid | peak MiB | leaked MiB | per-call MiB | setup MiB | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        out.append(
            f"| {os.path.basename(s['path'])} | {s['udf']} | {s['pid']} | {s['peak_mb']} | {s['leaked_mb']} "
            f"| {s['per_call_leaked_mb']} | {s['setup_leaked_mb']} | {s['verdict']} |"
        )
    for s in summaries:
        out += ["", f"## {os.path.basename(s['path'])}", ""]
        out += [f"- {e['leaked_mb']} MiB: `{' <- '.join(e['stack'][:4])}`" for e in s["top_stacks"]]
    return "\n".join(out) + "\n"
