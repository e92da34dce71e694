"""Snapshot cadence, setup events, output formats and the never-raise guarantee."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, identity_udf, parse_events, run_python

from udfmem import TrackedUDF, tracked
from udfmem.probes import process as _probes
from udfmem.runtime.decorator import find_state

Reader = Callable[..., Events]

MIB = 1024 * 1024
SNAPSHOT_FIELDS = {
    "event", "udf", "pid", "host", "ts", "call", "rss_mb", "peak_rss_mb", "arrow_live_mb", "gap_mb",
    "heap_in_use_mb", "heap_free_mb", "growth_mb", "window_calls", "window_s",
}  # fmt: skip


def test_snapshot_cadence_is_exact(stderr_events: Reader) -> None:
    """every=10 and 100 calls give exactly the snapshots at calls 10, 20, ..., 100."""
    Udf = identity_udf(every=10)

    udf = Udf()
    for i in range(105):
        udf(i)
    snaps = stderr_events("udfmem.snapshot")
    assert list(range(10, 101, 10)) == [s["call"] for s in snaps]
    assert [10] * 10 == [s["window_calls"] for s in snaps]
    assert {"Udf"} == {s["udf"] for s in snaps}


@pytest.mark.usefixtures("free_probes")
def test_snapshot_has_the_contract_fields(stderr_events: Reader) -> None:
    """A snapshot line carries every field of the contract, with sane values.

    The heap probe's cost clock stands still (``free_probes``): this test is about the
    fields, not the budget (``test_budget.py``), which on a loaded machine may hold them back.
    """
    Udf = identity_udf(every=2)

    Udf()(1)
    Udf()(2)
    (snap,) = stderr_events("udfmem.snapshot")
    assert set() == SNAPSHOT_FIELDS - set(snap)
    assert snap["rss_mb"] > 10
    assert snap["peak_rss_mb"] >= snap["rss_mb"]
    assert snap["gap_mb"] == pytest.approx(snap["rss_mb"] - snap["arrow_live_mb"], abs=0.11)
    # no cgroup limit on this machine: the kill that comes first is the node's (or Ray's, in a worker)
    assert snap["limit_source"] == "node" or snap["limit_source"].startswith("cgroup:")
    assert snap["headroom_mb"] < snap["limit_mb"]


def test_counts_continue_across_instances(stderr_events: Reader) -> None:
    """Counting is per (process, UDF): engines re-create instances, counts continue."""
    Udf = identity_udf(every=4)

    for i in range(12):
        Udf()(i)
    assert [4, 8, 12] == [s["call"] for s in stderr_events("udfmem.snapshot")]


def test_generator_is_sampled_when_exhausted(stderr_events: Reader) -> None:
    """A generator call's snapshot comes when it is exhausted or closed, not when created."""

    @tracked(every=2, methods=("gen",))
    class Udf:
        def gen(self, n: int) -> Iterator[int]:
            yield from range(n)

    udf = Udf()
    unstarted = udf.gen(5)
    del unstarted  # never iterated: not a call
    assert [0, 1] == list(udf.gen(2))
    g = udf.gen(3)
    assert 0 == next(g)
    assert [] == stderr_events("udfmem.snapshot")
    g.close()
    assert [2] == [s["call"] for s in stderr_events("udfmem.snapshot")]


def test_counting_is_exact_across_threads(stderr_events: Reader) -> None:
    """8 threads x 2000 calls on one instance: the last snapshot is exactly at call 16000."""
    Udf = identity_udf(every=1000)

    udf = Udf()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for i in range(2000):
            udf(i)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force frequent thread switches inside the wrapper
    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    snaps = stderr_events("udfmem.snapshot")
    assert 16000 == max(s["call"] for s in snaps)
    assert 16000 == sum(s["window_calls"] for s in snaps)


def test_setup_event_measures_setup(stderr_events: Reader) -> None:
    """udfmem.setup reports setup time and the memory setup added (64 MiB kept here)."""

    @tracked
    class Udf:
        def setup(self) -> None:
            time.sleep(0.05)
            self.model = bytearray(b"\x01") * (64 * MIB)

        def __call__(self, x: int) -> int:
            return x

    udf = Udf()
    udf.setup()
    (ev,) = stderr_events("udfmem.setup")
    assert "setup" == ev["method"]
    assert ev["setup_s"] >= 0.05
    assert ev["delta_mb"] == pytest.approx(64, abs=6)
    assert ev["peak_rss_mb"] >= ev["rss_mb"]


def test_init_is_the_setup_phase_without_setup(stderr_events: Reader) -> None:
    """With no setup() method, __init__ is measured; growth is counted from its end."""

    @tracked(every=4)
    class Udf:
        def __init__(self) -> None:
            self.model = bytearray(b"\x01") * (32 * MIB)
            self.kept: list[bytearray] = []

        def __call__(self, x: int) -> int:
            self.kept.append(bytearray(b"\x01") * (4 * MIB))
            return x

    udf = Udf()
    for i in range(8):
        udf(i)
    setup, *snaps = stderr_events()
    assert "udfmem.setup" == setup["event"]
    assert "__init__" == setup["method"]
    assert setup["delta_mb"] == pytest.approx(32, abs=6)
    assert [4, 8] == [s["call"] for s in snaps]
    assert snaps[1]["growth_mb"] == pytest.approx(32, abs=4)


def test_growth_counts_from_setup(stderr_events: Reader) -> None:
    """growth_mb is RSS growth since setup: 4 MiB kept per call gives ~32 MiB after 8 calls."""

    @tracked(every=4)
    class Udf:
        def setup(self) -> None:
            self.kept: list[bytearray] = []

        def __call__(self, x: int) -> int:
            self.kept.append(bytearray(b"\x01") * (4 * MIB))
            return x

    udf = Udf()
    udf.setup()
    for i in range(8):
        udf(i)
    snaps = stderr_events("udfmem.snapshot")
    assert [4, 8] == [s["call"] for s in snaps]
    assert snaps[0]["growth_mb"] == pytest.approx(16, abs=4)
    assert snaps[1]["growth_mb"] == pytest.approx(32, abs=4)


def test_mixin_tracks_subclasses_with_class_kwargs(stderr_events: Reader) -> None:
    """class X(TrackedUDF, every=3) tracks X; its options are inherited by subclasses."""

    class Base(TrackedUDF, every=3):
        def __call__(self, x: int) -> int:
            return x

    class Child(Base):
        def __call__(self, x: int) -> int:
            return super().__call__(x) + 1

    for i in range(3):
        Base()(i)
    assert [("Base", 3)] == [(s["udf"], s["call"]) for s in stderr_events("udfmem.snapshot")]
    child = Child()
    for i in range(3):
        assert i + 1 == child(i)
    snaps = stderr_events("udfmem.snapshot")
    assert ("Child", 3) in [(s["udf"], s["call"]) for s in snaps]


def test_abstract_mixin_base_without_methods_is_left_alone() -> None:
    """A TrackedUDF subclass without __call__ (an abstract base) is not an error."""

    class Abstract(TrackedUDF, every=5):
        pass

    class Concrete(Abstract):
        def __call__(self) -> str:
            return "ok"

    assert "ok" == Concrete()()
    assert 5 == Concrete.__udfmem_kwargs__["every"]


def test_json_format_from_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """UDFMEM_LOG_FORMAT=json writes one JSON object per line, same fields as logfmt."""
    monkeypatch.setenv("UDFMEM_LOG_FORMAT", "json")

    udf = identity_udf(every=2)()

    udf(1)
    udf(2)
    lines = [line for line in capsys.readouterr().err.splitlines() if "udfmem." in line]
    (obj,) = [json.loads(line) for line in lines]
    assert "udfmem.snapshot" == obj["event"]
    assert set() == SNAPSHOT_FIELDS - set(obj)


def test_log_dir_appends_json_lines_per_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, stderr_events: Reader
) -> None:
    """UDFMEM_LOG_DIR also appends JSON lines to one file per process; stderr keeps logfmt."""
    monkeypatch.setenv("UDFMEM_LOG_DIR", str(tmp_path / "logs"))

    Udf = identity_udf(every=2)

    udf = Udf()
    for i in range(4):
        udf(i)
    (path,) = list((tmp_path / "logs").iterdir())
    assert path.name.endswith(".jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [2, 4] == [r["call"] for r in records]
    assert [2, 4] == [e["call"] for e in stderr_events("udfmem.snapshot")]


def test_input_values_are_never_logged(capsys: pytest.CaptureFixture[str]) -> None:
    """Arguments and results of the UDF never appear in udfmem's output."""
    secret = "s3cr3t-value-never-logged"

    @tracked(every=1)
    class Udf:
        def setup(self) -> None:
            self.token = secret

        def __call__(self, batch: str) -> str:
            return batch.upper()

    udf = Udf()
    udf.setup()
    udf(secret)
    err = capsys.readouterr().err
    assert "udfmem.snapshot" in err
    assert secret not in err
    assert secret.upper() not in err


def test_telemetry_failure_never_reaches_the_udf(monkeypatch: pytest.MonkeyPatch, stderr_events: Reader) -> None:
    """A probe that blows up gives one warning event; the UDF's results are unchanged.

    The probe failure is simulated (monkeypatched): real probes degrade to None instead
    of raising, so this internal failure cannot be produced otherwise.
    """
    from udfmem.probes import memory as _memory

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("probe exploded")

    @tracked(every=1)
    class Udf:
        def __call__(self, x: int) -> int:
            return x * 2

    assert 0 == Udf()(0)  # binds and snapshots normally
    monkeypatch.setattr(_memory, "block", broken)
    assert [2, 4, 6] == [Udf()(i) for i in range(1, 4)]
    warnings = stderr_events("udfmem.warning")
    assert ["snapshot-failed"] == [w["what"] for w in warnings]


def test_bind_failure_turns_udfmem_off_not_the_udf(monkeypatch: pytest.MonkeyPatch, stderr_events: Reader) -> None:
    """If udfmem cannot even start in a process, one warning says so and the UDF runs untouched.

    Simulated (monkeypatched probe), since the real probes degrade instead of raising.
    """
    from udfmem.probes import process as _probes

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(_probes.Probes, "resident", broken)
    Udf = identity_udf(every=1)
    assert [0, 1, 2] == [Udf()(i) for i in range(3)]
    events = stderr_events()
    assert [("udfmem.warning", "bind-failed")] == [(e["event"], e["what"]) for e in events]


def test_broken_stderr_never_reaches_the_udf(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed stderr stream does not break the UDF."""
    closed = open(__file__)  # noqa: SIM115
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)

    @tracked(every=1)
    class Udf:
        def __call__(self, x: int) -> int:
            return x + 1

    assert 2 == Udf()(1)


def test_parse_events_reads_ray_prefixed_lines() -> None:
    """Lines prefixed by Ray's driver relay parse like bare ones."""
    line = "(MapWorker(MapBatches(Embed)) pid=123) event=udfmem.snapshot udf=Embed pid=123 call=64 rss_mb=1.5"
    (ev,) = parse_events(line)
    assert {"event": "udfmem.snapshot", "udf": "Embed", "pid": 123, "call": 64, "rss_mb": 1.5} == ev


def test_every_s_keeps_firing_period_after_period(stderr_events: Reader) -> None:
    """every_s snapshots at the first call after each period, off the hot path, period after period."""
    Udf = identity_udf(every=10_000, every_s=0.25)

    udf = Udf()
    udf(0)
    for i in range(4):
        time.sleep(0.4)
        udf(i)
    snaps = stderr_events("udfmem.snapshot")
    assert [2, 3, 4, 5] == [s["call"] for s in snaps]
    assert [2, 1, 1, 1] == [s["window_calls"] for s in snaps]  # the first window holds calls 1 and 2
    assert all(s["window_s"] >= 0.25 for s in snaps)


def test_init_and_setup_are_both_measured(stderr_events: Reader) -> None:
    """Engines run __init__ and users call setup(): each gets its own udfmem.setup event."""

    @tracked(every=2)
    class Udf:
        def __init__(self) -> None:
            self.config = bytearray(b"\x01") * (8 * MIB)

        def setup(self) -> None:
            self.model = bytearray(b"\x01") * (32 * MIB)

        def __call__(self, x: int) -> int:
            return x

    udf = Udf()
    udf.setup()
    udf(1)
    udf(2)
    setups = stderr_events()
    assert ["__init__", "setup"] == [e["method"] for e in setups if e["event"] == "udfmem.setup"]
    assert [8, 32] == [round(e["delta_mb"] / 8) * 8 for e in setups if e["event"] == "udfmem.setup"]
    (snap,) = [e for e in setups if e["event"] == "udfmem.snapshot"]
    assert snap["growth_mb"] == pytest.approx(0, abs=4)  # counted from the end of setup()


def test_setup_called_from_init_is_one_phase(stderr_events: Reader) -> None:
    """__init__ calling self.setup() is measured once, as __init__, including the setup."""

    @tracked
    class Udf:
        def __init__(self) -> None:
            self.setup()

        def setup(self) -> None:
            self.model = bytearray(b"\x01") * (24 * MIB)

        def __call__(self, x: int) -> int:
            return x

    Udf()
    (ev,) = stderr_events("udfmem.setup")
    assert "__init__" == ev["method"]
    assert ev["delta_mb"] == pytest.approx(24, abs=4)


def test_lazy_setup_inside_the_first_call_sets_the_baseline(stderr_events: Reader) -> None:
    """The Geneva pattern (setup() called lazily from __call__): growth counts from after it."""

    @tracked(every=4)
    class Udf:
        def setup(self) -> None:
            self.model = bytearray(b"\x01") * (64 * MIB)

        def __call__(self, x: int) -> int:
            if not hasattr(self, "model"):
                self.setup()
            return x

    udf = Udf()
    for i in range(4):
        udf(i)
    setup, snap = stderr_events()
    assert ("udfmem.setup", "setup") == (setup["event"], setup["method"])
    assert setup["delta_mb"] == pytest.approx(64, abs=6)
    assert ("udfmem.snapshot", 4) == (snap["event"], snap["call"])
    assert snap["growth_mb"] == pytest.approx(0, abs=4)


def test_a_failed_setup_measurement_warns(monkeypatch: pytest.MonkeyPatch, stderr_events: Reader) -> None:
    """If measuring a setup phase fails, one setup-failed warning says so and setup() runs normally.

    Simulated (the RSS probe raises): the real probes degrade to None instead.
    """

    @tracked(every=1000)
    class Udf:
        def setup(self) -> None:
            self.ready = True

        def __call__(self, x: int) -> int:
            return x

    udf = Udf()
    find_state(Udf).bind()
    from udfmem.probes import process as _probes

    def broken(*_: Any) -> Any:
        raise RuntimeError("rss exploded")

    monkeypatch.setattr(_probes.Probes, "rss", broken)
    udf.setup()
    assert udf.ready
    warnings = stderr_events("udfmem.warning")
    assert ["setup-failed"] == [w["what"] for w in warnings]


def test_an_unwritable_log_dir_warns_once_and_the_udf_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """UDFMEM_LOG_DIR that cannot be created: one log-dir-failed warning on stderr, no retry per event."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("UDFMEM_LOG_DIR", str(blocker / "logs"))
    proc = run_python(
        """
        import udfmem
        Udf = udfmem.tracked(every=1)(type("Udf", (), {"__call__": lambda self, x: x + 1}))
        print("RESULT", [Udf()(i) for i in range(5)])
        """,
        env={"UDFMEM_LOG_DIR": str(blocker / "logs")},
    )
    assert "RESULT [1, 2, 3, 4, 5]" in proc.stdout
    assert 5 == len(parse_events(proc.stderr, "udfmem.snapshot"))
    (warning,) = parse_events(proc.stderr, "udfmem.warning")
    assert ("log-dir-failed", "UDFMEM_LOG_DIR") == (warning["what"], warning["var"])


def test_structlog_format_goes_through_the_users_structlog_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """UDFMEM_LOG_FORMAT=structlog: events reach the user's structlog pipeline (here structlog's capture_logs)."""
    from structlog.testing import capture_logs

    monkeypatch.setenv("UDFMEM_LOG_FORMAT", "structlog")
    Udf = identity_udf(every=2)
    with capture_logs() as logs:
        udf = Udf()
        udf(1)
        udf(2)
    (snap,) = [e for e in logs if e["event"] == "udfmem.snapshot"]
    assert ("Udf", 2, 2, 1) == (snap["udf"], snap["call"], snap["window_calls"], snap["schema"])
    assert {"rss_mb", "rss_anon_mb", "peak_rss_mb", "pid", "host", "worker"} <= set(snap)


def test_the_last_snapshot_is_final_at_release_and_at_exit() -> None:
    """A series ends where the work ended: final=true at the UDF object's release and at normal exit.

    13 calls at every=8: the object's release adds call 13; a function's 6 calls at every=4 end with
    call 6 at exit; a series whose last call was snapshotted gets no extra line.
    """
    proc = run_python(
        """
        import gc, udfmem

        @udfmem.tracked(every=8)
        class Obj:
            def __call__(self, x):
                return x

        udf = Obj()
        for i in range(13):
            udf(i)
        del udf
        gc.collect()
        print("released", flush=True)

        f = udfmem.tracked(every=4)(lambda x: x)
        for i in range(6):
            f(i)
        g = udfmem.tracked(every=4, name="exact")(lambda x: x)
        for i in range(8):
            g(i)
        """
    )
    events = parse_events(proc.stderr, "udfmem.snapshot")
    assert [("Obj", 8, None), ("Obj", 13, True)] == [(e["udf"], e["call"], e.get("final")) for e in events[:2]]
    assert 5 == events[1]["window_calls"]
    rest = [(e["udf"], e["call"], e.get("final")) for e in events[2:]]
    assert [("<lambda>", 4, None), ("exact", 4, None), ("exact", 8, None), ("<lambda>", 6, True)] == rest


def test_small_object_growth_shows_in_py_blocks(stderr_events: Reader) -> None:
    """100,000 small strings kept per call: py_blocks grows by ~200,000 between the first and third snapshot.

    The probe's time budget is reset before each call (on a large heap it may leave the field out).
    """

    class Keeper:
        def __init__(self) -> None:
            self.keep: list[str] = []

        def __call__(self, n: int) -> int:
            self.keep.extend(f"k{n}-{i}" for i in range(100_000))
            return len(self.keep)

    udf = tracked(every=1)(Keeper)()
    for n in range(3):
        _probes.probes().blocks.reset()  # this test is about the figure, not its time budget
        udf(n)
    first, _, last = stderr_events("udfmem.snapshot")
    assert 195_000 <= last["py_blocks"] - first["py_blocks"] <= 220_000
