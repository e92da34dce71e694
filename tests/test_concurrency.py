"""Threads, re-entry and the timer: snapshots stay exact, calls never wait long, nothing is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from conftest import Events, identity_udf, parse_events, run_python

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
    from udfmem.emit import emitter as _emit
    from udfmem.runtime import state as _state

    Udf = identity_udf(every=2, every_s=0, trim="off")
    udf = Udf()
    state = Udf.__dict__["__call__"].__udfmem_state__
    udf(0)  # bind
    release = threading.Event()
    real = state._snapshot

    def slow(label: int) -> None:
        if label == 2:
            release.wait(5)
        real(label)

    monkeypatch.setattr(state, "_snapshot", slow)
    with _emit.capture() as events:
        holder = threading.Thread(target=udf, args=(2,))  # call 2: its snapshot hangs
        holder.start()
        while not state._holder:
            time.sleep(0.001)
        t0 = time.monotonic()
        udf(3)
        udf(4)  # call 4 crosses the next boundary while 2's snapshot still runs
        waited = time.monotonic() - t0
        release.set()
        holder.join()
    assert waited < 1  # it gave up after WAIT_S each (2 ms), not after the 5 s hang
    assert [2, 4] == [e["call"] for e in events if e["event"] == "udfmem.snapshot"]
    assert not state._pending
    assert _state.WAIT_S <= 0.01


def test_reentry_on_the_snapshotting_thread_passes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """A finalizer calling the same UDF inside a snapshot (same thread) never waits; its call is counted.

    Simulated re-entry: the snapshot itself calls the UDF, as a __del__ run by the GC there would.
    """
    from udfmem.emit import emitter as _emit

    Udf = identity_udf(every=1, every_s=0, trim="off")
    udf = Udf()
    state = Udf.__dict__["__call__"].__udfmem_state__
    real = state._snapshot
    reentered: list[int] = []

    def reentrant(label: int) -> None:
        if label == 1:
            reentered.append(udf(99))  # call 2, made inside call 1's snapshot
        real(label)

    monkeypatch.setattr(state, "_snapshot", reentrant)
    with _emit.capture() as events:
        udf(0)
        udf(1)
    assert [99] == reentered
    assert [1, 2, 3] == [e["call"] for e in events if e["event"] == "udfmem.snapshot"]


def test_a_force_during_a_snapshot_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The every_s timer flagging a UDF while a snapshot runs: the next call still snapshots."""
    from udfmem.emit import emitter as _emit

    Udf = identity_udf(every=100, every_s=0, trim="off")
    udf = Udf()
    state = Udf.__dict__["__call__"].__udfmem_state__
    real = state._snapshot

    def flagged(label: int) -> None:
        real(label)
        state.force()  # what the timer thread does, landing inside the step

    monkeypatch.setattr(state, "_snapshot", flagged)
    with _emit.capture() as events:
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
