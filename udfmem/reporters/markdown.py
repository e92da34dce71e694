"""``udfmem report --summary-md``: a Markdown summary for CI artifacts.

File names, sidecar fields and frames are untrusted text: control characters are escaped
(:func:`udfmem._text.printable`), and so are the characters that would end a table cell
(``|``) or a code span (a backtick).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._text import printable
from ..analysis.profile import ProfileSummary
from .text import SHOWN_FRAMES


def _cell(value: object) -> str:
    """``value`` as the text of a table cell: control characters and ``|`` escaped."""
    return printable(str(value)).replace("|", "\\|")


def _code(text: str) -> str:
    """``text`` as a code span: control characters escaped, a backtick in it replaced by ``'``."""
    return "`" + printable(text).replace("`", "'") + "`"


def render(summaries: Sequence[ProfileSummary]) -> str:
    """A ``summary.md``: one table row per profile, then each profile's top stacks."""
    out = [
        "# udfmem memray report",
        "",
        "| file | udf | pid | peak MiB | leaked MiB | per-call MiB | one-time MiB | setup MiB | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        once = s.one_time_leaked_mb if s.call_snapshots else "-"  # '-': the profile had no times to tell by
        out.append(
            f"| {_cell(os.path.basename(s.path))} | {_cell(s.udf)} | {s.pid} | {s.peak_mb} | {s.leaked_mb} "
            f"| {s.per_call_leaked_mb} | {once} | {s.setup_leaked_mb} | {s.verdict} |"
        )
    for s in summaries:
        out += ["", f"## {_cell(os.path.basename(s.path))}", ""]
        out += [
            f"- {e.leaked_mb} MiB{' (one-time)' if e.one_time else ''}: {_code(' <- '.join(e.stack[:SHOWN_FRAMES]))}"
            for e in s.top_stacks
        ]
    return "\n".join(out) + "\n"
