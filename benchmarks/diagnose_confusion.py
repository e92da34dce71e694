"""The confusion matrix of ``udfmem diagnose`` on the scenario corpus (``tests/data/diagnose/``).

Run: ``python benchmarks/diagnose_confusion.py`` — one row per true pattern, one column per
pattern found, counting workers (each scenario has two). The corpus holds real Ray Data
worker logs; ``tests/engines/diagnose_scenarios.py --all tests/data/diagnose`` makes it again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from udfmem.analysis import patterns
from udfmem.commands.diagnose import load

DATA = Path(__file__).parent.parent / "tests" / "data" / "diagnose"


def main() -> None:
    """Print the matrix as a Markdown table, then the scenarios judged wrong."""
    expected: dict[str, str] = json.loads((DATA / "EXPECTED.json").read_text())
    counts: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []
    for scenario, truth in sorted(expected.items()):
        for w in load([str(DATA / f"{scenario}.log.gz")]).workers:
            counts[truth, w.verdict.pattern] += 1
            if w.verdict.pattern != truth:
                wrong.append(f"{scenario} pid {w.pid}: {w.verdict.pattern} ({w.verdict.evidence})")
    found = [p for p in patterns.PATTERNS if any(f == p for _, f in counts)]
    print("| true \\ found | " + " | ".join(f"`{p}`" for p in found) + " |")
    print("|---|" + "---|" * len(found))
    for truth in [p for p in patterns.PATTERNS if p in expected.values()]:
        print(f"| `{truth}` | " + " | ".join(str(counts[truth, p] or "") for p in found) + " |")
    print(f"\n{sum(counts.values())} workers, {len(wrong)} judged wrong")
    for line in wrong:
        print(" ", line)


if __name__ == "__main__":
    main()
