"""The ``udfmem`` command line (also ``python -m udfmem``): one function per subcommand."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from . import _demo

    return _demo.run(sys.stdout, calls=args.calls)


def _report(args: argparse.Namespace) -> int:
    from . import report

    files = report.find_files(args.paths)
    if not files:
        print("udfmem report: no memray .bin files found", file=sys.stderr)
        return 2
    summaries = []
    for path in files:
        try:
            summaries.append(report.summarize(path, top=args.top))
        except Exception as exc:  # one unreadable file must not hide the others
            print(f"udfmem report: cannot read {path}: {exc}", file=sys.stderr)
    if args.flamegraph:
        for s in summaries:
            s["flamegraph"] = report.flamegraph(s["path"])
    if args.summary_md:
        with open(args.summary_md, "w", encoding="utf-8") as f:
            f.write(report.render_markdown(summaries))
    print(json.dumps(summaries, indent=2) if args.json else report.render_text(summaries))
    if args.fail_on and any(s["verdict"] == report.PER_CALL for s in summaries):
        return 1
    return 0 if len(summaries) == len(files) else 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``udfmem`` command."""
    parser = argparse.ArgumentParser(prog="udfmem", description="Memory telemetry for long-lived UDF workers.")
    parser.add_argument("--version", action="version", version=f"udfmem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a healthy and a leaky UDF in this process and show their snapshots")
    demo.add_argument("--calls", type=int, default=320, help="calls per UDF (default 320)")
    demo.set_defaults(func=_demo)
    rep = sub.add_parser("report", help="summarize memray files written with UDFMEM_MEMRAY_DIR")
    rep.add_argument("paths", nargs="+", help="memray .bin files or directories holding them")
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    rep.add_argument("--top", type=int, default=5, help="leaking stacks to show per file (default 5)")
    rep.add_argument("--flamegraph", action="store_true", help="render memray's leaks flame graph next to each file")
    rep.add_argument("--summary-md", metavar="FILE", help="also write a Markdown summary (for CI artifacts)")
    rep.add_argument(
        "--fail-on-per-call", dest="fail_on", action="store_true", help="exit 1 when a file shows per-call retention"
    )
    rep.set_defaults(func=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``udfmem`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
