"""``udfmem report --summary-md``: a Markdown summary for CI artifacts."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..analysis.profile import ProfileSummary
from .text import SHOWN_FRAMES


def render(summaries: Sequence[ProfileSummary]) -> str:
    """A ``summary.md``: one table row per profile, then each profile's top stacks."""
    out = [
        "# udfmem memray report",
        "",
        "| file | udf | pid | peak MiB | leaked MiB | per-call MiB | setup MiB | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        out.append(
            f"| {os.path.basename(s.path)} | {s.udf} | {s.pid} | {s.peak_mb} | {s.leaked_mb} "
            f"| {s.per_call_leaked_mb} | {s.setup_leaked_mb} | {s.verdict} |"
        )
    for s in summaries:
        out += ["", f"## {os.path.basename(s.path)}", ""]
        out += [f"- {e.leaked_mb} MiB: `{' <- '.join(e.stack[:SHOWN_FRAMES])}`" for e in s.top_stacks]
    return "\n".join(out) + "\n"
