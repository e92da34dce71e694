"""Threads, re-entry and the timer: snapshots stay exact, calls never wait long, nothing is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from conftest import Events, identity_udf, parse_events, run_python

import udfmem.testing
from udfmem.runtime.decorator import find_state

Reader = Callable[..., Events]


def test_threaded_snapshots_are_labelled_with_the_multiple_crossed(stderr_events: Reader) -> None:
    """4 threads x 10,000 calls at every=1000: labels are exactly 1000, 2000, ..., 40000, each once."""
    Udf = identity_udf(every=1000, every_s=0)
    udf = Udf()

    def work() -> None:
        for i in range(10_000):
            udf(i)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snaps = stderr_events("udfmem.snapshot")
    assert list(range(1000, 40_001, 1000)) == [s["call"] for s in snaps]
    assert 40_000 == sum(s["window_calls"] for s in snaps)


def test_a_call_that_gives_up_waiting_still_gets_its_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call crossing a boundary during another thread's slow snapshot waits little; the holder takes its snapshot.

    Simulated slowness: the first snapshot waits on an event (a real one takes ~20 µs).
    """
    from udfmem.runtime import state as _state

    Udf = identity_udf(every=2, every_s=0, trim="off")
    udf = Udf()
    udf(0)  # bind
    binding = find_state(Udf).binding
    release = threading.Event()
    real = binding.snapshot

    def slow(label: int, final: bool | None = None) -> None:
        if label == 2:
            release.wait(5)
        real(label, final)

    monkeypatch.setattr(binding, "snapshot", slow)
    with udfmem.testing.capture() as events:
        holder = threading.Thread(target=udf, args=(2,))  # call 2: its snapshot hangs
        holder.start()
        while not udfmem.testing.state_of(Udf).snapshot_running:
            time.sleep(0.001)
        t0 = time.monotonic()
        udf(3)
        udf(4)  # call 4 crosses the next boundary while 2's snapshot still runs
        waited = time.monotonic() - t0
        release.set()
        holder.join()
    assert waited < 1  # it gave up after WAIT_S each (2 ms), not after the 5 s hang
    assert [2, 4] == [e["call"] for e in events if e["event"] == "udfmem.snapshot"]
    assert 0 == udfmem.testing.state_of(Udf).pending
    assert _state.WAIT_S <= 0.01


def test_reentry_on_the_snapshotting_thread_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finalizer calling the same UDF inside a snapshot (same thread) never waits; its call is counted.

    Simulated re-entry: the snapshot itself calls the UDF, as a __del__ run by the GC there would.
    """
    Udf = identity_udf(every=1, every_s=0, trim="off")
    udf = Udf()
    state = find_state(Udf)
    state.bind()
    binding = state.binding
    real = binding.snapshot
    reentered: list[int] = []

    def reentrant(label: int, final: bool | None = None) -> None:
        if label == 1:
            reentered.append(udf(99))  # call 2, made inside call 1's snapshot
        real(label, final)

    monkeypatch.setattr(binding, "snapshot", reentrant)
    with udfmem.testing.capture() as events:
        udf(0)
        udf(1)
    assert [99] == reentered
    assert [1, 2, 3] == [e["call"] for e in events if e["event"] == "udfmem.snapshot"]


def test_a_force_during_a_snapshot_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The every_s timer flagging a UDF while a snapshot runs: the next call still snapshots."""
    Udf = identity_udf(every=100, every_s=0, trim="off")
    udf = Udf()
    state = find_state(Udf)
    state.bind()
    binding = state.binding
    real = binding.snapshot

    def flagged(label: int, final: bool | None = None) -> None:
        real(label, final)
        state.force()  # what the timer thread does, landing inside the step

    monkeypatch.setattr(binding, "snapshot", flagged)
    with udfmem.testing.capture() as events:
        for i in range(101):
            udf(i)
    assert [100, 101] == [e["call"] for e in events if e["event"] == "udfmem.snapshot"]


def test_final_snapshots_of_released_objects_never_go_back_in_calls() -> None:
    """8 threads, each with its own object of one UDF (every=1), released while others still call: calls only rise.

    A released object's final snapshot is counted under the snapshot lock, so it never carries a call
    number below a snapshot already written (Daft's threads drop objects mid-run this way).
    """
    proc = run_python(
        """
        import threading, udfmem

        @udfmem.tracked(every=1)
        class U:
            def __call__(self, x):
                return x

        def work(n):
            udf = U()
            for i in range(n):
                udf(i)

        threads = [threading.Thread(target=work, args=(50 + 40 * k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        """
    )
    calls = [e["call"] for e in parse_events(proc.stderr, "udfmem.snapshot")]
    assert calls == sorted(set(calls))
    assert sum(50 + 40 * k for k in range(8)) == calls[-1]
