"""``udfmem demo``: a healthy and a leaky UDF side by side, in this process, no cluster."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from ..analysis.series import Series
from ..analysis.verdict import judge
from ..events.point import of_fields

MIB = 1024 * 1024


def make_udfs() -> tuple[type, type]:
    """The demo's two tracked UDF classes (made on first use: the runtime is imported only for the demo)."""
    from ..runtime.decorator import tracked

    @tracked(every=16, name="HealthyEmbed")
    class HealthyEmbed:
        """Loads a 16 MiB "model" once; each call uses 4 MiB of scratch and frees it."""

        def setup(self) -> None:
            """Load the model (once per worker)."""
            self.model = bytearray(b"\x01") * (16 * MIB)

        def __call__(self, batch: list[int]) -> int:
            """Process one batch with temporary scratch memory."""
            scratch = bytearray(b"\x02") * (4 * MIB)
            return sum(batch) + scratch[-1]

    @tracked(every=16, name="LeakyEmbed")
    class LeakyEmbed:
        """Same work, but keeps 512 KiB of every batch on ``self``: a per-call leak."""

        def setup(self) -> None:
            """Load the model (once per worker)."""
            self.model = bytearray(b"\x01") * (16 * MIB)
            self.seen: list[bytearray] = []

        def __call__(self, batch: list[int]) -> int:
            """Process one batch, and (the bug) keep a copy of its scratch."""
            scratch = bytearray(b"\x02") * (MIB // 2)
            self.seen.append(scratch)
            return sum(batch) + scratch[-1]

    return HealthyEmbed, LeakyEmbed


def summarize(name: str, snapshots: list[dict[str, Any]]) -> str:
    """One human line: the pattern ``udfmem diagnose`` would name for these snapshots, and why."""
    if not snapshots:
        return f"{name}: no snapshot"
    s = Series()
    for fields in snapshots:
        p = of_fields(fields, s.segment)
        if p is not None:
            s.add(p)
    v = judge(s)
    slope = "" if v.slope_mb_per_100_calls is None else f" {v.slope_mb_per_100_calls:+.1f} MiB/100 calls"
    return f"{name}: {v.pattern}{slope} ({v.evidence})"


def run(out: TextIO, calls: int = 320) -> int:
    """Run both UDFs ``calls`` times; snapshot lines go to stderr, the summary to ``out``."""
    from ..emit.capture import capture  # what udfmem.testing.capture() is

    with capture() as events:
        for cls in make_udfs():
            udf = cls()
            udf.setup()
            for i in range(calls):
                udf([i, i + 1, i + 2])
    out.write("\nudfmem demo summary\n")
    for name in ("HealthyEmbed", "LeakyEmbed"):
        snaps = [e for e in events if e.get("event") == "udfmem.snapshot" and e.get("udf") == name]
        out.write(summarize(name, snaps) + "\n")
    out.write(
        "Next: put @tracked on your own UDF class; then, on the worker logs of a run:\n"
        "  udfmem diagnose LOGS...          names each worker's pattern and the first fix\n"
        "  udfmem plot LOGS... -o mem.png   draws the curves (pip install 'udfmem[plot]')\n"
        "and before the run, in a unit test: udfmem.testing.assert_no_growth(YourUDF, inputs)\n"
    )
    return 0


class DemoCommand:
    """``udfmem demo [--calls N]``."""

    name = "demo"
    help = "run a healthy and a leaky UDF in this process and show their snapshots"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """``--calls``: calls per UDF."""
        parser.add_argument("--calls", type=int, default=320, help="calls per UDF (default 320)")

    def run(self, args: argparse.Namespace) -> int:
        """Run the demo, the summary to stdout."""
        return run(sys.stdout, calls=args.calls)


COMMAND = DemoCommand()
"""The ``demo`` subcommand."""
