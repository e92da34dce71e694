"""The probe budget saves up credit: close snapshots all get a reading; over time the share still holds."""

from __future__ import annotations

from collections.abc import Callable

from conftest import Events, identity_udf

from udfmem.probes import budget as _budget
from udfmem.probes import process as _probes

Reader = Callable[..., Events]
HEAP_FIELDS = {"heap_in_use_mb", "heap_free_mb", "heap_mmap_mb"}


class Clock:
    """A clock the test moves by hand; ``step`` is added at every reading (a cost clock: each read costs it)."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        """The time now (then advance by ``step``)."""
        now = self.now
        self.now += self.step
        return now


def test_back_to_back_reads_of_a_150_us_probe_are_all_read_within_the_burst() -> None:
    """A walk of 150 µs (a small heap on a loaded machine): 20 reads in the same instant are all read.

    Before the credit, the second paid read held the probe back for 150 µs / 0.5% = 30 ms.
    """
    budget = _budget.Budget(lambda: 1, share=0.005, clock=Clock(), cost_clock=Clock(step=150e-6))
    assert [1] * 20 == [budget() for _ in range(20)]


def test_the_share_holds_over_time_with_the_burst() -> None:
    """Read every 1 ms for 100 s at 150 µs a read: the probe spends at most 0.5% of the time plus one burst."""
    clock, cost = Clock(), Clock(step=150e-6)
    budget = _budget.Budget(lambda: 1, share=0.005, clock=clock, cost_clock=cost)
    reads = 0
    for _ in range(100_000):
        reads += budget() is not None
        clock.now += 0.001
    spent = reads * 150e-6
    assert spent <= 0.005 * 100 + budget.burst + 2 * 150e-6  # the unpaid cold read, and the last one
    assert spent >= 0.005 * 100 - 150e-6  # and the budget is used, not starved


def test_a_probe_dearer_than_the_burst_waits_its_cost_over_the_share() -> None:
    """A 40 ms walk (more than the 5 ms burst): the next read comes 40 ms / 0.5% = 8 s later, as without a burst."""
    clock, cost = Clock(), Clock(step=0.04)
    budget = _budget.Budget(lambda: 1, share=0.005, clock=clock, cost_clock=cost)
    assert [1, 1] == [budget(), budget()]  # a cold first walk is timed again at once, unpaid
    assert budget() is None
    clock.now += 7.9
    assert budget() is None
    clock.now += 0.2
    assert 1 == budget()


def test_final_snapshot_and_the_next_objects_snapshot_both_carry_heap_fields(stderr_events: Reader) -> None:
    """Object 1's final snapshot at call 1, then object 2's at call 2, each walk costing 150 µs: both read the heap.

    The walk's cost is injected (a cost clock that advances 150 µs per reading): that is
    what a small heap's walk costs on a machine at load 4 on 2 cores (measured: 100-220 µs).
    """
    _probes.probes().use_budgets(cost_clock=Clock(step=150e-6))
    Udf = identity_udf(every=2)
    Udf()(1)
    Udf()(2)
    snaps = stderr_events("udfmem.snapshot", finals=True)
    assert [(1, True), (2, None)] == [(s["call"], s.get("final")) for s in snaps]
    assert [set(), set()] == [HEAP_FIELDS - set(s) for s in snaps]


def test_the_floor_reads_every_other_snapshot_that_the_share_holds_back() -> None:
    """Snapshots 4 ms apart, a 150 µs walk: the share alone reads 1 in 8; the floor reads every even index too.

    150 µs every 8 ms is 1.9%, under the 2% ceiling: the floor is met in full.
    """

    def readings(floor_every: int | None) -> list[int]:
        clock, cost = Clock(), Clock(step=150e-6)  # each read costs 150 µs
        budget = _budget.Budget(
            lambda: 1, share=0.005, clock=clock, cost_clock=cost, floor_every=floor_every, ceiling=0.02
        )
        read = []
        for index in range(2000):
            if budget(index) is not None:
                read.append(index)
            clock.now += 0.004
        return read

    share_only, floored = readings(None), readings(2)
    late = [i for i in share_only if i >= 1000]  # past the saved-up burst
    assert len(late) <= 1000 // 6
    assert set(range(1000, 2000, 2)) <= set(floored)


def test_the_ceiling_bounds_the_floor_on_a_huge_fragmented_heap() -> None:
    """A 45 ms walk (2 GiB fragmented), snapshots 10 ms apart, floor every 2nd: at most 2% of 100 s is spent.

    And the ceiling's share is used: the floor still reads once per 45 ms / 2% = 2.25 s.
    """
    clock, cost = Clock(), Clock(step=0.045)
    budget = _budget.Budget(lambda: 1, share=0.005, clock=clock, cost_clock=cost, floor_every=2, ceiling=0.02)
    reads = 0
    for index in range(10_000):
        reads += budget(index) is not None
        clock.now += 0.01
    spent = reads * 0.045
    assert spent <= 0.02 * 100 + budget.ceiling_burst + 2 * 0.045  # plus the unpaid cold read, the last one
    assert spent >= 0.02 * 100 - 0.045 - budget.ceiling_burst


def test_floor_readings_fall_on_the_indices_a_decimated_series_keeps() -> None:
    """Reads for other callers (a setup's, a trim's: no index) between snapshots do not shift the floor's readings."""
    clock, cost = Clock(), Clock(step=150e-6)
    budget = _budget.Budget(lambda: 1, share=0.005, clock=clock, cost_clock=cost, floor_every=2, ceiling=0.02)
    for _ in range(100):  # spend the saved-up credit
        budget()
    read = []
    for index in range(400):
        if index % 7 == 3:
            budget()  # a trim decision's reading
        if budget(index) is not None:
            read.append(index)
        clock.now += 0.008
    assert set(range(0, 400, 2)) <= set(read)


def test_fast_snapshots_carry_malloc_figures_at_every_other_snapshot(stderr_events: Reader) -> None:
    """A tracked UDF at every=1, each walk costing 150 µs, the wall moving 2 ms a reading: every other snapshot.

    The walk's cost and the wall time are injected (the walk of a small heap on a loaded
    machine; fast calls: the budgets read the wall clock a few times a snapshot, a few ms):
    the share alone gives one snapshot in 4 to 8, the floor every other within its 2%.
    """
    clock, cost = Clock(step=0.002), Clock(step=150e-6)
    _probes.probes().use_budgets(clock=clock, cost_clock=cost)
    udf = identity_udf(every=1)()
    for i in range(400):
        udf(i)
    snaps = stderr_events("udfmem.snapshot", finals=False)
    with_heap = [not (HEAP_FIELDS - set(s)) for s in snaps]
    with_blocks = ["py_blocks" in s for s in snaps]
    assert 400 == len(snaps)
    assert sum(with_heap[200:]) >= 100
    # py_blocks' floor reads on the snapshot's index too: the same every-other snapshots (the points a series keeps)
    assert sum(with_blocks[200:]) >= 100
    assert all(with_heap[i] for i in range(200, 400) if with_blocks[i])


def test_two_udfs_in_one_process_each_get_the_floor_of_readings(stderr_events: Reader) -> None:
    """Two tracked UDFs whose snapshots alternate (fused Ray Data stages): each gets its floor, on its own index.

    The heap and blocks probes are per process; the floor's index is each UDF's own count
    of snapshots, so neither UDF's snapshots all fall on the other's held-back indices
    (with the process's count, one got every other snapshot and the other fewer than 90 of 200).
    """
    clock, cost = Clock(step=0.002), Clock(step=150e-6)
    _probes.probes().use_budgets(clock=clock, cost_clock=cost)
    first, second = identity_udf("First", every=1)(), identity_udf("Second", every=1)()
    for i in range(400):
        first(i)
        second(i)
    snaps = stderr_events("udfmem.snapshot", finals=False)
    carried = {
        udf: sum(not (HEAP_FIELDS - set(s)) for s in snaps if s["udf"] == udf and s["call"] > 200)
        for udf in ("First", "Second")
    }
    assert {"First": True, "Second": True} == {udf: n >= 90 for udf, n in carried.items()}, carried
