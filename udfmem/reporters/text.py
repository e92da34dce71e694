"""The human-readable ``udfmem report``: a few lines per memray profile.

Paths, sidecar fields and stack frames come from files anybody may have written: every
one is printed through :func:`udfmem._text.printable` (control characters escaped).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._text import printable
from ..analysis.profile import ProfileSummary

SHOWN_FRAMES = 4
"""Frames of each top stack shown (innermost first)."""


def render(summaries: Sequence[ProfileSummary]) -> str:
    """Human-readable report of several summaries (no trailing newline)."""
    lines: list[str] = []
    for s in summaries:
        lines.append(f"{printable(s.path)}  (udf={printable(str(s.udf))} pid={s.pid})")
        once = f"one-time {s.one_time_leaked_mb} MiB (first calls only), " if s.call_snapshots else ""
        lines.append(
            f"  peak {s.peak_mb} MiB, leaked {s.leaked_mb} MiB: per-call {s.per_call_leaked_mb} MiB, "
            f"{once}setup {s.setup_leaked_mb} MiB, other {s.other_leaked_mb} MiB"
        )
        lines.append(f"  verdict: {s.verdict}")
        for entry in s.top_stacks:
            where = printable(" <- ".join(entry.stack[:SHOWN_FRAMES]))
            once = " (one-time)" if entry.one_time else ""
            lines.append(f"    {entry.leaked_mb:>9.1f} MiB in {entry.allocations} allocations{once}: {where}")
    return "\n".join(lines)
