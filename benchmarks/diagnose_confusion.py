"""The confusion matrices of ``udfmem diagnose`` and of the online detector on the scenario corpus.

Run: ``python benchmarks/diagnose_confusion.py [--workers]``. The corpus is
``tests/data/diagnose/`` (real engine runs, made by ``tests/engines/diagnose_scenarios.py``
from the shapes of ``benchmarks/shapes.py``; truths in ``EXPECTED.json``). Printed, as
Markdown:

- offline: one row per truth, one column per verdict, counting workers, once from the
  worker files (``<scenario>.log.gz``) and once from the driver's console
  (``<scenario>.console.log.gz``, where recorded);
- online: each worker's snapshot and trim lines replayed through the real online detector
  (:func:`shapes.replay`): the first pattern it names, at which call of how many, its
  events and flips, and the targets missed (:func:`shapes.online_misses`); the false
  alarms (events on healthy runs that never grew);
- ``--workers``: one line per worker with all of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes

from udfmem.analysis import patterns
from udfmem.commands.diagnose import load


@dataclasses.dataclass(frozen=True)
class Row:
    """One worker of the corpus: its truth, offline verdicts (files, console), and online replay."""

    scenario: str
    pid: int
    truth: shapes.Truth
    files: str
    console: str | None
    online: shapes.Replay
    misses: tuple[str, ...]


def rows(data: Path = shapes.DATA) -> list[Row]:
    """Judge every worker of every stored scenario offline (each source) and online (the worker files replayed)."""
    out = []
    for scenario, truth in sorted(shapes.expected(data).items()):
        found = shapes.sources(scenario, data)
        verdicts = {kind: {w.pid: w.verdict.pattern for w in load([str(path)]).workers} for kind, path in found.items()}
        for run in shapes.replay(shapes.lines_of(found["files"])):
            misses = tuple(shapes.online_misses(run, truth))
            console = verdicts.get("console", {}).get(run.pid) if "console" in found else None
            out.append(Row(scenario, run.pid, truth, verdicts["files"].get(run.pid, "-"), console, run, misses))
    return out


def matrix(pairs: list[tuple[str, str]]) -> list[str]:
    """A Markdown confusion matrix of ``(truth, found)`` pairs."""
    counts = Counter(pairs)
    found = [p for p in patterns.PATTERNS if any(f == p for _, f in counts)]
    truths = [p for p in patterns.PATTERNS if any(t == p for t, _ in counts)]
    out = ["| true \\ found | " + " | ".join(f"`{p}`" for p in found) + " |", "|---|" + "---|" * len(found)]
    for truth in truths:
        out.append(f"| `{truth}` | " + " | ".join(str(counts[truth, p] or "") for p in found) + " |")
    right = sum(n for (t, f), n in counts.items() if t == f)
    out.append(f"\n{sum(counts.values())} workers, {right} right, {sum(counts.values()) - right} wrong")
    return out


def first_said(run: shapes.Replay) -> str:
    """``pattern@call/last_call`` of the first problem named, or ``-``."""
    first = run.first
    return "-" if first is None else f"{first[1]}@{first[0]}/{run.last_call}"


def main() -> None:
    """Print the offline and online matrices, the workers judged wrong, and (``--workers``) every worker."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", action="store_true", help="one line per worker")
    parser.add_argument("--data", type=Path, default=shapes.DATA, help="the corpus directory (EXPECTED.json, logs)")
    args = parser.parse_args()
    table = rows(args.data)
    print("### Offline, from worker files\n")
    print("\n".join(matrix([(r.truth.pattern, r.files) for r in table])))
    print("\n### Offline, from the driver console\n")
    print("\n".join(matrix([(r.truth.pattern, r.console) for r in table if r.console is not None])))
    print("\n### Online (replayed): first problem named\n")
    print("\n".join(matrix([(r.truth.pattern, (r.online.first or (0, "healthy"))[1]) for r in table])))
    healthy = [r for r in table if r.truth.pattern == "healthy" and r.truth.saturates_call is None]
    alarms = sum(len(r.online.said) for r in healthy)
    met = sum(not r.misses for r in table)
    print(f"\nonline targets met by {met} of {len(table)} workers; {alarms} events on {len(healthy)} healthy workers")
    print("\n### Wrong or missed\n")
    for r in table:
        wrong = [f"files: {r.files}"] if r.files != r.truth.pattern else []
        wrong += [f"console: {r.console}"] if r.console is not None and r.console != r.truth.pattern else []
        wrong += [f"online: {m}" for m in r.misses]
        if wrong:
            print(f"- {r.scenario} pid {r.pid} (`{r.truth.pattern}`): " + "; ".join(wrong))
    if args.workers:
        print("\n| scenario | pid | truth | files | console | online first | events | flips | snapshots |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in table:
            print(
                f"| {r.scenario} | {r.pid} | {r.truth.pattern} | {r.files} | {r.console or '-'} | "
                f"{first_said(r.online)} | {len(r.online.said)} | {r.online.flips} | {r.online.snapshots} |"
            )


if __name__ == "__main__":
    main()
