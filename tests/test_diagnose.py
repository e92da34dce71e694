"""``udfmem diagnose``: logs as they come off a cluster in, one verdict per worker out."""

from __future__ import annotations

import gzip
import itertools
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import LEAK, run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from udfmem.analysis import patterns as P
from udfmem.analysis.series import MAX_POINTS, Point, Series
from udfmem.analysis.verdict import judge
from udfmem.commands import _logs as _logread
from udfmem.commands import main


@pytest.fixture(scope="module")
def leak_logs() -> dict[str, str]:
    """Real stderr of a leaking UDF (403 calls, every=8) in logfmt and in JSON."""
    env = {"UDFMEM_SUSPECT": "0"}  # snapshots and the setup only: the counts below are exact
    return {fmt: run_python(LEAK, env={**env, "UDFMEM_LOG_FORMAT": fmt}).stderr for fmt in ("logfmt", "json")}


def point(call: int, private: float, *, heap: float = 100.0, free: float = 5.0, arrow: float = 0.0, **kw: Any) -> Point:
    """A synthetic snapshot (MiB)."""
    fields: dict[str, Any] = dict(
        call=call,
        private=private,
        rss=private + 20,
        peak=private + 20,
        heap=heap,
        free=free,
        arrow=arrow,
        blocks=None,
        limit=None,
        headroom=None,
        segment=0,
    )
    fields.update(kw)
    return Point(**fields)


def series_of(points: list[Point]) -> Series:
    """A series holding ``points`` in order."""
    s = Series()
    for p in points:
        s.add(p)
    return s


# -- reading ---------------------------------------------------------------------------


def test_lines_are_found_after_any_prefix_and_the_rest_is_counted(tmp_path: Path, leak_logs: dict[str, str]) -> None:
    """Ray console, Daft and kubectl prefixes, JSON lines, garbage, truncated and other-schema lines: counted exactly.

    Real udfmem lines (51 snapshots and a setup per format) behind each prefix; 6 foreign lines, a truncated
    udfmem line, a line of binary garbage and a schema=2 line are skipped and counted.
    """
    prefixes = [
        "(MapWorker(MapBatches(Leak)) pid=4242, ip=10.0.0.5) ",
        "[`mod.Leak.__call__` Worker #0] ",
        "2026-11-27T18:00:00.123456789Z ",
    ]
    logfmt = [line for line in leak_logs["logfmt"].splitlines() if "udfmem." in line]
    jsonl = [line for line in leak_logs["json"].splitlines() if "udfmem." in line]
    assert 52 == len(logfmt) == len(jsonl)
    body = [prefixes[i % 3] + line for i, line in enumerate(logfmt)]
    foreign = ["INFO worker.py:123 -- Task finished", "Traceback (most recent call last):", "", "  x", "{}", "a=b"]
    bad = [logfmt[5][: len(logfmt[5]) // 2] + ' udf="unterminated', "\x00\xff\xfe udfmem.snapshot garbage"]
    other = [logfmt[7].replace("schema=1", "schema=2")]
    path = tmp_path / "worker-1.err"
    path.write_text("\n".join(body + foreign + bad + other) + "\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "udfmem-x.jsonl").write_text("\n".join(jsonl) + "\n", encoding="utf-8")

    reader = _logread.read_logs([str(tmp_path)])

    assert (52 + 6 + 2 + 1 + 52, 104) == (reader.read, reader.events)
    assert (2, 1) == (reader.unreadable, reader.other_schema)
    assert 2 == len(reader.series)  # the two runs are two processes
    for series in reader.series.values():
        assert [8 * i for i in range(1, 51)] + [403] == [p.call for p in series.points]
        assert series.points[-1].final


def test_gzip_stdin_and_unreadable_paths(tmp_path: Path, leak_logs: dict[str, str]) -> None:
    """A .gz file (by content), stdin (-) and a cut-off .gz are read; a missing path exits 2 with one line."""
    data = leak_logs["logfmt"].encode()
    (tmp_path / "a.log.gz").write_bytes(gzip.compress(data))
    cut = gzip.compress(data)
    (tmp_path / "cut.gz").write_bytes(cut[: len(cut) // 2])
    out = subprocess.run(
        [sys.executable, "-m", "udfmem", "diagnose", "--json", "-", str(tmp_path / "a.log.gz")],
        input=data,
        capture_output=True,
        check=False,
    )
    assert 0 == out.returncode, out.stderr
    result = json.loads(out.stdout)
    assert 2 * 52 == result["lines"]["events"]  # the same worker twice: one series
    assert ["heap-leak"] == [w["pattern"] for w in result["workers"]]

    reader = _logread.read_logs([str(tmp_path / "cut.gz")])
    assert [str(tmp_path / "cut.gz")] == reader.cut
    assert 0 < reader.events < 52

    missing = subprocess.run(
        [sys.executable, "-m", "udfmem", "diagnose", str(tmp_path / "nope.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (2, 1) == (missing.returncode, len(missing.stderr.strip().splitlines()))
    assert "nope.log" in missing.stderr and "Traceback" not in missing.stderr


def test_an_endless_line_is_skipped_in_bounded_pieces(tmp_path: Path, leak_logs: dict[str, str]) -> None:
    """Binary garbage without newlines (8 MiB) counts as one skipped line; the udfmem lines after it are read."""
    path = tmp_path / "mixed.log"
    path.write_bytes(random.Random(1).randbytes(8 << 20).replace(b"\n", b" ") + b"\n" + leak_logs["logfmt"].encode())
    reader = _logread.read_logs([str(path)])
    assert 52 == reader.events
    assert 1 + len(leak_logs["logfmt"].splitlines()) == reader.read


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_random_bytes_and_mutated_lines_never_crash_the_reader(garbage: bytes, cut: int) -> None:
    """Fuzz: random bytes, and a real line cut anywhere with garbage glued on, are read or counted, never raised."""
    line = (
        b"event=udfmem.snapshot udf=U pid=7 host=h worker=w ts=2026-11-27T18:00:00.000Z call=8 rss_mb=31.0 "
        b"rss_anon_mb=20.1 peak_rss_mb=31.0 arrow_live_mb=0.0 heap_in_use_mb=5.0 py_blocks=1000 schema=1"
    )
    reader = _logread.LogReader()
    reader.feed(garbage)
    reader.feed(line[:cut] + garbage)
    reader.feed(b'{"event":"udfmem.snapshot","udf":' + garbage)
    assert 3 == reader.read
    assert reader.events + reader.unreadable + reader.other_schema <= 3


def test_a_long_series_is_decimated_keeping_its_ends() -> None:
    """A million snapshots keep at most MAX_POINTS points, the first and the latest, calls increasing."""
    s = Series()
    for i in range(1, 1_000_001):
        s.add(point(8 * i, 100.0 + i * 0.001))
    calls = [p.call for p in s.points]
    assert len(calls) <= MAX_POINTS
    assert (8, 8_000_000) == (calls[0], calls[-1])
    assert calls == sorted(set(calls))
    gaps = [b - a for a, b in itertools.pairwise(calls[:-1])]  # the kept points, without the latest
    assert max(gaps) == min(gaps)  # evenly spread


# -- the rule --------------------------------------------------------------------------


def noisy(seed: int, n: int = 60, every: int = 8) -> list[Point]:
    """A healthy series: RSS and heap flat within a few MiB, transient peaks up to 200 MiB."""
    rng = random.Random(seed)
    return [
        point(every * i, 300 + rng.uniform(-4, 4), heap=120 + rng.uniform(-2, 2), peak=320 + rng.uniform(0, 200))
        for i in range(1, n + 1)
    ]


def test_healthy_noise_is_never_flagged() -> None:
    """200 noisy healthy series (flat within ±4 MiB, 0-200 MiB transients): all healthy."""
    verdicts = {judge(series_of(noisy(seed))).pattern for seed in range(200)}
    assert {P.HEALTHY} == verdicts


def test_each_growth_pattern_is_named_by_what_grows() -> None:
    """Heap, Arrow, Python blocks, unexplained RSS: heap-leak, arrow-leak, heap-leak, untracked-growth."""
    n = range(1, 61)
    heap = [point(8 * i, 300 + 2 * i, heap=100 + 2 * i) for i in n]
    arrow = [point(8 * i, 300 + 2 * i, arrow=2.0 * i) for i in n]
    blocks = [point(8 * i, 300 + 2 * i, blocks=100_000 + 20_000 * i) for i in n]
    native = [point(8 * i, 300 + 2 * i, blocks=100_000) for i in n]
    assert [P.HEAP_LEAK, P.ARROW_LEAK, P.HEAP_LEAK, P.UNTRACKED_GROWTH] == [
        judge(series_of(s)).pattern for s in (heap, arrow, blocks, native)
    ]
    verdict = judge(series_of(heap))
    assert 25.0 == verdict.slope_mb_per_100_calls  # 2 MiB per 8 calls
    assert ("rss", "heap") == verdict.grew


def test_a_cache_that_fills_and_stops_is_healthy() -> None:
    """Growth in the first half, then flat (a bounded cache): the plateau rule says healthy."""
    pts = [point(8 * i, 300 + 3 * min(i, 30), heap=100 + 3 * min(i, 30)) for i in range(1, 61)]
    assert P.HEALTHY == judge(series_of(pts)).pattern


def test_retention_without_trims_and_with_trims() -> None:
    """Flat in-use, 600 MiB freed-but-held: allocator-retention; trims bringing RSS down: healthy."""
    held = [point(8 * i, 800, heap=100, free=600) for i in range(1, 61)]
    assert P.ALLOCATOR_RETENTION == judge(series_of(held)).pattern
    trimmed = Series()
    for i in range(1, 61):
        trimmed.add(point(8 * i, 160 + 5 * (i % 10), heap=100, free=600, segment=trimmed.segment))
        if i % 10 == 0:
            trimmed.add_trim(45.0)
    verdict = judge(trimmed)
    assert P.HEALTHY == verdict.pattern
    assert "6 trims released 270 MiB" in verdict.evidence


def test_a_spike_is_peak_too_big_and_a_leak_with_spikes_says_so_too() -> None:
    """A 1.5 GiB transient over 300 MiB RSS: peak-too-big; with a heap leak it is the leak, also peak-too-big."""
    spikes = [point(8 * i, 300, peak=1900 if i % 7 == 0 else 320) for i in range(1, 61)]
    assert (P.PEAK_TOO_BIG, None) == (judge(series_of(spikes)).pattern, judge(series_of(spikes)).also)
    both = [point(8 * i, 300 + 2 * i, heap=100 + 2 * i, peak=2000 if i == 30 else 320 + 2 * i) for i in range(1, 61)]
    verdict = judge(series_of(both))
    assert (P.HEAP_LEAK, P.PEAK_TOO_BIG) == (verdict.pattern, verdict.also)


def test_calls_to_limit_from_the_headroom_and_the_slope() -> None:
    """2 MiB per 8 calls with 1,000 MiB of headroom left: 4,000 calls to the limit."""
    pts = [point(8 * i, 300 + 2 * i, heap=100 + 2 * i, limit=2000.0, headroom=1000.0) for i in range(1, 61)]
    assert 4000 == judge(series_of(pts)).calls_to_limit


def test_too_few_snapshots_are_insufficient_data() -> None:
    """Five snapshots cannot be judged, however steep."""
    pts = [point(8 * i, 300 + 50 * i, heap=100 + 50 * i) for i in range(1, 6)]
    assert P.INSUFFICIENT_DATA == judge(series_of(pts)).pattern


# -- the command -----------------------------------------------------------------------


def test_json_contract_and_exit_codes(
    tmp_path: Path, leak_logs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--json has the contract's keys (none invented); --fail-on exits 1 on a match; a bad pattern is a usage error."""
    log = tmp_path / "w.log"
    log.write_text(leak_logs["logfmt"])
    assert 0 == main(["diagnose", "--json", str(log)])
    result = json.loads(capsys.readouterr().out)
    assert {"version", "workers", "summary", "lines"} == set(result)
    (worker,) = result["workers"]
    contract = {
        "host", "pid", "worker", "udf", "pattern", "also", "calls", "first_call", "last_call", "rss_first_mb",
        "rss_last_mb", "peak_max_mb", "slope_mb_per_100_calls", "since_call", "calls_to_limit", "trims", "fix",
        "evidence", "growing", "online",
    }  # fmt: skip
    assert set() == set(worker) - contract
    assert "also" not in worker  # no second pattern
    assert ("Leak", "heap-leak", 403) == (worker["udf"], worker["pattern"], worker["calls"])
    assert {"Leak": {"heap-leak": 1}} == result["summary"]

    assert 1 == main(["diagnose", "--fail-on", "heap-leak,arrow-leak", str(log)])
    assert 0 == main(["diagnose", "--fail-on", "arrow-leak", str(log)])
    with pytest.raises(SystemExit) as usage:
        main(["diagnose", "--fail-on", "leaky", str(log)])
    assert 2 == usage.value.code
    text = capsys.readouterr()
    assert "unknown pattern leaky" in text.err
    assert "1 of 1 `Leak` workers: heap-leak" in text.out


def test_retention_that_trims_keep_down_is_healthy() -> None:
    """Held 600 MiB at every snapshot, but the trim after each releases 550 MiB: healthy, trims named."""
    s = Series()
    for i in range(1, 61):
        s.add(point(8 * i, 800, heap=100, free=600, segment=s.segment))
        s.add_trim(550.0)
    verdict = judge(s)
    assert P.HEALTHY == verdict.pattern
    assert "60 trims released 33,000 MiB" in verdict.evidence


def test_shared_pages_growing_steadily_are_kept_batches_and_a_fill_that_stops_is_not() -> None:
    """Private RSS flat, shared pages growing: steady over 60 snapshots is kept batches; a fill that stops is not.

    Steady growth of shared pages (Ray's object store) is kept zero-copy batches (arrow-leak,
    issue 19 item 3); a fill that stops is only named in the evidence.
    """
    steady = judge(series_of([point(8 * i, 300, rss=320 + 3 * i) for i in range(1, 61)]))
    fill = judge(series_of([point(8 * i, 300, rss=320 + 3 * min(i, 20)) for i in range(1, 61)]))
    assert (P.ARROW_LEAK, P.HEALTHY) == (steady.pattern, fill.pattern)
    assert "shared pages +159 MiB, steadily with the calls" in steady.evidence
    assert "shared pages +" in fill.evidence
    assert "steadily" not in fill.evidence


def test_the_fast_path_reads_what_the_general_parser_reads(leak_logs: dict[str, str]) -> None:
    """Every real snapshot line, logfmt and JSON, with fields in udfmem's order or reversed: the same point."""
    from udfmem.events.parse import parse_line
    from udfmem.events.point import of_fields as point_of

    for fmt, text in leak_logs.items():
        for line in (x for x in text.splitlines() if "udfmem.snapshot" in x):
            expected = point_of(parse_line(line) or {})
            head, _, rest = line.partition(" ts=") if fmt == "logfmt" else line.partition(',"ts":')
            sep = " " if fmt == "logfmt" else ","
            fields = rest.rstrip("}").split(sep)
            reordered = head + (" ts=" if fmt == "logfmt" else ',"ts":') + sep.join([fields[0], *fields[:0:-1]])
            for variant in (line, reordered + ("}" if fmt == "json" else "")):
                reader = _logread.LogReader()
                reader.feed(variant.encode())
                (series,) = reader.series.values()
                assert [expected] == series.points, variant


def test_a_spike_in_a_dropped_snapshot_is_kept_by_the_next_kept_point() -> None:
    """10,000 snapshots decimated to MAX_POINTS: the one 3 GiB window peak among them is still in the points."""
    reader = _logread.LogReader()
    for i in range(1, 10_001):
        peak = 3000.0 if i == 7_777 else 120.0
        reader.feed(
            f"event=udfmem.snapshot udf=U pid=7 host=h worker=w ts=2026-11-27T18:00:00.000Z call={8 * i} "
            f"rss_mb=100.0 rss_anon_mb=90.0 peak_rss_mb={peak} heap_in_use_mb=50.0 schema=1\n".encode()
        )
    (series,) = reader.series.values()
    assert len(series.points) <= MAX_POINTS + 1
    assert 3000.0 == max(p.peak or 0.0 for p in series.points)
    assert P.PEAK_TOO_BIG == judge(series).pattern


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path, leak_logs: dict[str, str]) -> None:
    """``udfmem diagnose --json ... | head -c 10``: no traceback when the reader stops early.

    300 workers (the real lines under 300 pids) make ~200 KiB of JSON, more than a pipe holds.
    """
    pid = re.search(r" pid=(\d+) ", leak_logs["logfmt"])
    assert pid is not None
    log = tmp_path / "w.log"
    log.write_text("".join(leak_logs["logfmt"].replace(f" pid={pid[1]} ", f" pid={n} ") for n in range(300)))
    proc = subprocess.run(
        f"{sys.executable} -m udfmem diagnose --json {log} | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    assert 10 == len(proc.stdout)
