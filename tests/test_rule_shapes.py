"""The series rule on the workload shapes of issue 19: row-wise calls, skipped probes, steps, late onsets, early peaks.

These are unit tests of the rule (:mod:`udfmem.analysis.verdict`), not of a worker: each
shape is a documented model of what a real run logged (the issue's measurements), written
as the logfmt snapshot lines udfmem prints and read back through the real reader
(:func:`udfmem.commands.diagnose.load` on a file), so the series is built exactly as
``udfmem diagnose`` builds it. A model stands in for a run because these shapes need
engines (Daft, Ray's object store) or hours of calls that a unit test cannot run; the
real runs of the same shapes are the diagnose corpus (``tests/data/diagnose``). Each
model's noise is a seeded sequence: the same lines in every run.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from udfmem.analysis import patterns as P
from udfmem.analysis.diagnosis import WorkerResult
from udfmem.commands.diagnose import load

CORPUS = Path(__file__).parent / "data" / "diagnose"
SHARED_MB = 85.0  # file-backed and shared pages of a Ray worker (the corpus's rss_shared_mb)


@dataclasses.dataclass(frozen=True)
class Snap:
    """What one snapshot reads, in MiB (blocks: a count); None where the line leaves the field out."""

    call: int
    private: float
    heap: float | None
    free: float | None = 3.0
    arrow: float | None = 0.0
    blocks: int | None = 630_000
    shared: float = SHARED_MB
    peak: float | None = None  # the window's peak RSS; None: RSS plus a little


def snapshot_lines(
    snaps: list[Snap], *, setup: tuple[float, float] = (110.0, 55.0), split: bool = True, pid: int = 4242
) -> Iterator[str]:
    """The ``udfmem.setup`` and ``udfmem.snapshot`` lines a worker prints for ``snaps`` (logfmt, as udfmem renders).

    ``setup`` is private RSS and malloc in-use at the end of setup. ``split`` False leaves
    out ``rss_anon_mb`` and ``rss_shared_mb`` (older lines, platforms without statm).
    """
    head = f"udf=Model pid={pid} host=node1 worker=w{pid}"

    def memory(private: float, shared: float, peak: float, heap: float | None) -> str:
        rss = private + shared
        out = f"rss_mb={rss:.1f} "
        if split:
            out += f"rss_anon_mb={private:.1f} rss_shared_mb={shared:.1f} "
        out += f"peak_rss_mb={peak:.1f} "
        return out

    private0, heap0 = setup
    yield (
        f"event=udfmem.setup {head} ts=2026-12-01T10:00:00.000Z method=__init__ setup_s=1.0 "
        + memory(private0, SHARED_MB, private0 + SHARED_MB, heap0)
        + f"arrow_live_mb=0.0 heap_in_use_mb={heap0:.1f} heap_free_mb=3.0 py_blocks=630000 schema=1"
    )
    previous = 0
    for s in snaps:
        rss = s.private + s.shared
        peak = s.peak if s.peak is not None else rss + 0.5
        fields = f"event=udfmem.snapshot {head} ts=2026-12-01T10:00:01.000Z call={s.call} "
        fields += memory(s.private, s.shared, peak, s.heap)
        if s.arrow is not None:
            fields += f"arrow_live_mb={s.arrow:.1f} "
        if s.heap is not None:
            fields += f"heap_in_use_mb={s.heap:.1f} heap_free_mb={(s.free or 0.0):.1f} "
        if s.blocks is not None:
            fields += f"py_blocks={s.blocks} "
        fields += f"growth_mb={s.private - private0:.1f} window_calls={s.call - previous} window_s=0.1 schema=1"
        previous = s.call
        yield fields


def judged(tmp_path: Path, lines: Iterator[str] | list[str]) -> WorkerResult:
    """The one worker ``udfmem diagnose`` finds in ``lines`` (written to a file and read by the real loader)."""
    path = tmp_path / "worker.log"
    path.write_text("".join(f"{line}\n" for line in lines))
    workers = load([str(path)]).workers
    assert 1 == len(workers)
    return workers[0]


def calls(every: int, total: int) -> range:
    """The calls at which snapshots come: every ``every`` calls up to ``total``."""
    return range(every, total + 1, every)


def row_wise(
    leak_kib: float, *, rows: int = 20_000, every: int = 32, private: float = 180.0, seed: int = 1
) -> list[Snap]:
    """A Daft scalar UDF, one call per row, keeping ``leak_kib`` KiB per row in malloc (``every`` rows a snapshot).

    The issue's run: ~2.3 KB per row, ``growth_mb`` 1.4 -> 45.5 MiB in a straight line over
    20,000 rows. RSS moves ±1.5 MiB (the allocator), malloc in-use ±0.3 MiB, the blocks by a
    few hundred, none of which is growth.
    """
    rnd = random.Random(seed)
    out = []
    for call in calls(every, rows):
        kept = leak_kib * call / 1024
        out.append(
            Snap(
                call,
                private + 1.4 + kept + rnd.uniform(-1.5, 1.5),
                60.0 + kept + rnd.uniform(-0.3, 0.3),
                free=3.0 + rnd.uniform(0, 1),
                blocks=630_000 + rnd.randrange(-300, 300),
            )
        )
    return out


def test_a_row_wise_leak_of_2_kb_per_row_is_a_heap_leak(tmp_path: Path) -> None:
    """2.3 KB per row over 20,000 rows (1.4 -> 45.5 MiB): heap-leak, with no per-call floor to hide it.

    At ~2.2 KiB per call it is far under the old 8 KiB/call floor; what counts is what it
    does to the worker: 44 MiB, a quarter of its private RSS.
    """
    w = judged(tmp_path, snapshot_lines(row_wise(2.25)))
    assert P.HEAP_LEAK == w.verdict.pattern
    assert 0.22 == pytest.approx((w.verdict.slope_mb_per_100_calls or 0.0), rel=0.15)
    assert w.verdict.since_call is not None and w.verdict.since_call < 4_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_same_row_wise_worker_without_the_leak_is_healthy(tmp_path: Path, seed: int) -> None:
    """The row-wise shape with nothing kept, three noise sequences: healthy, no since_call."""
    w = judged(tmp_path, snapshot_lines(row_wise(0.0, seed=seed)))
    assert (P.HEALTHY, None) == (w.verdict.pattern, w.verdict.since_call)


def test_growth_is_judged_relative_to_the_worker(tmp_path: Path) -> None:
    """The same 40 MiB over the run is a leak in a 180 MiB worker and noise-level in a 4 GiB one (under 5%).

    Thresholds are relative to the worker's private RSS (``GROWTH_SHARE``) above a small
    absolute floor (``MIN_GROWTH_MIB``).
    """
    small = judged(tmp_path, snapshot_lines(row_wise(2.0)))
    big = judged(tmp_path, snapshot_lines(row_wise(2.0, private=4096.0), setup=(4000.0, 55.0)))
    assert (P.HEAP_LEAK, P.HEALTHY) == (small.verdict.pattern, big.verdict.pattern)


def threaded_actor(*, heap_on: Callable[[int], bool], leak_kib: float = 64.0, seed: int = 7) -> list[Snap]:
    """A plain Ray actor, ``max_concurrency=4``, ``every=100``, keeping ``leak_kib`` per call: 30 snapshots.

    The README's "Plain Ray actors" shape as the issue measured it: RSS 197 -> 370 MiB in a
    straight line, four threads each holding a batch of 0-6 MiB in flight at a snapshot
    (in malloc too), and the heap probe over its time budget on most snapshots:
    ``heap_on(i)`` says whether snapshot ``i`` carries ``heap_*`` (and ``py_blocks``).
    """
    rnd = random.Random(seed)
    out = []
    for i, call in enumerate(calls(100, 3000)):
        kept = leak_kib * call / 1024
        flight = sum(rnd.uniform(0, 6) for _ in range(4))
        carries = heap_on(i)
        out.append(
            Snap(
                call,
                112.0 + kept + flight,
                60.0 + kept + flight if carries else None,
                free=4.0 + rnd.uniform(0, 3),
                blocks=630_000 + call if carries else None,
            )
        )
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_fast_threaded_leak_with_the_heap_probe_mostly_skipped_is_a_heap_leak(tmp_path: Path, seed: int) -> None:
    """64 KiB/call in a 4-thread actor, only 6-8 of 30 snapshots carrying heap_* (where the budget let it): heap-leak.

    A skipped probe is never evidence: malloc in-use, too seldom read for the sub-window
    rule, is unknown, and its readings rising with RSS make it a heap leak, never
    "RSS grew, malloc did not" (untracked-growth).
    """
    rnd = random.Random(seed)
    carried = set(rnd.sample(range(30), rnd.choice([6, 7, 8])))
    w = judged(tmp_path, snapshot_lines(threaded_actor(heap_on=carried.__contains__, seed=seed)))
    assert P.HEAP_LEAK == w.verdict.pattern
    assert 6.25 == pytest.approx(w.verdict.slope_mb_per_100_calls or 0.0, rel=0.25)


def test_rss_growth_with_malloc_never_read_is_insufficient_evidence_not_untracked(tmp_path: Path) -> None:
    """The same actor with heap_* on one snapshot only: no growth pattern named; the evidence says what is missing."""
    w = judged(tmp_path, snapshot_lines(threaded_actor(heap_on=lambda i: i == 20)))
    assert P.INSUFFICIENT_DATA == w.verdict.pattern
    assert "malloc in-use is unknown" in w.verdict.evidence


def test_rss_growth_that_sparse_flat_malloc_readings_rule_out_is_untracked(tmp_path: Path) -> None:
    """RSS grows while 8 spread heap readings stay flat (a native allocator): untracked-growth, from known readings."""
    snaps = [
        dataclasses.replace(s, heap=None if s.heap is None else 60.0 + (s.call % 3))
        for s in threaded_actor(heap_on=lambda i: i % 4 == 1)
    ]
    assert P.UNTRACKED_GROWTH == judged(tmp_path, snapshot_lines(snaps)).verdict.pattern


def staircase(steps: dict[int, float], *, total: int = 330, seed: int = 3) -> list[Snap]:
    """Ray Data, ``batch_format="pyarrow"``, each batch appended to ``self``: one step per pinned parent block.

    ``steps`` maps the call at which a new parent block gets pinned to its MiB. As the issue
    measured it (Arrow +152 MiB, shared pages +79 MiB): the blocks pinned from the object
    store are Arrow live and private pages; the store's pages mapped into the worker grow
    the shared pages by half as much. Between steps private RSS moves ±1 MiB and Arrow live
    not at all (Arrow's pool counts its bytes exactly).
    """
    rnd = random.Random(seed)
    out = []
    for call in calls(8, total):
        pinned = sum(mb for at, mb in steps.items() if at <= call)
        out.append(
            Snap(
                call,
                120.0 + pinned + rnd.uniform(-1, 1),
                58.0 + rnd.uniform(-0.2, 0.2),
                arrow=pinned,
                shared=SHARED_MB + pinned / 2,
            )
        )
    return out


def test_arrow_batches_pinned_in_steps_are_an_arrow_leak(tmp_path: Path) -> None:
    """Four pinned blocks (+152 MiB Arrow), none in the calls 112-185: arrow-leak although one sub-window is flat.

    A staircase fails "grew in every sub-window" by construction; the floor's trend (it
    rose in 3 of 4 sub-windows and never came back) is growth.
    """
    w = judged(tmp_path, snapshot_lines(staircase({60: 38.0, 100: 38.0, 220: 38.0, 300: 38.0})))
    assert P.ARROW_LEAK == w.verdict.pattern
    assert "in steps" in w.verdict.evidence
    assert "shared pages +" in w.verdict.evidence


def test_a_cache_that_fills_in_steps_and_stops_is_healthy(tmp_path: Path) -> None:
    """Three steps early on, then 200 calls flat: a bounded cache, not a leak (the plateau rule for steps)."""
    w = judged(tmp_path, snapshot_lines(staircase({60: 38.0, 80: 38.0, 110: 38.0})))
    assert P.HEALTHY == w.verdict.pattern


def late_onset(onset: int, mib_per_call: float, *, total: int = 330, seed: int = 5) -> list[Snap]:
    """A drift monitor that keeps each batch's embeddings once its reference window is full, at call ``onset``.

    Flat before (RSS ±2 MiB, batches in flight), ``mib_per_call`` kept in malloc after.
    """
    rnd = random.Random(seed)
    out = []
    for call in calls(8, total):
        kept = mib_per_call * max(0, call - onset)
        out.append(Snap(call, 150.0 + kept + rnd.uniform(-2, 2), 70.0 + kept + rnd.uniform(-0.5, 0.5)))
    return out


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_a_late_onset_is_caught_with_its_own_slope_and_since_call(tmp_path: Path, seed: int) -> None:
    """A leak from call 224 of 330 (0.5 MiB/call): heap-leak since ~224, at its own slope (50 MiB/100 calls).

    Judged over the whole span the flat part dilutes it (or fails "every sub-window"):
    the change point is found and the calls after it are judged.
    """
    w = judged(tmp_path, snapshot_lines(late_onset(224, 0.5, seed=seed)))
    assert P.HEAP_LEAK == w.verdict.pattern
    assert w.verdict.since_call is not None and 208 <= w.verdict.since_call <= 240
    assert 50 == pytest.approx(w.verdict.slope_mb_per_100_calls or 0.0, rel=0.2)
    assert "since call" in w.verdict.evidence


def test_a_leak_from_the_start_says_since_its_first_judged_call(tmp_path: Path) -> None:
    """A leak from call 0: since_call is the first call after the warm-up, the slope the whole run's."""
    w = judged(tmp_path, snapshot_lines(late_onset(0, 0.25)))
    assert (P.HEAP_LEAK, 40) == (w.verdict.pattern, w.verdict.since_call)
    assert 25 == pytest.approx(w.verdict.slope_mb_per_100_calls or 0.0, rel=0.1)


def calibrating(*, leak: float = 0.0, total: int = 336) -> list[Snap]:
    """A layout model that calibrates on its first 32 calls: ~1.4 GiB transients over ~0.2 GiB RSS, then 72 MiB.

    The transients all fall in the warm-up (the first 4 snapshots at ``every=8``).
    """
    out = []
    for call in calls(8, total):
        private = 115.0 + leak * call
        lift = 1_230.0 if call <= 32 else 72.0
        out.append(Snap(call, private, 60.0 + leak * call, peak=private + SHARED_MB + lift))
    return out


def test_a_peak_in_the_warm_up_is_peak_too_big(tmp_path: Path) -> None:
    """1.4 GiB transients in the first 32 calls against ~0.2 GiB RSS: peak-too-big, the peak's call in the evidence."""
    w = judged(tmp_path, snapshot_lines(calibrating()))
    assert P.PEAK_TOO_BIG == w.verdict.pattern
    assert "peak 1,430 MiB at call" in w.verdict.evidence


def test_a_leak_after_a_warm_up_peak_says_both(tmp_path: Path) -> None:
    """The calibration's peak and a leak after it: heap-leak, also peak-too-big."""
    w = judged(tmp_path, snapshot_lines(calibrating(leak=0.25)))
    assert (P.HEAP_LEAK, P.PEAK_TOO_BIG) == (w.verdict.pattern, w.verdict.also)


def retaining(held: tuple[float, float], *, private: float = 250.0, limit: float | None = None) -> list[Snap]:
    """24 decoding threads, trim off: malloc holds ``held`` MiB (a range, seeded) freed, in-use flat.

    Setup ends at 140 MiB private with 50 MiB in malloc, so 90 MiB are code and libraries;
    private RSS is what is live plus what is held.
    """
    rnd = random.Random(11)
    out = []
    for call in calls(8, 330):
        free = rnd.uniform(*held)
        heap = 57.0 + rnd.uniform(-0.5, 0.5)
        out.append(Snap(call, private - 103.0 + free + heap - 57.0, heap, free=free))
    return out


def test_retention_of_40_percent_under_the_old_fixed_floor_is_allocator_retention(tmp_path: Path) -> None:
    """94-103 MiB freed-but-held on ~250 MiB private RSS (40%), trim off: allocator-retention (not healthy)."""
    w = judged(tmp_path, snapshot_lines(retaining((94.0, 103.0)), setup=(140.0, 50.0)))
    assert P.ALLOCATOR_RETENTION == w.verdict.pattern
    assert "held " in w.verdict.evidence


def test_retention_is_a_share_of_the_worker(tmp_path: Path) -> None:
    """~130 MiB held in a 1 GiB worker (13% of it) is healthy; under a 1.2 GiB limit (over a tenth of it) it is not."""
    snaps = retaining((125.0, 135.0), private=1024.0)
    free = judged(tmp_path, snapshot_lines(snaps, setup=(914.0, 50.0)))
    lines = [
        line.replace(" schema=1", " limit_mb=1200.0 schema=1") for line in snapshot_lines(snaps, setup=(914.0, 50.0))
    ]
    limited = judged(tmp_path, lines)
    assert (P.HEALTHY, P.ALLOCATOR_RETENTION) == (free.verdict.pattern, limited.verdict.pattern)


def test_small_retention_is_healthy(tmp_path: Path) -> None:
    """40 MiB held (16% of RSS, under the 64 MiB floor at which trim='auto' would act): healthy."""
    w = judged(tmp_path, snapshot_lines(retaining((38.0, 42.0)), setup=(140.0, 50.0)))
    assert P.HEALTHY == w.verdict.pattern


def with_trims(lines: Iterator[str], at: tuple[int, ...]) -> list[str]:
    """``lines`` with a ``trim="auto"`` line after the snapshots of the calls ``at`` (64 MiB released, then regrown)."""
    out = []
    for line in lines:
        out.append(line)
        call = int(line.split(" call=")[1].split()[0]) if " call=" in line else 0
        if call in at:
            out.append(
                f"event=udfmem.trim udf=Model pid=4242 host=node1 worker=w4242 ts=2026-12-01T10:{call // 60:02d}:"
                f"{call % 60:02d}.500Z reason=auto released_mb=64.0 malloc_released_mb=64.0 took_ms=7.0 schema=1"
            )
    return out


def test_retention_at_the_auto_trim_threshold_is_the_policy_working(tmp_path: Path) -> None:
    """~68 MiB held (32% of private RSS, as an 8-thread churn): allocator-retention with no trims, healthy with them.

    ``trim="auto"`` lets retention rise to its 64 MiB threshold before it trims, and a
    snapshot comes before its trim: where the worker trims, only retention above twice
    the threshold is the allocator's problem (``RETENTION_TRIMMED_FACTOR``). As in the real
    churn run (``benchmarks/suspect_shapes.py churn``), one trim early, none in the last
    quarter: the trims-keep-it-down rule does not apply, the floor alone decides.
    """
    snaps = retaining((66.0, 70.0))
    untrimmed = judged(tmp_path, snapshot_lines(snaps, setup=(140.0, 50.0)))
    trimmed = judged(tmp_path, with_trims(snapshot_lines(snaps, setup=(140.0, 50.0)), at=(24,)))
    assert (P.ALLOCATOR_RETENTION, P.HEALTHY) == (untrimmed.verdict.pattern, trimmed.verdict.pattern)


def object_store_reader(*, kept: bool = False, heap_leak: float = 0.0, seed: int = 9) -> list[Snap]:
    """A Ray Data worker reading zero-copy batches from the object store, as the corpus's runs show it.

    Healthy (``kept`` False), its shared pages grow as it first touches the store's pages:
    2 MiB a snapshot for its first ~100 calls, then a 2.5 MiB burst now and then (the store
    reuses its memory). Keeping each batch on ``self`` (``kept``) pins 0.25 MiB of store
    pages at every call: shared pages grow steadily, while Arrow's pool (``arrow_live_mb``)
    never sees them. Private memory is flat (±1.5 MiB) unless ``heap_leak`` MiB/call is kept
    in malloc.
    """
    rnd = random.Random(seed)

    def shared(call: int) -> float:
        if kept:
            return SHARED_MB + 0.25 * call
        return SHARED_MB + 0.25 * min(call, 96) + 2.5 * (call >= 176) + 2.5 * (call >= 264)

    return [
        Snap(
            call,
            130.0 + heap_leak * call + rnd.uniform(-1.5, 1.5),
            60.0 + heap_leak * call + rnd.uniform(-0.3, 0.3),
            shared=shared(call),
        )
        for call in calls(8, 330)
    ]


def test_a_healthy_reader_of_the_object_store_is_healthy(tmp_path: Path) -> None:
    """Shared pages that grow in bursts as the store's pages are first touched: healthy, their growth named."""
    w = judged(tmp_path, snapshot_lines(object_store_reader()))
    assert P.HEALTHY == w.verdict.pattern
    assert "not judged as growth" in w.verdict.evidence


def test_zero_copy_batches_kept_from_the_object_store_are_an_arrow_leak(tmp_path: Path) -> None:
    """Each batch kept on self pins its store pages: shared pages grow steadily, Arrow's pool and private RSS flat.

    Holding zero-copy batches is a leak of the object store (issue 19 item 3): steady shared
    growth over at least ``PINNED_MIN_POINTS`` snapshots is ``arrow-leak``, said why in the
    evidence; a healthy reader's bursts that slow down are only named.
    """
    kept = judged(tmp_path, snapshot_lines(object_store_reader(kept=True))).verdict
    reader = judged(tmp_path, snapshot_lines(object_store_reader())).verdict
    assert (P.ARROW_LEAK, P.HEALTHY) == (kept.pattern, reader.pattern)
    assert ("steadily with the calls" in kept.evidence, "steadily" in reader.evidence) == (True, False)
    assert kept.slope_mb_per_100_calls is not None and kept.slope_mb_per_100_calls > 0


def test_without_the_private_split_rss_growth_alone_is_never_a_leak(tmp_path: Path) -> None:
    """The kept batches in lines without rss_anon_mb: RSS grows, nothing else does: insufficient-data, said why.

    With the split, the shared pages' steady growth names the leak; without it RSS is all
    there is, and RSS growth alone cannot be told from a mapped file read as it goes: its
    growth is named in the evidence, no leak is claimed.
    """
    without = judged(tmp_path, snapshot_lines(object_store_reader(kept=True), split=False))
    assert P.INSUFFICIENT_DATA == without.verdict.pattern
    assert "insufficient evidence" in without.verdict.evidence
    assert "rss_anon_mb" in without.verdict.evidence


def test_without_the_private_split_a_heap_leak_is_still_named(tmp_path: Path) -> None:
    """Lines without rss_anon_mb, malloc in-use growing with RSS (a second measure agreeing): heap-leak."""
    w = judged(tmp_path, snapshot_lines(object_store_reader(heap_leak=0.25), split=False))
    assert P.HEAP_LEAK == w.verdict.pattern


def test_the_healthy_corpus_without_the_split_names_no_growth(tmp_path: Path) -> None:
    """The real healthy runs of the corpus, rss_anon_mb and rss_shared_mb cut out (older lines): no growth pattern."""
    expected: dict[str, str | dict[str, str]] = json.loads((CORPUS / "EXPECTED.json").read_text())
    truths = {s: t if isinstance(t, str) else t["truth"] for s, t in expected.items()}
    found = []
    for scenario in sorted(s for s, truth in truths.items() if truth == P.HEALTHY):
        text = gzip.decompress((CORPUS / f"{scenario}.log.gz").read_bytes()).decode()
        path = tmp_path / f"{scenario}.log"
        path.write_text(re.sub(r" rss_(anon|shared)_mb=\S+", "", text))
        found += [w.verdict.pattern for w in load([str(path)]).workers]
    assert found and not set(found) & set(P.GROWTH)


def trimmed_leak(*, heap_on: Callable[[int], bool], seed: int = 4) -> list[Snap]:
    """A 256 KiB/call leak under periodic trims, as the corpus's run shows it: malloc in-use rises in a line.

    Private RSS does not: trims give back what was freed, and its floor jumps twice (+47
    MiB at call ~88, +63 at ~280: the arena's top moving up) with 0-10 MiB regrown between
    trims. ``heap_on(i)`` says whether snapshot ``i`` carries ``heap_*``.
    """
    rnd = random.Random(seed)
    out = []
    for i, call in enumerate(calls(8, 480)):
        floor = 125.0 + 47.0 * (call >= 88) + 63.0 * (call >= 280)
        carries = heap_on(i)
        out.append(Snap(call, floor + rnd.uniform(0, 10), 60.0 + 0.25 * call if carries else None))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_a_leak_under_trims_with_a_quarter_of_heap_readings_is_a_heap_leak(tmp_path: Path, seed: int) -> None:
    """RSS's floor only jumps twice (no growth by its own rule); malloc in-use, read at 1 snapshot in 4, rose in a line.

    Sparse readings are judged on what they say (one reading per sub-window is enough for
    exact counts): heap-leak, not healthy because most snapshots lack heap_*.
    """
    rnd = random.Random(seed)
    carried = set(rnd.sample(range(60), 15))
    w = judged(tmp_path, snapshot_lines(trimmed_leak(heap_on=carried.__contains__)))
    assert P.HEAP_LEAK == w.verdict.pattern
    assert 25 == pytest.approx(w.verdict.slope_mb_per_100_calls or 0.0, rel=0.1)
