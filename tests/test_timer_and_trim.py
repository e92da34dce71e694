"""The timer survives failures; the trim policy's and the probe budget's decisions, with injected clocks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Events, identity_udf, parse_events, run_python

from udfmem import tracked
from udfmem.policies.trim import IDLE_S, TRIM_SHARE, Trimmer, TrimPolicy
from udfmem.probes import allocator as _allocator
from udfmem.probes import budget as _budget
from udfmem.probes import process as _probes
from udfmem.runtime import timer as _timer
from udfmem.runtime.decorator import find_state

Reader = Callable[..., Events]
MIB = 1024 * 1024


class Clock:
    """A clock the test moves by hand (no sleeps)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The time now."""
        return self.now


def released(mb: float = 100.0, took_ms: float = 1.0) -> _allocator.TrimResult:
    """What a trim that released ``mb`` MiB reports (the release itself is injected: these are decision tests)."""
    return _allocator.TrimResult(True, mb, mb, 0.0, took_ms, 500.0, 500.0 - mb)


def make_trimmer(
    mode: str | int, reading: list[tuple[int, int, int]], clock: Clock, took_ms: float = 1.0
) -> tuple[Trimmer, list[str]]:
    """A trimmer reading ``reading[0]`` (RSS, malloc in-use, Arrow) and counting trims instead of trimming."""
    trims: list[str] = []

    def release() -> _allocator.TrimResult:
        trims.append("trim")
        return released(took_ms=took_ms)

    trimmer = Trimmer(TrimPolicy(mode), lambda: reading[0], clock=clock, release=release)
    return trimmer, trims


def test_auto_trims_past_the_threshold_within_a_time_budget() -> None:
    """auto: trim once RSS - in-use - Arrow passes the baseline by max(64 MiB, 10%); a 50 ms trim buys 1 s."""
    clock = Clock()
    reading = [(500 * MIB, 300 * MIB, 0)]
    trimmer, trims = make_trimmer("auto", reading, clock, took_ms=50.0)
    trimmer.rebase()  # baseline: 200 MiB that is neither malloc's nor Arrow's
    trimmer.at_snapshot(560 * MIB, 300 * MIB, 0)  # 60 MiB retained: under 64
    assert [] == trims
    trimmer.at_snapshot(600 * MIB, 300 * MIB, 0)  # 100 MiB retained
    assert ["trim"] == trims
    clock.now += 0.050 / TRIM_SHARE - 0.1
    trimmer.at_snapshot(700 * MIB, 300 * MIB, 0)
    assert ["trim"] == trims  # the budget: TRIM_SHARE (5%) of the wall time
    clock.now += 0.2
    trimmer.at_snapshot(700 * MIB, 300 * MIB, 0)
    assert ["trim", "trim"] == trims


def test_low_headroom_under_a_limit_ignores_the_budget() -> None:
    """Near a known memory limit (headroom under 10% of it) auto trims whenever enough is retained."""
    clock = Clock()
    trimmer, trims = make_trimmer("auto", [(500 * MIB, 300 * MIB, 0)], clock, took_ms=50.0)
    trimmer.rebase()
    limit = 1000 * MIB
    trimmer.at_snapshot(700 * MIB, 300 * MIB, 0, headroom=300 * MIB, limit=limit)
    trimmer.at_snapshot(700 * MIB, 300 * MIB, 0, headroom=300 * MIB, limit=limit)  # within the budget's wait
    assert ["trim"] == trims
    trimmer.at_snapshot(700 * MIB, 300 * MIB, 0, headroom=50 * MIB, limit=limit)  # 5% headroom left
    assert ["trim", "trim"] == trims


def test_auto_makes_no_decision_without_the_heap_figure() -> None:
    """When mallinfo2 was skipped for its budget, retention is unknown: no trim on a guess."""
    clock = Clock()
    trimmer, trims = make_trimmer("auto", [(500 * MIB, 300 * MIB, 0)], clock)
    trimmer.rebase()
    trimmer.at_snapshot(2000 * MIB, None, 0)
    assert [] == trims


def test_idle_trim_once_per_idle_period() -> None:
    """auto: no call for IDLE_S with enough retained -> one trim; calls again, then idle again -> one more."""
    clock = Clock()
    reading = [(500 * MIB, 300 * MIB, 0)]
    trimmer, trims = make_trimmer("auto", reading, clock)
    trimmer.rebase()
    reading[0] = (700 * MIB, 300 * MIB, 0)  # 200 MiB retained from now on
    trimmer.idle_check(active=True, calls=10)
    clock.now += IDLE_S - 0.5
    trimmer.idle_check(active=False, calls=10)
    assert [] == trims  # not idle long enough
    clock.now += 1
    trimmer.idle_check(active=False, calls=10)
    clock.now += 5
    trimmer.idle_check(active=False, calls=10)
    assert ["trim"] == trims  # once per idle period
    trimmer.idle_check(active=True, calls=20)
    clock.now += IDLE_S + 1
    reading[0] = (900 * MIB, 300 * MIB, 0)  # the trim rebased at 700: 200 MiB more retained since
    trimmer.idle_check(active=False, calls=20)
    assert ["trim", "trim"] == trims


def test_integer_policy_trims_after_setup_and_off_never() -> None:
    """trim=N always trims after setup; off never does, whatever is retained."""
    clock = Clock()
    every, every_trims = make_trimmer(8, [(900 * MIB, 100 * MIB, 0)], clock)
    off, off_trims = make_trimmer("off", [(900 * MIB, 100 * MIB, 0)], clock)
    every.after_setup()
    off.after_setup()
    off.at_snapshot(900 * MIB, 100 * MIB, 0)
    assert (["trim"], []) == (every_trims, off_trims)


def test_unsupported_trim_warns_once_and_turns_the_policy_off() -> None:
    """A platform without a release function: one warning (the trimmer returns it to emit), then the policy is off.

    Simulated (injected release result): glibc here always has malloc_trim.
    """
    clock = Clock()
    trimmer = Trimmer(
        TrimPolicy("auto"),
        lambda: (900 * MIB, 100 * MIB, 0),
        clock=clock,
        release=lambda: _allocator.TrimResult(False, 0.0, 0.0, 0.0, 0.0, None, None, "musl: no malloc_trim"),
    )
    events = trimmer.trim("auto")
    assert "off" == trimmer.policy.mode
    assert ["trim-unsupported"] == [w.what for w in events if w.EVENT == "udfmem.warning"]


def test_budget_reads_a_cheap_probe_every_time_and_a_costly_one_within_its_share() -> None:
    """A probe that took 40 ms is read again only after 40 ms / 0.5% = 8 s; one under 100 µs always."""
    clock = Clock()
    cost = [0.00001]
    calls: list[float] = []

    def probe() -> float:
        calls.append(clock.now)
        clock.now += cost[0]
        return clock.now

    budget = _budget.Budget(probe, share=0.005, clock=clock, cost_clock=clock)
    assert [budget() is not None for _ in range(5)] == [True] * 5
    cost[0] = 0.04  # the heap grew: a walk now takes 40 ms
    slow_reads = 0
    while budget() is not None:
        slow_reads += 1
    assert slow_reads <= _budget.RETIME  # noticed at the next re-timing
    assert budget.cost == pytest.approx(0.04)
    clock.now += 7.9
    assert budget() is None
    clock.now += 0.2
    assert budget() is not None


def test_snapshot_leaves_out_heap_fields_while_the_budget_holds_them_back(stderr_events: Reader) -> None:
    """With mallinfo2 over budget, snapshots carry RSS but not the heap fields (never a stale value)."""
    Udf = identity_udf(every=1)
    Udf()(0)
    budget = _probes.probes().heap_budget
    budget.hold(time.monotonic() + 3600)  # as after an 18 s walk: held back for an hour
    Udf()(1)
    snap = stderr_events("udfmem.snapshot")[-1]
    assert "rss_mb" in snap
    assert set() == {"heap_in_use_mb", "heap_free_mb", "heap_mmap_mb"} & set(snap)


class Failing:
    """A watched state whose tick fails twice, then works."""

    def __init__(self) -> None:
        self.ticks = 0
        self.failures: list[Exception] = []

    def tick(self, now: float) -> float | None:
        """Fail the first two visits."""
        self.ticks += 1
        if self.ticks <= 2:
            raise RuntimeError("tick exploded")
        return None

    def tick_failed(self, exc: Exception) -> None:
        """Record the failure."""
        self.failures.append(exc)


def test_timer_visits_again_after_a_failing_tick() -> None:
    """A tick that raises is reported to its state and retried in RETRY_S, not dropped for good."""
    state = Failing()
    assert 100.0 + _timer.RETRY_S == _timer.Timer.visit(state, 100.0)
    assert 101.0 + _timer.RETRY_S == _timer.Timer.visit(state, 101.0)
    assert _timer.Timer.visit(state, 102.0) is None
    assert (3, 2) == (state.ticks, len(state.failures))


def test_a_failing_tick_warns_once_and_every_s_keeps_working(
    monkeypatch: pytest.MonkeyPatch, stderr_events: Reader
) -> None:
    """A real UDF's timer tick that raises: one timer-failed warning, and every_s snapshots still come.

    Simulated (the idle check is made to raise once per visit for 0.3 s): nothing in the real
    tick raises on this machine.
    """
    Udf = identity_udf(every=10_000, every_s=0.2)
    udf = Udf()
    udf(0)
    trimmer = find_state(Udf).binding.trimmer
    assert trimmer is not None
    real_idle = trimmer.idle_check
    until = time.monotonic() + 0.3

    def flaky(*args: Any, **kwargs: Any) -> list[Any]:
        if time.monotonic() < until:
            raise RuntimeError("idle check exploded")
        return real_idle(*args, **kwargs)

    monkeypatch.setattr(trimmer, "idle_check", flaky)
    deadline = time.monotonic() + 5
    snaps: list[dict[str, Any]] = []
    events: Events = []
    while time.monotonic() < deadline and len(snaps) < 2:
        time.sleep(0.25)
        udf(1)
        events += stderr_events()
        snaps = [e for e in events if e["event"] == "udfmem.snapshot"]
    assert 2 <= len(snaps)
    assert ["timer-failed"] == [e["what"] for e in events if e["event"] == "udfmem.warning"]


def test_busy_python_threads_do_not_make_the_heap_probe_look_expensive() -> None:
    """With two busy Python threads, waiting for the GIL is not counted as mallinfo2's cost: heap fields stay.

    In a fresh process (small heap, where a walk costs a few µs): 95+ of 100 snapshots keep their heap fields.
    """
    proc = run_python(
        """
        import threading
        import udfmem

        stop = threading.Event()

        def spin():
            while not stop.is_set():
                sum(range(1000))

        spinners = [threading.Thread(target=spin) for _ in range(2)]
        for t in spinners:
            t.start()
        Udf = udfmem.tracked(every=1, every_s=0, trim="off")(type("Udf", (), {"__call__": lambda self, x: x}))
        udf = Udf()
        for i in range(100):
            udf(i)
        stop.set()
        for t in spinners:
            t.join()
        """
    )
    snaps = parse_events(proc.stderr, "udfmem.snapshot")
    assert 100 == len(snaps)
    assert 95 <= sum("heap_in_use_mb" in s for s in snaps)


def test_trims_that_do_not_pay_back_off_and_one_that_pays_resets() -> None:
    """auto: a trim releasing under a quarter of its estimate doubles the excess the next needs; a paying one resets.

    The estimate counts growth malloc cannot see (pymalloc arenas) as retention; without the backoff a leak
    of Python objects would cost one futile trim per 64 MiB of growth.
    """
    clock = Clock()
    reading = [(500 * MIB, 300 * MIB, 0)]
    pays = [0.5]  # MiB released by the next trim

    trims: list[float] = []

    def release() -> _allocator.TrimResult:
        trims.append(pays[0])
        return released(mb=pays[0])

    trimmer = Trimmer(TrimPolicy("auto"), lambda: reading[0], clock=clock, release=release)
    trimmer.rebase()
    rss = 500 * MIB
    for _ in range(64 + 128 + 64):  # 1 MiB of "retention" per snapshot that no trim releases
        rss += MIB
        reading[0] = (rss, 300 * MIB, 0)
        clock.now += 10  # the time budget never holds a trim back here
        trimmer.at_snapshot(rss, 300 * MIB, 0)
    assert [0.5, 0.5] == trims  # at +64 MiB, then at +141 (twice the threshold), not again within +470
    assert 4 == trimmer.policy.backoff
    pays[0] = 600.0  # the next trim releases what it estimated
    rss += 600 * MIB
    reading[0] = (rss, 300 * MIB, 0)
    clock.now += 10
    trimmer.at_snapshot(rss, 300 * MIB, 0)
    assert [0.5, 0.5, 600.0] == trims
    assert 1 == trimmer.policy.backoff


def test_a_call_in_progress_is_not_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: a call sleeping 5 s (a retry backoff) is busy; the timer's idle check sees it active throughout.

    A spy around the real idle check of this UDF's trimmer records what the real timer thread
    passes; the call really sleeps, in the tracked method's own frame.
    """

    @tracked(trim="auto", name="Sleeper")
    class Sleeper:
        """A call that sleeps in the UDF's own frame when asked, like a retry backoff."""

        def __call__(self, x: int, sleep: float = 0.0) -> int:
            time.sleep(sleep)
            return x

    udf = Sleeper()
    udf(1)
    udf(2)
    trimmer = find_state(Sleeper).binding.trimmer
    seen: list[tuple[float, bool]] = []
    real = trimmer.idle_check

    def spy(active: bool, calls: int) -> list[Any]:
        seen.append((time.monotonic(), active))
        return real(active, calls)

    monkeypatch.setattr(trimmer, "idle_check", spy)
    start = time.monotonic()
    assert 3 == udf(3, sleep=2 * IDLE_S + 1.0)  # past the first idle decision, wherever the timer's visits fall
    end = time.monotonic()
    during = [active for t, active in seen if start + 0.1 < t < end - 0.1]
    assert len(during) >= 1  # the timer did look during the call (it walks once an idle decision is due)
    assert all(during)
    deadline = time.monotonic() + 60  # waits on the outcome, not on the timer's punctuality
    while time.monotonic() < deadline and not any(not active for t, active in seen if t > end):
        time.sleep(0.1)
    assert any(not active for t, active in seen if t > end)  # after the call, no call in progress: idle
