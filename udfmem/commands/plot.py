"""``udfmem plot``: worker logs in, a PNG of each worker's memory against its calls out.

Reading and judging are ``udfmem diagnose``'s (:func:`udfmem.commands.diagnose.load`:
files, directories, ``.gz``, stdin; ``--udf`` keeps one UDF's workers), drawing is
:mod:`udfmem.reporters.png` (matplotlib, the ``plot`` extra: ``pip install 'udfmem[plot]'``).
One panel per worker, the worst ``--worst`` (default 6) first, each titled with its
pattern; a line on stdout says what was written.

Exit 0 when the PNG was written; 2, with one line on stderr and no PNG written, when
matplotlib is missing, the logs hold no snapshot (of ``--udf``'s UDF, when given: nothing
to draw is a failure, as an empty picture would hide a wrong path or name), or the PNG
cannot be written. An input that cannot be read is named on one line and the others are
drawn; the exit is then 2 (no other line when nothing could be read at all). A bad
``--worst`` is a usage error (2).
"""

from __future__ import annotations

import argparse

from .._text import printable
from ..reporters import png
from . import diagnose
from ._args import add_log_inputs, at_least, error

EXTRA_HINT = "pip install 'udfmem[plot]'"
"""How to get matplotlib, named in the error when it is missing."""


def _error(message: str) -> int:
    return error("plot", message)


class PlotCommand:
    """``udfmem plot PATH... -o FILE.png [--udf NAME] [--worst N]``."""

    name = "plot"
    help = "draw each worker's memory against its calls (PNG; needs the plot extra)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Paths, ``-o``, ``--udf`` and ``--worst``."""
        add_log_inputs(parser)
        parser.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the PNG to write")
        parser.add_argument(
            "--worst",
            type=at_least(1),
            default=png.WORST,
            metavar="N",
            help=f"draw the worst N workers, one panel each (default {png.WORST})",
        )

    def run(self, args: argparse.Namespace) -> int:
        """Write the PNG and say so; exit 2 with one line on any failure (module docstring)."""
        try:
            png.require()
        except ImportError as exc:
            if (exc.name or "").split(".")[0] == "matplotlib":
                return _error(f"needs matplotlib: {EXTRA_HINT}")
            return _error(f"needs matplotlib, which failed to import ({exc}): {EXTRA_HINT}")
        result = diagnose.load(args.paths, args.udf, "plot")  # names each input it cannot read
        unreadable = bool(result.lines.unreadable_inputs)
        if not result.workers:
            if unreadable:
                return 2  # the lines naming what could not be read say why there is nothing
            of = f" of UDF {args.udf!r}" if args.udf is not None else ""
            return _error(f"no udfmem snapshots{of} in {' '.join(args.paths)}; nothing to plot")
        try:
            titles = png.write(result, args.output, args.worst)
        except OSError as exc:
            return _error(f"cannot write {args.output}: {exc.strerror or exc}")
        n, total = len(titles), len(result.workers)
        panels = f"{n} panel{'s' * (n != 1)} of {total} worker{'s' * (total != 1)}"
        print(f"wrote {printable(args.output)}: {panels}, worst first")
        return 2 if unreadable else 0


COMMAND = PlotCommand()
"""The ``plot`` subcommand."""
