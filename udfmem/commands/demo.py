"""``udfmem demo``: a healthy and a leaky UDF side by side, in this process, no cluster."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .. import _emit
from .._decorator import tracked
from ..analysis import patterns, series

MIB = 1024 * 1024


@tracked(every=32, name="HealthyEmbed")
class HealthyEmbed:
    """Loads a 16 MiB "model" once; each call uses 4 MiB of scratch and frees it."""

    def setup(self) -> None:
        """Load the model (once per worker)."""
        self.model = bytearray(b"\x01") * (16 * MIB)

    def __call__(self, batch: list[int]) -> int:
        """Process one batch with temporary scratch memory."""
        scratch = bytearray(b"\x02") * (4 * MIB)
        return sum(batch) + scratch[-1]


@tracked(every=32, name="LeakyEmbed")
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


def summarize(name: str, snapshots: list[dict[str, Any]]) -> str:
    """One human line: how much the UDF grew over its calls, and whether that is a leak."""
    if not snapshots:
        return f"{name}: no snapshot"
    last = snapshots[-1]
    calls, growth = int(last["call"]), float(last.get("growth_mb") or 0.0)
    slope = series.slope_per_call([(int(s["call"]), float(s.get("growth_mb") or 0.0)) for s in snapshots])
    if patterns.grows_per_call(slope, growth):
        verdict = f"GREW {growth:.1f} MiB over {calls} calls (~{slope * 1024:.0f} KiB per call): {patterns.PER_CALL}"
    else:
        verdict = f"flat: growth {growth:.1f} MiB after {calls} calls"
    return f"{name}: {verdict}"


def run(out: TextIO, calls: int = 320) -> int:
    """Run both UDFs ``calls`` times; snapshot lines go to stderr, the summary to ``out``."""
    with _emit.capture() as events:
        for cls in (HealthyEmbed, LeakyEmbed):
            udf = cls()
            udf.setup()
            for i in range(calls):
                udf([i, i + 1, i + 2])
    out.write("\nudfmem demo summary\n")
    for name in ("HealthyEmbed", "LeakyEmbed"):
        snaps = [e for e in events if e.get("event") == "udfmem.snapshot" and e.get("udf") == name]
        out.write(summarize(name, snaps) + "\n")
    out.write("Next: put @tracked on your own UDF class and grep the worker logs for udfmem.snapshot.\n")
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
