"""``udfmem.testing`` against pytest-memray's ``limit_leaks`` on the same UDFs.

Run: ``python benchmarks/bench_testing.py [--leak-repeats 20] [--clean-repeats 50]``
(needs pytest-memray, in the ``dev`` extra).

The UDFs (``growth_udfs.py``): four leak shapes at 64 KiB per call (a dict cache, kept
batches, closures over batches, Arrow arrays kept) and four clean ones (0-20 MiB
transients, 4-thread churn, Arrow churn, a cache that fills 10 MiB and stops); each call
also waits ~1 ms. For each:
- **udfmem**: ``check_growth(cls, range(...), calls=256, warmup=32)`` repeated (a fresh
  instance each time, in one process), failing above 32 KiB per call; its time against
  the bare loop of the same 288 calls;
- **limit_leaks, one batch**: the usual unit test (one call) under
  ``@pytest.mark.limit_leaks("1 MB")`` with ``pytest --memray``;
- **limit_leaks, looped**: the same test calling the UDF 288 times, ``limit_leaks("1 MB")``.
Each pytest-memray variant runs ``--memray-repeats`` (default 5) parametrized tests in one
pytest run (it is slow: memray traces every allocation).

``--freeze-ab``: instead, ``check_growth`` with the long-lived heap frozen around the
measurement (as shipped) against the same check without the freeze (``udfmem.testing``'s
``_frozen`` swapped for a no-op), interleaved in one process, alternating which goes first:
median CPU seconds per check (the UDFs' 1 ms sleeps are not CPU) and whether every
verdict agrees. ``--heap-objects N`` keeps N more small objects alive first (a test
process with a big heap: many modules, fixtures, data).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import growth_udfs  # noqa: E402

from udfmem import testing  # noqa: E402
from udfmem.testing import check_growth  # noqa: E402

CALLS, WARMUP, LIMIT = 256, 32, "32 KB"


def udfmem_case(cls: type, repeats: int) -> tuple[int, float, float]:
    """(failures, median check seconds, median bare-loop seconds) over ``repeats``."""
    failures, checks, bares = 0, [], []
    for _ in range(repeats):
        t = time.perf_counter()
        report = check_growth(cls, range(10**9), calls=CALLS, warmup=WARMUP)
        checks.append(time.perf_counter() - t)
        failures += not report.passed(LIMIT)
        udf = cls()
        t = time.perf_counter()
        for i in range(CALLS + WARMUP):
            udf(i)
        bares.append(time.perf_counter() - t)
    checks.sort()
    bares.sort()
    return failures, checks[len(checks) // 2], bares[len(bares) // 2]


def memray_case(cls: type, repeats: int, looped: bool, workdir: Path) -> tuple[int, float]:
    """(failed tests, seconds per test) of pytest-memray's limit_leaks on ``cls``."""
    body = f"for i in range({CALLS + WARMUP}):\n        udf(i)" if looped else "udf(0)"
    test = workdir / f"test_{cls.__name__.lower()}_{int(looped)}.py"
    test.write_text(
        textwrap.dedent(
            f"""
            import sys
            import pytest
            sys.path.insert(0, {str(HERE)!r})
            from growth_udfs import {cls.__name__}

            @pytest.mark.limit_leaks("1 MB")
            @pytest.mark.parametrize("rep", range({repeats}))
            def test_case(rep):
                udf = {cls.__name__}()
                {{body}}
            """
        ).replace("{body}", body)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--memray", str(test)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        check=False,
    )
    took = time.perf_counter() - t
    failed = re.search(r"(\d+) failed", proc.stdout)
    return (int(failed[1]) if failed else 0), took / repeats


def freeze_ab(cls: type, repeats: int) -> tuple[float, float, bool, str]:
    """(median CPU s with the freeze, median without, whether all verdicts agree, the verdict) over ``repeats``."""
    frozen = testing._frozen
    cpu: dict[bool, list[float]] = {True: [], False: []}
    verdicts: set[str] = set()
    for rep in range(repeats):
        for freeze in (True, False) if rep % 2 == 0 else (False, True):
            testing._frozen = frozen if freeze else contextlib.nullcontext  # type: ignore[assignment]
            try:
                t = time.process_time()
                report = check_growth(cls, range(10**9), calls=CALLS, warmup=WARMUP)
                cpu[freeze].append(time.process_time() - t)
            finally:
                testing._frozen = frozen
            verdicts.add(f"{report.pattern}, {'fails' if not report.passed(LIMIT) else 'passes'}")
    med = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
    return med[True], med[False], len(verdicts) == 1, " / ".join(sorted(verdicts))


def main_freeze_ab(args: argparse.Namespace) -> None:
    """``--freeze-ab``: the freeze against no freeze, per UDF; print the table."""
    heap = [{"i": i} for i in range(args.heap_objects)]  # long-lived: alive for the whole run
    print(f"check_growth CPU, freeze vs none ({CALLS} calls after {WARMUP}; {len(heap):,} extra live objects)")
    print("| case | repeats | CPU/check, freeze (s) | CPU/check, none (s) | freeze / none | verdicts |")
    print("|---|---|---|---|---|---|")
    for kind, classes, repeats in (
        ("leak", growth_udfs.LEAKS, args.leak_repeats),
        ("clean", growth_udfs.CLEAN, args.clean_repeats),
    ):
        for cls in classes:
            if args.cases and cls.__name__ not in args.cases.split(","):
                continue
            with_s, without_s, same, verdict = freeze_ab(cls, repeats)
            agree = "identical" if same else "DIFFER"
            print(
                f"| {kind}: {cls.__name__} | {repeats} | {with_s:.3f} | {without_s:.3f} "
                f"| {with_s / without_s:.2f}x | {agree}: {verdict} |",
                flush=True,
            )


def main() -> None:
    """Run every case; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leak-repeats", type=int, default=20)
    parser.add_argument("--clean-repeats", type=int, default=50)
    parser.add_argument("--memray-repeats", type=int, default=5, help="limit_leaks tests per case and variant")
    parser.add_argument("--cases", help="comma-separated UDF class names (default: all)")
    parser.add_argument("--freeze-ab", action="store_true", help="check_growth with the gc freeze against without")
    parser.add_argument("--heap-objects", type=int, default=0, help="with --freeze-ab: extra live objects kept")
    args = parser.parse_args()
    if args.freeze_ab:
        main_freeze_ab(args)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="udfmem-bench-testing-") as tmp:
        cases = (("leak", growth_udfs.LEAKS, args.leak_repeats), ("clean", growth_udfs.CLEAN, args.clean_repeats))
        for kind, classes, repeats in cases:
            for cls in classes:
                if args.cases and cls.__name__ not in args.cases.split(","):
                    continue
                failures, check_s, bare_s = udfmem_case(cls, repeats)
                m = min(repeats, args.memray_repeats)
                one, one_s = memray_case(cls, m, False, Path(tmp))
                loop, loop_s = memray_case(cls, m, True, Path(tmp))
                rows.append(
                    (
                        kind,
                        cls.__name__,
                        repeats,
                        failures,
                        check_s,
                        bare_s,
                        f"{one} of {m}",
                        one_s,
                        f"{loop} of {m}",
                        loop_s,
                    )
                )
                print(rows[-1], flush=True)
    print(f"\nudfmem fails above {LIMIT} per call ({CALLS} calls after {WARMUP}); limit_leaks at 1 MB")
    print(
        "| case | repeats | udfmem failed | udfmem check / bare loop | limit_leaks, one batch: failed (s/test) "
        "| limit_leaks, looped: failed (s/test) |"
    )
    print("|---|---|---|---|---|---|")
    for kind, name, repeats, failures, check_s, bare_s, one_failed, one_s, loop_failed, loop_s in rows:
        print(
            f"| {kind}: {name} | {repeats} | {failures} of {repeats} "
            f"| {check_s / bare_s:.2f}x ({check_s:.2f} / {bare_s:.2f} s) "
            f"| {one_failed} ({one_s:.2f}) | {loop_failed} ({loop_s:.2f}) |"
        )


if __name__ == "__main__":
    main()
