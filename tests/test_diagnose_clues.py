"""``udfmem diagnose`` shows its best clues: ``growing``, the online word, the onset, worst first, no double counts.

The logs are real: each worker is a fresh interpreter running a tracked UDF (its stderr is
its worker file). The driver console is those lines as Ray repeats them, behind
``(MapWorker(MapBatches(...)) pid=..., ip=...)``: Ray is not run here, its prefix is the stand-in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_python

from udfmem.analysis import patterns as P
from udfmem.analysis.diagnosis import Lines, diagnose
from udfmem.analysis.series import Point, Series
from udfmem.commands import main
from udfmem.events.parse import parse_line

CACHE = """
import udfmem
@udfmem.tracked(every=8, trim=32)
class Cache:
    def __init__(self):
        self.cache = {}
    def __call__(self, x):
        scratch = [bytes(1024) for _ in range(2000)]  # freed each call: something for the trims to give back
        self.cache[x] = bytes(192 * 1024)
        del scratch
        return x
udf = Cache()
for i in range(400):
    udf(i)
"""

BASELINE = """
import udfmem
@udfmem.tracked(every=8)
class Baseline:
    def __call__(self, x):
        return bytes(64 * 1024)[:1]
udf = Baseline()
for i in range(400):
    udf(i)
"""


def udfmem_lines(code: str) -> list[str]:
    """The udfmem lines a real worker running ``code`` writes to its stderr."""
    proc = run_python(code)
    assert 0 == proc.returncode, proc.stderr
    return [line for line in proc.stderr.splitlines() if "udfmem." in line]


@pytest.fixture(scope="module")
def logs() -> dict[str, list[str]]:
    """Two workers of the leaking, trimming ``Cache`` UDF and one of the healthy ``Baseline`` UDF."""
    return {"cache-1": udfmem_lines(CACHE), "cache-2": udfmem_lines(CACHE), "baseline": udfmem_lines(BASELINE)}


def fields_of(lines: list[str], event: str) -> list[dict[str, Any]]:
    """The parsed ``event`` lines among ``lines``."""
    return [f for f in map(parse_line, lines) if f is not None and f["event"] == event]


def console(lines: list[str], udf: str) -> list[str]:
    """``lines`` as Ray's driver console repeats them (its prefix names the worker's pid)."""
    pid = fields_of(lines, "udfmem.snapshot")[0]["pid"]
    return [f"(MapWorker(MapBatches({udf})) pid={pid}, ip=10.0.0.5) {line}" for line in lines]


def write(path: Path, lines: list[str]) -> str:
    """Write ``lines`` to ``path``; its name."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def diagnosed(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``udfmem diagnose ARGS``: the exit code and stdout."""
    code = main(["diagnose", *args])
    return code, capsys.readouterr().out


def test_growing_and_the_online_word_are_shown(tmp_path: Path, logs: dict[str, list[str]], capsys: Any) -> None:
    """The latest ``growing`` and the detector's last word reach the text and ``--json``; a later healthy keeps it.

    The second log is the first with one more ``udfmem.suspect`` line a second after the last one: the
    detector's ``pattern=healthy`` (a problem that ended), written by hand from the real line.
    """
    lines = logs["cache-1"]
    suspects = fields_of(lines, "udfmem.suspect")
    assert suspects and suspects[-1]["growing"]
    last = suspects[-1]
    snapshot = fields_of(lines, "udfmem.snapshot")[0]
    who = f"{snapshot['host']} pid {snapshot['pid']}"
    log = write(tmp_path / "w.log", lines)

    code, out = diagnosed(capsys, log)
    assert 0 == code
    assert f"  growing ({who}): {last['growing']}\n" in out
    online = f"  online ({who}): {last['pattern']} since call {last['since_call']:,}"
    assert online + f", {last['slope_mb_per_100_calls']:+,.1f} MiB/100 calls\n" in out

    code, out = diagnosed(capsys, "--json", log)
    (worker,) = json.loads(out)["workers"]
    assert last["growing"] == worker["growing"]
    word = {"pattern": last["pattern"], "since_call": last["since_call"]}
    word |= {k: last[k] for k in ("slope_mb_per_100_calls", "calls_to_limit") if k in last}
    assert word == worker["online"]

    raw = next(line for line in reversed(lines) if "udfmem.suspect" in line)
    ts = re.search(r" ts=(\S+)", raw)
    assert ts is not None
    later = ts[1][:17] + f"{int(ts[1][17:19]) + 1:02d}" + ts[1][19:] if ts[1][17:19] != "59" else ts[1]
    healthy = raw[: raw.index(" pattern=")].replace(ts[1], later) + " pattern=healthy since_call=392 schema=1"
    log = write(tmp_path / "w2.log", [*lines, healthy])
    code, out = diagnosed(capsys, "--json", log)
    (worker,) = json.loads(out)["workers"]
    assert ({"pattern": "healthy", "since_call": 392}, last["growing"]) == (worker["online"], worker["growing"])
    code, out = diagnosed(capsys, log)
    assert f"  growing ({who}): {last['growing']}\n" in out
    assert f"  online ({who}): healthy since call 392 (growing above: said since call {last['since_call']:,})\n" in out


def test_the_onset_is_shown(tmp_path: Path, logs: dict[str, list[str]], capsys: Any) -> None:
    """A growth verdict's ``since_call`` is a JSON key and the table's ``since call`` column; healthy has none."""
    log = write(tmp_path / "w.log", logs["cache-1"] + logs["baseline"])
    _, out = diagnosed(capsys, "--json", log)
    cache, baseline = json.loads(out)["workers"]
    assert (P.HEAP_LEAK, P.HEALTHY) == (cache["pattern"], baseline["pattern"])
    assert isinstance(cache["since_call"], int) and "since_call" not in baseline
    _, out = diagnosed(capsys, log)
    header = next(line for line in out.splitlines() if line.lstrip().startswith("worker "))
    row = next(line for line in out.splitlines() if " heap-leak " in line)
    at = header.index("since call")
    assert f"{cache['since_call']:,}" == row[at:].split()[0]


def test_udfs_and_workers_come_worst_first_and_healthy_ones_show_evidence(
    tmp_path: Path, logs: dict[str, list[str]], capsys: Any
) -> None:
    """``Baseline`` (healthy) sorts after ``Cache`` (heap-leak), alphabetically first; it gets its evidence line."""
    log = write(tmp_path / "w.log", logs["baseline"] + logs["cache-1"])
    _, out = diagnosed(capsys, "--json", log)
    result = json.loads(out)
    assert ["Cache", "Baseline"] == [w["udf"] for w in result["workers"]]
    assert ["Cache", "Baseline"] == list(result["summary"])
    baseline = result["workers"][1]
    _, out = diagnosed(capsys, log)
    assert ["udf Cache: 1 worker", "udf Baseline: 1 worker"] == [x for x in out.splitlines() if x.startswith("udf ")]
    assert f"  evidence ({baseline['host']} pid {baseline['pid']}): {baseline['evidence']}\n" in out


def test_a_udf_not_found_lists_the_udfs_found(tmp_path: Path, logs: dict[str, list[str]], capsys: Any) -> None:
    """``--udf Nope`` names the UDFs with snapshots, sorted, with their workers; ``--json`` says ``other_udfs``."""
    log = write(tmp_path / "w.log", logs["cache-1"] + logs["baseline"] + logs["cache-2"])
    code, out = diagnosed(capsys, "--udf", "Nope", log)
    assert 0 == code
    found = "no udfmem snapshots found for udf `Nope`; udfs with snapshots: `Baseline` (1 worker), `Cache` (2 workers)"
    assert found + "\n" in out
    _, out = diagnosed(capsys, "--json", "--udf", "Nope", log)
    assert ([], {"Baseline": 1, "Cache": 2}) == (json.loads(out)["workers"], json.loads(out)["other_udfs"])
    _, out = diagnosed(capsys, "--json", "--udf", "Cache", log)
    result = json.loads(out)
    assert (2, {"Baseline": 1}) == (len(result["workers"]), result["other_udfs"])
    _, out = diagnosed(capsys, "--json", log)
    assert "other_udfs" not in json.loads(out)


def test_worker_files_and_the_driver_console_count_each_event_once(
    tmp_path: Path, logs: dict[str, list[str]], capsys: Any
) -> None:
    """A directory with the workers' files and the console (Ray's prefix) reads as the worker files alone.

    Trims count once per worker (by time stamp and figures), snapshots once per call, the
    setup and the detector's word once; whichever file comes first (``console.log`` sorts before
    ``worker-*``, ``zz-console.log`` after).
    """
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("cache-1", "baseline"):
        write(alone / f"worker-{name}.err", logs[name])
    _, out = diagnosed(capsys, "--json", str(alone))
    expected = json.loads(out)["workers"]
    trims = len(fields_of(logs["cache-1"], "udfmem.trim"))
    assert trims >= 10
    assert [trims, 0] == [w["trims"] for w in expected]

    for console_name in ("console.log", "zz-console.log"):
        both = tmp_path / console_name
        both.mkdir()
        for name in ("cache-1", "baseline"):
            write(both / f"worker-{name}.err", logs[name])
        write(both / console_name, console(logs["cache-1"], "Cache") + console(logs["baseline"], "Baseline"))
        _, out = diagnosed(capsys, "--json", str(both))
        assert expected == json.loads(out)["workers"], console_name

    twice = write(tmp_path / "twice.log", logs["cache-1"])
    _, out = diagnosed(capsys, "--json", twice, twice)
    assert [trims] == [w["trims"] for w in json.loads(out)["workers"]]
    _, out = diagnosed(capsys, "--json", write(tmp_path / "cat.log", logs["cache-1"] * 2))
    assert [trims] == [w["trims"] for w in json.loads(out)["workers"]]


def test_a_log_cut_by_rotation_counts_every_trim(tmp_path: Path, logs: dict[str, list[str]], capsys: Any) -> None:
    """A worker's log in two pieces (``w.log.1`` the older half, ``w.log`` the newer) reads as the whole log.

    The older piece is read first (its name sorts after), so every snapshot reaches the series in call
    order, and every trim counts once.
    """
    lines = logs["cache-1"]
    trims = [i for i, line in enumerate(lines) if "udfmem.trim" in line]
    cut = trims[len(trims) // 2]
    rotated = tmp_path / "rotated"
    rotated.mkdir()
    write(rotated / "w.log.1", lines[:cut])
    write(rotated / "w.log", lines[cut:])
    _, out = diagnosed(capsys, "--json", str(rotated))
    _, whole = diagnosed(capsys, "--json", write(tmp_path / "whole.log", lines))
    assert [len(trims)] == [w["trims"] for w in json.loads(whole)["workers"]]
    assert json.loads(whole)["workers"] == json.loads(out)["workers"]


def series_of(slope_mib: float, *, arrow: bool = False, headroom: float | None = None) -> Series:
    """A synthetic leak of ``slope_mib`` MiB per 8 calls (60 snapshots), in malloc or Arrow, under a known headroom."""
    s = Series()
    for i in range(1, 61):
        grown = slope_mib * i
        limit = None if headroom is None else 300 + 60 * slope_mib + headroom
        s.add(
            Point(
                call=8 * i,
                private=300 + grown,
                rss=320 + grown,
                peak=320 + grown,
                heap=100 + (0 if arrow else grown),
                free=5.0,
                arrow=grown if arrow else 0.0,
                blocks=None,
                limit=limit,
                headroom=None if limit is None else limit - (320 + grown),
                segment=0,
            )
        )
    return s


def test_severity_is_calls_to_the_limit_then_slope_whatever_the_growth_pattern() -> None:
    """An arrow-leak nearest its limit first, a heap-leak farther from it, the steepest without a limit, healthy last.

    Synthetic series (the ordering, not the reading, is under test).
    """
    series = {
        ("h", 1, "w", "U"): series_of(0.0),
        ("h", 2, "w", "U"): series_of(2.0, headroom=4000.0),
        ("h", 3, "w", "U"): series_of(1.0),
        ("h", 4, "w", "U"): series_of(3.0),
        ("h", 5, "w", "U"): series_of(2.0, arrow=True, headroom=400.0),
    }
    result = diagnose(series, Lines(0, 0, 0))
    order = [(w.pid, w.verdict.pattern) for w in result.workers]
    assert [(5, P.ARROW_LEAK), (2, P.HEAP_LEAK), (4, P.HEAP_LEAK), (3, P.HEAP_LEAK), (1, P.HEALTHY)] == order
