"""Giving freed memory back to the OS, on real memory: glibc arenas, Arrow's pool, the policies."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, identity_udf, parse_events, run_python

import udfmem
import udfmem.testing
from udfmem.probes import allocator as _allocator
from udfmem.probes import allocators as _allocators

Reader = Callable[..., Events]
BENCH = str(Path(__file__).resolve().parent.parent / "benchmarks")

CHURN_UDF = f"""
import json, sys, time
sys.path.insert(0, {BENCH!r})
import udfmem
from reproducers import thread_churn

@udfmem.tracked(every=4, trim=TRIM)
class Churn:
    def __call__(self, i):
        self.kept = thread_churn(threads=8, mib_per_thread=64, keep_every=8, seed=i)  # ~64 MiB pinned
        return len(self.kept)

udf = Churn()
for i in range(8):
    udf(i)
busy = udfmem.sample().rss_mb
time.sleep(3.5)  # idle: longer than the policy's idle period
print(json.dumps({{"busy": busy, "idle": udfmem.sample().rss_mb}}))
"""


def churn_run(trim: str, env: dict[str, str] | None = None) -> tuple[dict[str, float], Events]:
    """Run 8 calls of the 512 MiB thread churn under ``trim``; RSS busy and idle, and the events."""
    proc = run_python(CHURN_UDF.replace("TRIM", trim), env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1]), parse_events(proc.stderr)


def test_trim_releases_thread_churn_retention() -> None:
    """After an 8-thread churn of 512 MiB keeping 1/8, udfmem.trim() gives most of it back."""
    proc = run_python(
        f"""
        import json, sys
        sys.path.insert(0, {BENCH!r})
        import udfmem
        from reproducers import thread_churn
        before = udfmem.sample().rss_mb
        kept = thread_churn()
        held = udfmem.sample().rss_mb
        result = udfmem.trim()
        print(json.dumps({{"before": before, "held": held, "after": udfmem.sample().rss_mb,
                           "result": result.__dict__}}))
        """
    )
    out = json.loads(proc.stdout)
    result = out["result"]
    assert out["held"] - out["before"] >= 400  # 512 MiB churned, ~64 MiB kept, the rest retained
    assert out["after"] - out["before"] <= 130  # what is kept, plus a little
    assert result["supported"] is True
    assert ("glibc", "malloc_trim") == (result["allocator"], result["method"])
    assert result["malloc_released_mb"] >= 300
    assert result["released_mb"] == pytest.approx(result["rss_before_mb"] - result["rss_after_mb"], abs=1)
    assert "pyarrow not imported" == result["reason"]


def test_trim_releases_arrow_pool_retention() -> None:
    """Arrow's default pool keeps dropped buffers resident; trim() releases them (arrow_released_mb)."""
    proc = run_python(
        f"""
        import json, sys
        sys.path.insert(0, {BENCH!r})
        import pyarrow as pa, udfmem
        from reproducers import arrow_churn
        before = udfmem.sample().rss_mb
        arrow_churn(512)
        held = udfmem.sample().rss_mb
        result = udfmem.trim()
        print(json.dumps({{"before": before, "held": held, "backend": pa.default_memory_pool().backend_name,
                           "result": result.__dict__}}))
        """
    )
    out = json.loads(proc.stdout)
    if out["backend"] == "system":
        pytest.skip("Arrow's pool is the system allocator here: nothing of Arrow's own to release")
    assert out["held"] - out["before"] >= 300
    assert out["result"]["arrow_released_mb"] >= 300
    assert out["result"]["reason"] is None


def test_auto_policy_trims_when_it_pays_and_when_idle() -> None:
    """trim="auto": a snapshot finding ~450 MiB retained trims; after the last call, the idle trim does."""
    rss, events = churn_run('"auto"')
    trims = [e for e in events if e["event"] == "udfmem.trim"]
    assert ["auto", "idle"] == [t["reason"] for t in trims]  # then at most once per 30 s
    assert all(t["released_mb"] >= 300 for t in trims)
    assert all(t["retained_mb"] >= 300 for t in trims)
    assert rss["busy"] >= 400  # retention between trims is real
    assert rss["idle"] <= 200  # the idle worker gave it back


def test_every_n_policy_trims_on_cadence() -> None:
    """trim=2 trims after calls 2, 4, 6 and 8, whatever is retained."""
    rss, events = churn_run("2")
    trims = [e for e in events if e["event"] == "udfmem.trim"]
    assert ["every"] * 4 == [t["reason"] for t in trims]
    assert rss["busy"] <= 200


def test_off_policy_never_trims() -> None:
    """trim="off" leaves the retention where it is, busy and idle."""
    rss, events = churn_run('"off"')
    assert [] == [e for e in events if e["event"] == "udfmem.trim"]
    assert rss["idle"] >= 400


def test_env_overrides_the_trim_argument() -> None:
    """UDFMEM_TRIM=off silences trim="auto"; a bad value warns once and keeps the argument."""
    _, events = churn_run('"auto"', env={"UDFMEM_TRIM": "off"})
    assert [] == [e for e in events if e["event"] == "udfmem.trim"]
    _, events = churn_run('"auto"', env={"UDFMEM_TRIM": "sometimes"})
    assert [("bad-env", "UDFMEM_TRIM")] == [(e["what"], e["var"]) for e in events if e["event"] == "udfmem.warning"]
    assert ["auto", "idle"] == [e["reason"] for e in events if e["event"] == "udfmem.trim"]


def test_nothing_to_free_never_trims() -> None:
    """A UDF that keeps nothing and frees little: no trim under "auto", in calls or when idle."""
    proc = run_python(
        """
        import time, udfmem
        @udfmem.tracked(every=8)
        class Small:
            def setup(self):
                self.table = list(range(100_000))
            def __call__(self, x):
                return sum(self.table[:1000]) + len(bytearray(256 * 1024))
        udf = Small()
        udf.setup()
        for i in range(200):
            udf(i)
        time.sleep(3.5)
        """
    )
    events = parse_events(proc.stderr)
    assert 25 == len([e for e in events if e["event"] == "udfmem.snapshot"])
    assert [] == [e for e in events if e["event"] == "udfmem.trim"]


def test_setup_transients_are_trimmed_after_setup() -> None:
    """A setup that churns through temporary buffers in threads is followed by a "setup" trim.

    The heap probe's cost clock stands still (``use_budgets``): the trim decision needs
    malloc's in-use figure, and on a loaded machine the walks of the churned heap
    (0.1-2 ms each there) could spend its time budget; this test is about the decision.
    """
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {BENCH!r})
        import udfmem
        from udfmem.probes import process as _probes
        from reproducers import thread_churn
        _probes.probes().use_budgets(cost_clock=lambda: 0.0)
        @udfmem.tracked(every=1000)
        class Loader:
            def setup(self):
                self.model = thread_churn(threads=4, mib_per_thread=64, keep_every=16)
            def __call__(self, x):
                return x
        Loader().setup()
        """
    )
    (trim,) = parse_events(proc.stderr, "udfmem.trim")
    assert "setup" == trim["reason"]
    assert trim["released_mb"] >= 150


@pytest.mark.parametrize(
    ("platform", "symbols", "reason"),
    [
        ("win32", set(), "Windows: no malloc_trim"),
        ("darwin", {"malloc_zone_pressure_relief"}, None),
        ("darwin", set(), "macOS: malloc_zone_pressure_relief missing"),
        ("linux", set(), "no malloc_trim"),
        ("linux", {"gnu_get_libc_version"}, "glibc without malloc_trim (symbol missing)"),
    ],
)
def test_platform_guards(monkeypatch: pytest.MonkeyPatch, platform: str, symbols: set[str], reason: str | None) -> None:
    """Each platform gets its own release call or a reasoned no-op.

    Simulated: the platform name and the C library's symbols are replaced, since this
    machine is glibc Linux (its real path is tested above).
    """

    class FakeLibc:
        def __getattr__(self, name: str) -> Any:
            if name in symbols:
                return FakeSymbol()
            raise AttributeError(name)

    class FakeSymbol:
        restype: Any = None
        argtypes: Any = None

        def __call__(self, *args: Any) -> int:
            return 0

    monkeypatch.setattr(_allocator.sys, "platform", platform)
    release, name, why = _allocator.platform_release(FakeLibc)
    assert (release is None) == (reason is not None)
    if reason is None:
        assert "malloc_zone_pressure_relief" == name
    else:
        assert reason in (why or "")


def test_the_serving_allocators_release_is_chosen() -> None:
    """On Linux the allocator serving malloc decides: its own release, none under one udfmem cannot release.

    Simulated: the serving allocator is a stand-in for jemalloc, musl and an unknown library
    (their real detection and release run under LD_PRELOAD in test_allocators.py); the C
    library is this machine's glibc, whose malloc_trim must not be called under them.
    """

    def purge() -> None:
        return None

    def serving(found: _allocators.Allocator) -> Any:
        return lambda: found

    jemalloc = _allocators.Allocator("jemalloc", release=purge, release_name="jemalloc arena.4096.purge")
    musl = _allocators.Allocator("musl", no_release="musl: no malloc_trim")
    other = _allocators.Allocator("unknown", no_release="unknown (libhoard.so) serves malloc: no release known")
    glibc = _allocators.Allocator("glibc")
    assert (purge, "jemalloc arena.4096.purge", None) == _allocator.platform_release(serving=serving(jemalloc))
    assert (None, None, "musl: no malloc_trim") == _allocator.platform_release(serving=serving(musl))
    assert (None, None, other.no_release) == _allocator.platform_release(serving=serving(other))
    assert "malloc_trim" == _allocator.platform_release(serving=serving(glibc))[1]


def test_unsupported_platform_warns_once_and_stops_trying(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, stderr_events: Reader
) -> None:
    """Where nothing can be released, the policy says why once and turns itself off.

    Simulated: the resolved release function is removed (musl has no malloc_trim), and
    pyarrow hidden (other tests in this process may have imported it).
    """
    monkeypatch.delitem(sys.modules, "pyarrow", raising=False)
    _allocator.use_release((None, None, "musl: no malloc_trim"))
    request.addfinalizer(lambda: _allocator.use_release(None))  # the real one again for later tests
    result = udfmem.trim()
    assert (False, "musl: no malloc_trim; pyarrow not imported") == (result.supported, result.reason)
    Udf = identity_udf(every=2, trim=1)
    for i in range(6):
        Udf()(i)
    view = udfmem.testing.state_of(Udf)
    assert (None, "off") == (view.next_trim, view.trim_mode)  # no trim due: no slow path per call
    events = stderr_events()
    assert [] == [e for e in events if e["event"] == "udfmem.trim"]
    assert ["trim-unsupported"] == [e["what"] for e in events if e["event"] == "udfmem.warning"]


def test_arena_max_applied_early_caps_the_arenas() -> None:
    """arena_max=2 applied at first use, before worker threads exist, caps malloc's arenas."""
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {BENCH!r})
        import udfmem
        from udfmem.probes import allocator as _allocator
        from reproducers import thread_churn
        @udfmem.tracked(every=1, arena_max=2)
        class Udf:
            def __call__(self, x):
                return len(thread_churn(threads=8, mib_per_thread=8))
        Udf()(0)
        print("ARENAS", _allocator.arena_count())
        """
    )
    assert 2 >= int(proc.stdout.split("ARENAS")[1])
    assert [] == parse_events(proc.stderr, "udfmem.warning")


def test_arena_max_too_late_warns() -> None:
    """arena_max applied after 8 threads made their arenas: a warning says it is too late."""
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {BENCH!r})
        import udfmem
        from reproducers import thread_churn
        kept = thread_churn(threads=8, mib_per_thread=8)
        @udfmem.tracked(every=1, arena_max=2)
        class Udf:
            def __call__(self, x):
                return x
        Udf()(0)
        """
    )
    (warning,) = parse_events(proc.stderr, "udfmem.warning")
    assert "arena-max" == warning["what"]
    assert "too late" in warning["message"]


def test_worker_env_arena_max_works_at_process_start() -> None:
    """worker_env(arena_max=2) sets glibc's MALLOC_ARENA_MAX too: a process started with it stays at 2 arenas."""
    env = udfmem.worker_env(arena_max=2)
    assert {"UDFMEM_ARENA_MAX": "2", "MALLOC_ARENA_MAX": "2"} == env
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {BENCH!r})
        from udfmem.probes import allocator as _allocator
        from reproducers import thread_churn
        kept = thread_churn(threads=8, mib_per_thread=8)
        print("ARENAS", _allocator.arena_count())
        """,
        env={**env, "PATH": os.environ.get("PATH", "")},
    )
    assert 2 >= int(proc.stdout.split("ARENAS")[1])


def test_arena_count_sees_thread_arenas() -> None:
    """arena_count() reads glibc's malloc_info: 8 allocating threads create more arenas."""
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {BENCH!r})
        from udfmem.probes import allocator as _allocator
        from reproducers import thread_churn
        before = _allocator.arena_count()
        kept = thread_churn(threads=8, mib_per_thread=8)
        print("ARENAS", before, _allocator.arena_count())
        """
    )
    before, after = map(int, proc.stdout.split("ARENAS")[1].split())
    assert 1 == before
    assert after >= 3
