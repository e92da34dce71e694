"""The log reader's limits (issue 18, items 10 and 11): hostile lines are skipped, memory is the series'.

Real udfmem lines come from a real leaking UDF run in a subprocess (logfmt and JSON); the
hostile lines beside them are written by hand, as a corrupted or forged log would hold them.
``udfmem diagnose`` runs as a real subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import LEAK, run_python

from udfmem.analysis import patterns as P
from udfmem.analysis.series import MAX_POINTS
from udfmem.analysis.verdict import judge
from udfmem.commands import _logs as _logread


@pytest.fixture(scope="module")
def leak_lines() -> dict[str, list[str]]:
    """The udfmem lines of a real leaking UDF (403 calls, every=8: a setup, 51 snapshots) in logfmt and JSON."""
    out = {}
    for fmt in ("logfmt", "json"):
        err = run_python(LEAK, env={"UDFMEM_SUSPECT": "0", "UDFMEM_LOG_FORMAT": fmt}).stderr
        out[fmt] = [line for line in err.splitlines() if "udfmem." in line]
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def diagnose_json(*paths: Path) -> tuple[int, dict[str, Any], str]:
    """``python -m udfmem diagnose --json PATHS`` in a subprocess: exit code, the strictly parsed output, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "diagnose", "--json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        out = json.loads(proc.stdout, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise AssertionError(f"exit {proc.returncode}: {exc}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
    return proc.returncode, out, proc.stderr


def forged(line: str, pid: int, **values: str) -> str:
    """``line`` (a real snapshot or setup line, logfmt or JSON) as another process's, with ``values`` set (or added)."""
    line = re.sub(r'(pid[=":]+)\d+', rf"\g<1>{pid}", line, count=1)
    for name, value in values.items():
        if re.search(rf'[ ,{{]"?{name}"?[=:]', line):
            line = re.sub(rf'([ ,{{]"?{name}"?[=:])[^ ,}}]+', rf"\g<1>{value}", line)
        elif line.rstrip().endswith("}"):
            line = line.replace(',"schema":', f',"{name}":{value},"schema":')
        else:
            line = line.replace(" schema=", f" {name}={value} schema=")
    return line


# -- item 10: lines that would break the arithmetic or the JSON are skipped ------------------


def test_a_deeply_nested_json_line_is_skipped_not_a_traceback(tmp_path: Path, leak_lines: dict[str, list[str]]) -> None:
    """A 60 KB JSON line nested 30,000 deep beside a real leaking worker: skipped and counted, exit 0.

    Before the fix the JSON decoder's RecursionError ended ``diagnose`` with a traceback and exit 1.
    """
    nested = '{"event":"udfmem.snapshot","udf":"Leak","pid":1,"x":' + "[" * 30_000 + "]" * 30_000 + "}"
    assert len(nested) > 60_000
    lines = leak_lines["json"]
    path = tmp_path / "worker.log"
    path.write_text("\n".join([*lines[:20], nested, *lines[20:]]) + "\n", encoding="utf-8")

    code, out, err = diagnose_json(path)

    assert (0, "") == (code, err)
    assert [P.HEAP_LEAK] == [w["pattern"] for w in out["workers"]]
    assert {"read": len(lines) + 1, "events": len(lines), "skipped": 1} == out["lines"]


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_absurd_and_non_finite_numbers_skip_their_lines(
    tmp_path: Path, leak_lines: dict[str, list[str]], fmt: str
) -> None:
    """Beside a real leaking worker, forged workers whose snapshots say headroom 1e308, RSS 2e308 (inf), nan.

    Each such line is skipped and counted (the whole line, not just the field), so no slope or
    projection overflows and ``--json`` stays strict JSON. Before the fix: OverflowError from
    ``int(inf)`` (exit 1) or ``Infinity`` in the output.
    """
    lines = leak_lines[fmt]
    snapshots = [line for line in lines if "udfmem.snapshot" in line]
    bad = {"headroom_mb": "1e308", "rss_mb": "2e308", "heap_in_use_mb": "nan", "peak_rss_mb": "1e400"}
    forgeries = []
    for i, (name, value) in enumerate(bad.items()):
        forgeries += [forged(line, 90_000 + i, **{name: value}) for line in snapshots]
    # a leaking worker whose last snapshot alone says headroom 1e308: its other lines still judge it
    tail = [forged(line, 95_000) for line in lines]
    tail[-1] = forged(lines[-1], 95_000, headroom_mb="1e308", limit_mb="2e308")
    path = tmp_path / "worker.log"
    path.write_text("\n".join(lines + forgeries + tail) + "\n", encoding="utf-8")

    code, out, err = diagnose_json(path)

    assert (0, "") == (code, err)
    assert [(pid, P.HEAP_LEAK) for pid in sorted({out["workers"][0]["pid"], 95_000})] == sorted(
        (w["pid"], w["pattern"]) for w in out["workers"]
    )
    events = 2 * len(lines) - 1
    assert {"read": events + 1 + len(forgeries), "events": events, "skipped": 1 + len(forgeries)} == out["lines"]


def test_an_absurd_trim_or_setup_is_skipped(tmp_path: Path, leak_lines: dict[str, list[str]]) -> None:
    """A trim releasing 1e400 MiB or a setup with an infinite RSS: skipped and counted; the leak is still named."""
    lines = leak_lines["logfmt"]
    pid = re.search(r" pid=(\d+)", lines[0])
    assert pid is not None
    trim = (
        f"event=udfmem.trim udf=Leak pid={pid.group(1)} host=h worker=w ts=2026-11-27T18:00:00.000Z"
        " reason=auto released_mb=1e400 schema=1"
    )
    setup = forged(lines[0], int(pid.group(1)), rss_mb="inf")
    path = tmp_path / "worker.log"
    path.write_text("\n".join([setup, trim, *lines[1:]]) + "\n", encoding="utf-8")

    code, out, err = diagnose_json(path)

    assert (0, "") == (code, err)
    assert [P.HEAP_LEAK] == [w["pattern"] for w in out["workers"]]
    assert 2 == out["lines"]["skipped"]


# -- item 11: memory is the series', never the log's; every layout takes the fast paths ------


def _garbage(n: int) -> list[bytes]:
    """``n`` distinct snapshot-like lines whose heads cannot be read (a pid that is no number)."""
    return [
        f"event=udfmem.snapshot udf=Embed pid=p{i:x} host=h worker=w{i:x} ts=2026-11-27T18:00:00.000Z call=32"
        f" rss_mb=512.5 rss_anon_mb=400.1 peak_rss_mb=530.0 heap_in_use_mb=300.2 schema=1\n".encode()
        for i in range(n)
    ]


def test_distinct_garbage_heads_are_not_remembered() -> None:
    """20,000 distinct unreadable snapshot heads: all counted unreadable, none remembered, Python memory flat.

    Before the fix every distinct head was cached whole (the issue: 100 MB of such lines, 115 MiB peak).
    Measured with tracemalloc (what Python allocates), not RSS: deterministic on any machine.
    """
    import tracemalloc

    lines = _garbage(20_000)
    reader = _logread.LogReader()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for line in lines:
            reader.feed(line)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert (20_000, 0, 20_000) == (reader.read, reader.events, reader.unreadable)
    assert 0 == reader.cached_identities
    assert grown < 256 * 1024, f"{grown:,} bytes held after 20,000 garbage lines"


def test_other_udfs_identities_are_remembered_up_to_a_cap() -> None:
    """``--udf A`` over 2 x IDENTITIES workers of UDF B: every line an event, the identities remembered capped."""
    reader = _logread.LogReader(udf="A")
    n = 2 * _logread.IDENTITIES
    for pid in range(n):
        reader.feed(
            f"event=udfmem.snapshot udf=B pid={pid} host=h worker=w ts=2026-11-27T18:00:00.000Z call=8"
            f" rss_mb=100.0 peak_rss_mb=120.0 schema=1\n".encode()
        )
    assert (n, n, {}) == (reader.read, reader.events, reader.series)
    assert _logread.IDENTITIES == reader.cached_identities


def _many_workers(workers: int, snapshots: int) -> list[str]:
    """Real-layout snapshot lines (udfmem's renderer) of ``workers`` leaking workers, interleaved."""
    from udfmem.events import render as _render
    from udfmem.events import schema as _events

    heads = [_render.head("logfmt", "udfmem.snapshot", "Embed", 1000 + w, "10.0.0.1", f"w{w}") for w in range(workers)]
    out = []
    for s in range(1, snapshots + 1):
        for w, head in enumerate(heads):
            rss = round(500.0 + 0.1 * s + w % 7, 1)  # udfmem rounds sizes to 0.1 MiB
            memory = _events.Memory(
                rss_mb=round(rss + 180.0, 1),
                rss_anon_mb=rss,
                rss_shared_mb=180.0,
                peak_rss_mb=round(rss + 190.5, 1),
                arrow_live_mb=40.0,
                gap_mb=round(rss + 140.0, 1),
                heap_in_use_mb=round(rss - 100.0, 1),
                heap_free_mb=20.0 + (s * 7 + w) % 11,
                limit_mb=8192.0,
                headroom_mb=round(8192.0 - rss - 180.0, 1),
                py_blocks=1_200_000 + 3 * s if s % 8 == 0 else None,
            )
            event = _events.Snapshot(32 * s, memory, round(0.1 * s, 1), 32, 1.6)
            out.append(_render.render(event, head, "2026-11-27T18:00:00.000Z") + "\n")
    return out


def test_a_workers_memory_is_its_decimated_points_not_its_lines() -> None:
    """2,000 workers x 200 snapshots: at most MAX_POINTS + 1 points each, well under 10 KB of Python memory each.

    Before the fix each series held its kept snapshots' lines (about 75 KB per worker in the
    issue's 10,000-worker log; 50 KB here). Measured with tracemalloc (what Python holds once
    the lines are fed, each line a new bytes object as a file gives), then the series are read back.
    """
    import tracemalloc

    workers = 2_000
    lines = _many_workers(workers, 200)
    reader = _logread.LogReader()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for line in lines:
            reader.feed(line.encode())  # a new bytes object per line, as a file gives
        per_worker = (tracemalloc.get_traced_memory()[0] - before) / workers
    finally:
        tracemalloc.stop()

    assert (len(lines), len(lines)) == (reader.read, reader.events)
    assert workers == len(reader.series)
    assert per_worker < 8 * 1024, f"{per_worker:,.0f} bytes per worker"
    for series in reader.series.values():
        points = series.points
        assert len(points) <= MAX_POINTS + 1
        assert (32, 32 * 200) == (points[0].call, points[-1].call)


def _structlog_layout(name: str) -> Any:
    """A user's structlog renderer (``UDFMEM_LOG_FORMAT=structlog``): the fields, then event, level and timestamp."""
    import structlog

    from udfmem.events import parse as _parse

    renderer = {
        "kv": structlog.processors.KeyValueRenderer(),
        "logfmt": structlog.processors.LogfmtRenderer(),
        "json": structlog.processors.JSONRenderer(),
    }[name]

    def layout(line: str) -> str:
        fields = _parse.parse_line(line)
        assert fields is not None
        event, ts = fields.pop("event"), fields.pop("ts")
        return str(renderer(None, "info", {**fields, "event": event, "level": "info", "timestamp": ts}))

    return layout


def _sorted_keys(line: str) -> str:
    pairs = re.findall(r'([A-Za-z_]\w*)=("(?:[^"\\]|\\.)*"|\S*)', line)
    return " ".join(f"{k}={v}" for k, v in sorted(pairs))


LAYOUTS = {
    "udfmem-json": ("json", lambda line: line),
    "v1-no-schema-logfmt": ("logfmt", lambda line: line.replace(" schema=1", "")),
    "v1-no-schema-json": ("json", lambda line: line.replace(',"schema":1', "")),
    "sorted-keys-logfmt": ("logfmt", _sorted_keys),
    "extra-keys-logfmt": (
        "logfmt",
        lambda line: line.replace(" ts=", " level=info job=x ts=").replace(" schema=", " shard=3 schema="),
    ),
    "structlog-kv": ("logfmt", "kv"),
    "structlog-logfmt": ("logfmt", "logfmt"),
    "structlog-json": ("logfmt", "json"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_reads_the_same_series(leak_lines: dict[str, list[str]], layout: str) -> None:
    """A real leaking worker's lines in another layout: the same events, points and verdict as in udfmem's own.

    Older udfmem (no ``schema``), another key order, extra keys, and a user's structlog renderers
    (KeyValueRenderer's Python reprs, LogfmtRenderer's bare ``final`` flag, ``event`` written last).
    Before the fix the sorted-key and structlog key=value layouts read no snapshot at all.
    """
    fmt, rewrite = LAYOUTS[layout]
    if isinstance(rewrite, str):
        rewrite = _structlog_layout(rewrite)
    prefix = "(MapWorker(MapBatches(Leak)) pid=4242, ip=10.0.0.5) "
    expected, actual = _logread.LogReader(), _logread.LogReader()
    for line in leak_lines[fmt]:
        expected.feed(line.encode())
    for line in leak_lines[fmt]:
        actual.feed((prefix + rewrite(line)).encode())

    assert (expected.read, expected.events) == (actual.read, actual.events)
    ((key, series),) = expected.series.items()
    ((other_key, other),) = actual.series.items()
    assert key == other_key
    assert series.points == other.points
    assert P.HEAP_LEAK == judge(other).pattern


def _mixed_lines(fmt: str) -> list[str]:
    """One worker's 300 snapshots in udfmem's layout: tenths and odd figures (more decimals, huge, negative, absent)."""
    from udfmem.events import render as _render
    from udfmem.events import schema as _events

    head = _render.head(fmt, "udfmem.snapshot", "Embed", 77, "10.0.0.1", "w")
    out = []
    for s in range(1, 301):
        peak = 900.0 + (s % 13) * 1.5 if s % 17 else 2000.0 + s  # spikes in snapshots a series may drop
        memory = _events.Memory(
            rss_mb=round(700.0 + s * 0.3, 1) if s != 150 else 123_456_789.5,  # too many digits for a 32-bit tenth
            rss_anon_mb=round(600.0 + s * 0.3, 1) if s % 5 else None,
            rss_shared_mb=100.0,
            peak_rss_mb=peak if s != 200 else 1234.56,  # no tenth: the pairs are read, the series turns to doubles
            arrow_live_mb=-0.5 if s == 100 else 40.0,
            heap_in_use_mb=round(400.0 + s * 0.2, 1) if s % 3 else None,
            heap_free_mb=20.0,
            limit_mb=8192.0 if s % 2 else None,
            headroom_mb=round(7000.0 - s * 0.3, 1),
            py_blocks=1_000_000 + s if s % 8 == 0 else None,
        )
        event = _events.Snapshot(32 * s, memory, 0.1, 32, 1.6, True if s == 300 else None)
        out.append(_render.render(event, head, "2026-11-27T18:00:00.000Z", fmt) + "\n")
    return out


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_own_lines_read_whole_give_the_general_parsers_points(fmt: str) -> None:
    """udfmem's own lines, read whole into rows of tenths, give the points the general parser's fields give.

    Tenths, negative figures, absent fields, a final flag, a figure too long for a 32-bit
    tenth and a peak with two decimals (the rest of the series in doubles from there), over
    300 snapshots (halvings, peaks of dropped snapshots folded in).
    """
    from udfmem.analysis.series import Series
    from udfmem.events import parse as _parse
    from udfmem.events.point import of_fields as point

    lines = _mixed_lines(fmt)
    expected = Series()
    for line in lines:
        fields = _parse.parse_line(line)
        assert fields is not None
        p = point(fields)
        assert p is not None
        expected.add(p)
    reader = _logread.LogReader()
    for line in lines:
        reader.feed(line.encode())

    assert (300, 300) == (reader.read, reader.events)
    ((series,),) = [list(reader.series.values())]
    assert expected.points == series.points
    assert series.points[-1].final


def test_points_read_again_after_a_change_are_rebuilt() -> None:
    """A series' points read, then a snapshot added, read again: the new one is there (the built points are not stale).

    Another series' points read in between: the first series' are still right.
    """
    lines = _many_workers(2, 40)
    reader = _logread.LogReader()
    for line in lines[:40]:
        reader.feed(line.encode())
    first, second = reader.series.values()
    before = first.points
    assert before == first.points
    assert 32 * 20 == before[-1].call
    second_points = second.points
    for line in lines[40:]:
        reader.feed(line.encode())

    assert 32 * 40 == first.points[-1].call
    assert before == first.points[:20]
    assert second_points != second.points
    assert 32 * 40 == second.points[-1].call
