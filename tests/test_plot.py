"""``udfmem plot``: real worker logs in, a PNG with one titled panel per worker out; its failures are one line."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_python

from udfmem.analysis.diagnosis import Lines, diagnose
from udfmem.analysis.series import Point, Series
from udfmem.commands import main
from udfmem.commands.diagnose import load
from udfmem.reporters import png  # matplotlib is imported only when drawing

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib (the plot extra) is not installed"
)

WORKER = """
import sys, udfmem
@udfmem.tracked(every=4, trim=32)
class Leaky:
    def __init__(self):
        self.kept = []
    def __call__(self, i):
        self.kept.append(bytearray(256 * 1024))  # 256 KiB kept per call
        return i
@udfmem.tracked(every=4)
class Healthy:
    def __call__(self, i):
        return len(bytearray(256 * 1024))
udf = Leaky() if sys.argv[-1] == "leaky" else Healthy()
for i in range(200):
    udf(i)
"""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A log of two real workers (two processes): ``Leaky`` keeps 256 KiB a call and trims every 32, ``Healthy`` not."""
    path = tmp_path_factory.mktemp("plot") / "workers.log"
    lines = [run_python(f"import sys; sys.argv.append({kind!r})\n{WORKER}").stderr for kind in ("leaky", "healthy")]
    path.write_text("".join(lines))
    return str(path)


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height in pixels, from its IHDR chunk (asserting the PNG signature)."""
    data = path.read_bytes()
    assert b"\x89PNG\r\n\x1a\n" == data[:8]
    return struct.unpack(">II", data[16:24])


def fleet(workers: int = 16, points: int = 500) -> dict[tuple[str, int, str, str], Series]:
    """``workers`` series of ``points`` snapshots: worker i grows i * 8 KiB a call (0: flat); a trim every 100."""
    out: dict[tuple[str, int, str, str], Series] = {}
    for i in range(workers):
        series = Series()
        for n in range(1, points + 1):
            call = 4 * n
            heap = 50.0 + i * call / 128  # private RSS heap + 200, RSS + 210, window peak + 220
            series.add(
                Point(call, heap + 200, heap + 210, heap + 220, heap, 5.0, 1.0, None, None, None, series.segment)
            )
            if n % 100 == 0:
                series.add_trim(0.0)
        out[(f"host{i % 4}", 1000 + i, f"w{i}", "Embed")] = series
    return out


@needs_matplotlib
def test_plot_writes_a_png_with_one_panel_per_worker(
    log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two real workers: exit 0, a two-panel PNG (1 row of 4.8 x 3 inch panels at 100 dpi), a line on stdout."""
    out = tmp_path / "mem.png"
    assert 0 == main(["plot", log, "-o", str(out)])
    assert (960, 380) == png_size(out)
    assert 20_000 < out.stat().st_size < 500_000
    assert f"wrote {out}: 2 panels of 2 workers, worst first\n" == capsys.readouterr().out


@needs_matplotlib
def test_panels_are_titled_with_pattern_udf_host_and_pid_worst_first(log: str, tmp_path: Path) -> None:
    """The reporter's panel titles: the leaking worker first with heap-leak and its slope, then the healthy one."""
    diagnosis = load([log])
    titles = png.write(diagnosis, str(tmp_path / "mem.png"))
    leaky, healthy = diagnosis.workers
    assert ["Leaky", "Healthy"] == [leaky.udf, healthy.udf]
    assert ["heap-leak", "healthy"] == [title.splitlines()[0].split(",")[0] for title in titles]
    assert f"Leaky · {leaky.host} pid {leaky.pid}" == titles[0].splitlines()[1]
    assert f"healthy\nHealthy · {healthy.host} pid {healthy.pid}" == titles[1]
    assert " MiB/100 calls" in titles[0]
    assert 5 <= len(leaky.series.trim_calls)  # trims every 32 calls: drawn as vertical lines


@pytest.mark.parametrize(
    "case",
    [
        (["--worst", "1"], None, "1 panel of 2 workers", "heap-leak"),
        (["--udf", "Healthy"], "Healthy", "1 panel of 1 worker", "healthy\nHealthy · "),
    ],
    ids=["worst-1", "udf"],
)
@needs_matplotlib
def test_worst_and_udf_choose_the_panels(
    log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: tuple[list[str], str | None, str, str]
) -> None:
    """``--worst 1``: one panel, the leaking worker's; ``--udf Healthy``: one panel, the healthy worker's."""
    args, udf, wrote, head = case
    out = tmp_path / "one.png"
    assert 0 == main(["plot", log, "-o", str(out), *args])
    assert f"wrote {out}: {wrote}, worst first\n" == capsys.readouterr().out
    assert (480, 380) == png_size(out)
    (title,) = png.write(load([log], udf), str(out), worst=1 if udf is None else png.WORST)
    assert title.startswith(head)


@needs_matplotlib
def test_many_workers_make_a_grid_of_the_worst(tmp_path: Path) -> None:
    """16 workers x 500 snapshots: 6 panels by default (3 x 2), all 16 in a 4 x 4 grid, worst first."""
    diagnosis = diagnose(fleet(), Lines(0, 0, 0))
    assert 16 == len(diagnosis.workers)
    out = tmp_path / "fleet.png"
    titles = png.write(diagnosis, str(out))
    assert [png.title(w) for w in diagnosis.workers[:6]] == titles
    assert (1440, 680) == png_size(out)
    assert ("heap-leak", 1015) == (diagnosis.workers[0].verdict.pattern, diagnosis.workers[0].pid)
    fig = png.figure(diagnosis.workers, 16)
    assert 16 == len(fig.axes)
    assert (4, 4) == png.grid(16)
    assert [png.title(w) for w in diagnosis.workers] == [ax.get_title(loc="left") for ax in fig.axes]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/worker.log"], "udfmem plot: cannot read /nonexistent/worker.log: no such file or directory"),
        (["--udf", "Nope", "LOG"], "udfmem plot: no udfmem snapshots of UDF 'Nope' in LOG; nothing to plot"),
        (["OTHER"], "udfmem plot: no udfmem snapshots in OTHER; nothing to plot"),
        (["-o", "/nonexistent-dir/sub/mem.png", "LOG"], "udfmem plot: cannot write /nonexistent-dir/sub/mem.png: "),
    ],
    ids=["unreadable", "no-such-udf", "no-snapshots", "unwritable"],
)
@needs_matplotlib
def test_failures_are_one_line_and_exit_2(
    log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """An unreadable path, no snapshot (of the UDF) to draw, an unwritable PNG: one line on stderr, exit 2, no PNG."""
    out, other = tmp_path / "mem.png", tmp_path / "other.log"
    other.write_text("INFO starting\nINFO done\n")  # other output only
    names = {"LOG": log, "OTHER": str(other)}
    assert 2 == main(["plot", "-o", str(out), *[names.get(a, a) for a in args]])
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(message.replace("LOG", log).replace("OTHER", str(other)))
    assert "" == captured.out
    assert not out.exists()


@pytest.mark.parametrize("worst", ["0", "-2", "six"])
def test_a_bad_worst_is_a_usage_error(worst: str, tmp_path: Path) -> None:
    """``--worst`` must be a number >= 1: argparse exits 2."""
    with pytest.raises(SystemExit) as exc:
        main(["plot", "x.log", "-o", str(tmp_path / "mem.png"), "--worst", worst])
    assert 2 == exc.value.code


def test_without_matplotlib_one_line_names_the_extra(log: str, tmp_path: Path) -> None:
    """matplotlib missing: exit 2 and one line naming the ``plot`` extra, no traceback, no PNG.

    Simulated (the one stand-in in this file): a fresh interpreter gets ``sys.modules['matplotlib'] = None``,
    which makes ``import matplotlib`` fail as if it were not installed, before running the real command.
    """
    out = tmp_path / "mem.png"
    code = f"""
        import sys
        sys.modules["matplotlib"] = None
        from udfmem.commands import main
        sys.exit(main(["plot", {log!r}, "-o", {str(out)!r}]))
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert 2 == proc.returncode
    assert "udfmem plot: needs matplotlib: pip install 'udfmem[plot]'\n" == proc.stderr
    assert not out.exists()


def test_importing_the_commands_does_not_import_matplotlib() -> None:
    """``import udfmem.commands`` (with plot and its reporter) and building the parser leave matplotlib unimported."""
    proc = run_python(
        """
        import sys
        import udfmem.commands, udfmem.commands.plot, udfmem.reporters.png
        udfmem.commands.build_parser()
        print(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"))
        """
    )
    assert "[]" == proc.stdout.strip()
