"""The human-readable ``udfmem report``: a few lines per memray profile."""

from __future__ import annotations

from collections.abc import Sequence

from ..analysis.profile import ProfileSummary

SHOWN_FRAMES = 4
"""Frames of each top stack shown (innermost first)."""


def render(summaries: Sequence[ProfileSummary]) -> str:
    """Human-readable report of several summaries (no trailing newline)."""
    lines: list[str] = []
    for s in summaries:
        lines.append(f"{s.path}  (udf={s.udf} pid={s.pid})")
        lines.append(
            f"  peak {s.peak_mb} MiB, leaked {s.leaked_mb} MiB: per-call {s.per_call_leaked_mb} MiB, "
            f"setup {s.setup_leaked_mb} MiB, other {s.other_leaked_mb} MiB"
        )
        lines.append(f"  verdict: {s.verdict}")
        for entry in s.top_stacks:
            where = " <- ".join(entry.stack[:SHOWN_FRAMES])
            lines.append(f"    {entry.leaked_mb:>9.1f} MiB in {entry.allocations} allocations: {where}")
    return "\n".join(lines)
