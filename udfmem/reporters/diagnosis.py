"""``udfmem diagnose``'s output: a table of workers per UDF, the fixes, a fleet line (text), or JSON.

UDFs and workers come worst first (:func:`udfmem.analysis.diagnosis.severity`). Under each
table, the evidence of the worst workers and of a healthy one, each with what the worker's
online detector said (its last word and the latest ``growing``: what grew on the UDF object),
then each distinct note once (lifetime peaks not judged, fields a worker could not read).

UDF, host and worker names come from the logs, which anybody may have written: the text
shows them with control characters escaped (:func:`udfmem._text.printable`), so an ESC,
BEL, CR or LF in a log value can neither drive the terminal nor forge a line; the JSON
escapes every character outside ASCII.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

from .._text import printable
from ..analysis import patterns as P
from ..analysis.diagnosis import Diagnosis, WorkerResult

SHOWN_WORKERS = 50
"""Workers listed per UDF in the text table (worst first); the rest are counted."""
DETAILED = 3
"""Workers per UDF whose evidence (and online clue) is shown: the worst; a healthy one is added for reference."""


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _row(w: WorkerResult) -> list[str]:
    v = w.verdict
    pattern = v.pattern + (f" (+{v.also})" if v.also else "")
    slope = "" if v.slope_mb_per_100_calls is None else f"{v.slope_mb_per_100_calls:+,.1f}"
    oom = "" if w.oom_call is None else f"~{w.oom_call:,}"
    return [
        printable(f"{w.host} pid {w.pid} {w.worker}"),
        pattern,
        slope,
        "" if v.since_call is None else f"{v.since_call:,}",
        f"{w.calls:,}",
        f"{_mb(w.rss_first_mb)}→{_mb(w.rss_last_mb)}",
        _mb(w.peak_max_mb),
        oom,
        str(w.trims),
    ]


HEADER = ["worker", "pattern", "MiB/100 calls", "since call", "calls", "RSS MiB", "max peak", "OOM at call", "trims"]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]


def fleet_line(udf: str, workers: Sequence[WorkerResult]) -> str:
    """One line for a UDF's fleet: how many workers show its most common problem, and the first OOM."""
    problems = [w for w in workers if w.verdict.pattern not in (P.HEALTHY, P.INSUFFICIENT_DATA)]
    if not problems:
        judged = sum(w.verdict.pattern == P.HEALTHY for w in workers)
        return f"{judged} of {len(workers)} `{printable(udf)}` workers healthy"
    counts: dict[str, int] = {}
    for w in problems:
        counts[w.verdict.pattern] = counts.get(w.verdict.pattern, 0) + 1
    pattern = max(counts, key=lambda k: counts[k])
    same = [w for w in problems if w.verdict.pattern == pattern]
    text = f"{len(same)} of {len(workers)} `{printable(udf)}` workers: {pattern}"
    slopes = [w.verdict.slope_mb_per_100_calls for w in same if w.verdict.slope_mb_per_100_calls is not None]
    if slopes:
        text += f" ~{statistics.median(slopes):,.1f} MiB/100 calls"
    ooms = [w for w in workers if w.oom_call is not None]
    if ooms:
        first = min(ooms, key=lambda w: w.oom_call or 0)
        text += f"; first projected OOM at call ~{first.oom_call:,} on host {printable(first.host)} pid {first.pid}"
    return text


def _detailed(workers: Sequence[WorkerResult]) -> list[WorkerResult]:
    """The workers of a UDF shown in detail: the worst :data:`DETAILED`, the worst healthy one, the worst with a clue.

    A healthy worker's evidence is the reference the others are read against; ``growing``
    (what grew on the UDF object, from the online detector) is the best clue to the fix.
    """
    shown = list(range(min(DETAILED, len(workers))))
    for wanted in (
        lambda w: w.verdict.pattern == P.HEALTHY,
        lambda w: w.online is not None and w.online.growing is not None,
    ):
        if not any(wanted(workers[i]) for i in shown):
            shown += [i for i, w in enumerate(workers) if wanted(w)][:1]
    return [workers[i] for i in sorted(shown)]  # worst first


def _online(w: WorkerResult) -> list[str]:
    """A worker's ``growing`` and online lines (none without ``udfmem.suspect`` events)."""
    o = w.online
    if o is None:
        return []
    who = f"{w.host} pid {w.pid}"
    out = []
    if o.growing is not None:
        out.append(printable(f"  growing ({who}): {o.growing}"))
    said = f"{o.pattern} since call {o.since_call:,}"
    if o.slope_mb_per_100_calls is not None and o.pattern != P.HEALTHY:
        said += f", {o.slope_mb_per_100_calls:+,.1f} MiB/100 calls"
    if o.growing is not None and o.growing_since_call is not None and o.growing_since_call != o.since_call:
        said += f" (growing above: said since call {o.growing_since_call:,})"
    out.append(printable(f"  online ({who}): {said}"))
    return out


def _notes(workers: Sequence[WorkerResult]) -> list[str]:
    """Each distinct note of a UDF's workers once, with the first worker that has it and how many more do."""
    having: dict[str, list[WorkerResult]] = {}
    for w in workers:
        for note in w.notes:
            having.setdefault(note, []).append(w)
    out = []
    for note, some in having.items():
        first, more = some[0], len(some) - 1
        who = f"{first.host} pid {first.pid}" + (f" and {more} more worker{'s' * (more != 1)}" if more else "")
        out.append(printable(f"  note ({who}): {note}"))
    return out


def _none_found(diagnosis: Diagnosis) -> str:
    """The line for no snapshot at all; with ``--udf``, the UDFs that have snapshots."""
    if diagnosis.udf is None:
        return "no udfmem snapshots found"
    text = f"no udfmem snapshots found for udf `{printable(diagnosis.udf)}`"
    if not diagnosis.other_udfs:
        return text + "; no other udf has any"
    found = ", ".join(f"`{printable(udf)}` ({n} worker{'s' * (n != 1)})" for udf, n in diagnosis.other_udfs)
    return f"{text}; udfs with snapshots: {found}"


def text(diagnosis: Diagnosis) -> str:
    """The human-readable diagnosis (no trailing newline)."""
    out: list[str] = []
    for udf, workers in diagnosis.by_udf().items():  # worst first
        out.append(f"udf {printable(udf)}: {len(workers)} worker{'s' if len(workers) != 1 else ''}")
        rows = [HEADER] + [_row(w) for w in workers[:SHOWN_WORKERS]]
        out += _table(rows)
        if len(workers) > SHOWN_WORKERS:
            out.append(f"  ... and {len(workers) - SHOWN_WORKERS} more")
        for w in _detailed(workers):
            out.append(printable(f"  evidence ({w.host} pid {w.pid}): {w.verdict.evidence}"))
            out += _online(w)
        out += _notes(workers)
        seen: list[str] = []
        for w in workers:
            for pattern in (w.verdict.pattern, w.verdict.also):
                if pattern and pattern not in seen and pattern != P.HEALTHY:
                    seen.append(pattern)
        for pattern in seen:
            out.append(f"  fix for {pattern}: {P.FIXES[pattern]}")
        out.append("  " + fleet_line(udf, workers))
        out.append("")
    if not diagnosis.workers:
        out.append(_none_found(diagnosis))
    lines = diagnosis.lines
    note = f"{lines.read:,} lines read, {lines.events:,} udfmem events, {lines.skipped:,} skipped"
    details = []
    if lines.unreadable:
        details.append(f"{lines.unreadable:,} unreadable udfmem lines")
    if lines.other_schema:
        details.append(f"{lines.other_schema:,} of another schema version")
    out.append(note + (f" ({', '.join(details)})" if details else ""))
    return "\n".join(out)


def as_json(diagnosis: Diagnosis) -> str:
    """The ``--json`` object, indented (no trailing newline)."""
    return json.dumps(diagnosis.to_dict(), indent=2, allow_nan=False)  # strict: no figure is non-finite
