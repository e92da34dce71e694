"""``udfmem plot``'s drawing: each worker's memory against its calls, one panel per worker, as a PNG.

Drawing only: judged workers in (a :class:`~udfmem.analysis.diagnosis.Diagnosis`, worst
first, or a sequence of :class:`~udfmem.analysis.diagnosis.WorkerResult`), a PNG out.
matplotlib is imported inside the functions, never at import time, and only through
:class:`matplotlib.figure.Figure` and the Agg canvas: no pyplot, no global state, no
display needed. Sizes are MiB. Names from the logs are untrusted: titles show them with
control characters escaped, cut to :data:`TITLE_CHARS`, and never parsed as mathtext (a
``$`` is a dollar sign).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._text import capped, printable
from ..analysis.diagnosis import Diagnosis, WorkerResult
from ..analysis.series import Point

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WORST = 6
"""Panels drawn by default: the worst this many workers."""
DPI = 100
"""Pixels per inch of the PNG."""
PANEL_INCHES = (4.8, 3.0)
"""Width and height of one panel."""

CURVES: tuple[tuple[str, str, str, Callable[[Point], float | None]], ...] = (
    ("RSS", "#1f77b4", "-", lambda p: p.rss),
    ("window peak", "#9467bd", ":", lambda p: p.peak),
    ("malloc in-use", "#d62728", "-", lambda p: p.heap),
    ("freed-but-held", "#ff7f0e", "--", lambda p: p.free),
    ("Arrow live", "#2ca02c", "-", lambda p: p.arrow),
)
"""Each panel's curves: legend label, colour, line style, the value of a point (None: not logged)."""
TITLE_CHARS = 80
"""Characters of a UDF or host name kept in a panel's title."""
TRIM_LABEL = "trim"
"""The legend label of the vertical lines that mark trims."""


def require() -> None:
    """Import what drawing needs; raises ImportError when matplotlib is missing (or broken)."""
    importlib.import_module("matplotlib.figure")
    importlib.import_module("matplotlib.backends.backend_agg")


def title(w: WorkerResult) -> str:
    """A panel's title: the pattern (and ``also``), the slope if any; then UDF, host and pid."""
    v = w.verdict
    head = v.pattern + (f" + {v.also}" if v.also else "")
    if v.slope_mb_per_100_calls is not None:
        head += f", {v.slope_mb_per_100_calls:+,.1f} MiB/100 calls"
    name, host = (capped(printable(text), TITLE_CHARS) for text in (w.udf, w.host))
    return f"{head}\n{name} · {host} pid {w.pid}"


def grid(n: int) -> tuple[int, int]:
    """Rows and columns for ``n`` panels: one row up to three, then a near-square grid."""
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    return max(1, math.ceil(n / max(cols, 1))), max(cols, 1)


def _panel(ax: Axes, w: WorkerResult) -> None:
    """Draw one worker's curves and trims on ``ax``."""
    from matplotlib.ticker import StrMethodFormatter

    pts = w.series.points
    calls = [p.call for p in pts]
    for label, color, style, value in CURVES:
        ys = [math.nan if (v := value(p)) is None else v for p in pts]
        if all(math.isnan(y) for y in ys):
            continue  # never logged: no line, rather than a flat one
        draw = "steps-pre" if label == "window peak" else "default"  # a peak covers the window before it
        ax.plot(calls, ys, color=color, linestyle=style, linewidth=1.4, drawstyle=draw, label=label, zorder=3)
    if w.series.trim_calls:
        ax.vlines(
            w.series.trim_calls,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="0.55",
            linestyles="--",
            linewidth=0.7,
            label=TRIM_LABEL,
        )
    ax.set_title(title(w), fontsize=9, loc="left", parse_math=False)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.tick_params(labelsize=8)
    ax.grid(True, linewidth=0.4, alpha=0.5)


def figure(workers: Sequence[WorkerResult], total: int | None = None) -> Figure:
    """A figure of one panel per worker (in the order given), a shared legend and a heading.

    ``total``: how many workers there were in all, when ``workers`` is the worst of them.
    """
    from matplotlib.figure import Figure

    rows, cols = grid(len(workers))
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows + 0.8), dpi=DPI, layout="constrained")
    n = len(workers)
    total = n if total is None else total
    shown = f"worst {n} of {total} workers" if total > n else f"{total} worker{'s' * (total != 1)}"
    fig.suptitle(f"udfmem: memory per worker (MiB) against calls, {shown}", fontsize=11)
    handles: dict[str, Artist] = {}
    for i, w in enumerate(workers):
        ax = fig.add_subplot(rows, cols, i + 1)
        _panel(ax, w)
        if i + cols >= n:  # no panel below
            ax.set_xlabel("call", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("MiB", fontsize=8)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    order = [label for label, *_ in CURVES if label in handles] + [TRIM_LABEL] * (TRIM_LABEL in handles)
    if order:
        fig.legend([handles[k] for k in order], order, loc="outside lower center", ncols=len(order), fontsize=8)
    return fig


def write(source: Diagnosis | Sequence[WorkerResult], path: str, worst: int = WORST) -> list[str]:
    """Draw the worst ``worst`` workers of ``source`` (worst first) to a PNG at ``path``; return the panel titles.

    Always PNG, whatever ``path``'s extension. Raises OSError when ``path`` cannot be
    written, ValueError when there is no worker to draw.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    workers = source.workers if isinstance(source, Diagnosis) else tuple(source)
    if not workers:
        raise ValueError("no workers to plot")
    fig = figure(workers[: max(1, worst)], len(workers))
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI)
    return [ax.get_title(loc="left") for ax in fig.axes]
