"""What profiling costs: one UDF run plain, with udfmem's memray tracker, and with native stacks.

Run: ``python benchmarks/bench_memray.py`` (``--json`` for machine output).

Each variant runs in a fresh process: 20 calls of an allocation-heavy UDF (200,000 small
Python objects per call, the worst case for ``trace_python_allocators=True``) and 20
calls of an array-heavy one (8 MiB buffers, few allocations). Reported: the wall time of
the calls, and the ratio to the plain run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

WORKLOAD = """
import json, time, udfmem

@udfmem.tracked(every=1000)
class SmallObjects:
    def __call__(self, i):
        rows = [{"id": j, "name": str(j)} for j in range(200_000)]
        return len(rows)

@udfmem.tracked(every=1000)
class Buffers:
    def __call__(self, i):
        return len(bytearray(b"\\x01") * (8 * 1024 * 1024))

out = {}
for cls in (SmallObjects, Buffers):
    udf = cls()
    t0 = time.perf_counter()
    for i in range(20):
        udf(i)
    out[cls.__name__] = time.perf_counter() - t0
print("RESULT " + json.dumps(out))
"""


def run(env_extra: dict[str, str]) -> dict[str, float]:
    """Run the workload in a fresh interpreter with ``env_extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(WORKLOAD)], capture_output=True, text=True, env=env, check=True
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, float] = json.loads(line[7:])
    return result


def main() -> int:
    """Run the variants side by side and print the table (or JSON)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as prof:
        variants: dict[str, dict[str, str]] = {
            "plain": {},
            "memray (python allocators)": {"UDFMEM_MEMRAY_DIR": prof},
            "memray + native stacks": {"UDFMEM_MEMRAY_DIR": prof, "UDFMEM_MEMRAY_NATIVE": "1"},
        }
        results: dict[str, Any] = {name: run(env) for name, env in variants.items()}
    base = results["plain"]
    for r in results.values():
        r["ratio"] = {k: round(r[k] / base[k], 2) for k in ("SmallObjects", "Buffers")}
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{'variant':30s} {'small objects s':>16s} {'ratio':>6s} {'buffers s':>10s} {'ratio':>6s}")
    for name, r in results.items():
        print(
            f"{name:30s} {r['SmallObjects']:16.2f} {r['ratio']['SmallObjects']:6.2f}"
            f" {r['Buffers']:10.3f} {r['ratio']['Buffers']:6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
