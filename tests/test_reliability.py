"""udfmem never changes what the caller sees: users' decorators stay, deep stacks give way."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import identity_udf, parse_events, run_python

import udfmem.testing
from udfmem import TrackedUDF, tracked


def times10(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A user's decorator made with functools.wraps (which copies udfmem's marker attribute)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) * 10

    return wrapper


def test_a_users_decorator_around_an_inherited_tracked_method_is_kept() -> None:
    """A TrackedUDF subclass wrapping the inherited __call__ with times10 returns 20, not 2."""

    class Base(TrackedUDF):
        def __call__(self, x: int) -> int:
            return x

    class Child(Base):
        __call__ = times10(Base.__call__)

    assert 20 == Child()(2)
    assert 2 == Base()(2)


def test_tracking_a_decorated_tracked_function_keeps_the_decorator() -> None:
    """tracked(times10(tracked(g))) still multiplies by 10."""

    def g(x: int) -> int:
        return x

    assert 20 == tracked(times10(tracked(g)))(2)
    assert 20 == tracked(times10(g))(2)


def test_near_the_recursion_limit_a_tracked_call_behaves_as_the_untracked_one() -> None:
    """With every=1 at every depth up to one frame short of the limit, results and exceptions are the UDF's own.

    Real recursion in a fresh interpreter: the deepest depth at which the untracked call works is found
    first; the tracked call (one wrapper frame more) must then give the same result, or the UDF's own
    ValueError, at every depth below it.
    """
    proc = run_python(
        """
        import sys
        import udfmem

        def ok(x):
            return x + 1

        def bad(x):
            raise ValueError("the UDF's own")

        tracked_ok = udfmem.tracked(every=1, every_s=0)(ok)
        tracked_bad = udfmem.tracked(every=1, every_s=0)(bad)
        tracked_ok(0), udfmem.trim()  # bind first

        def at_depth(depth, fn):
            if depth:
                return at_depth(depth - 1, fn)
            try:
                return ("ok", fn(1))
            except RecursionError:
                return ("recursion",)
            except ValueError as exc:
                return ("value", str(exc))

        sys.setrecursionlimit(300)
        deepest = 0
        for depth in range(200, 300):
            try:
                if at_depth(depth, ok) == ("ok", 2):
                    deepest = depth
            except RecursionError:
                break
        wrong = []
        for depth in range(150, deepest - 1):  # the wrapper itself takes one frame
            for plain, tracked in ((ok, tracked_ok), (bad, tracked_bad)):
                try:
                    got, want = at_depth(depth, tracked), at_depth(depth, plain)
                except RecursionError:
                    continue  # the test's own frames hit the limit: not udfmem's
                if got != want:
                    wrong.append((depth, plain.__name__, got, want))
        print("DEEPEST", deepest, "WRONG", wrong)
        """
    )
    deepest = int(proc.stdout.split("DEEPEST")[1].split()[0])
    assert deepest > 150
    assert "WRONG []" in proc.stdout


def test_a_planted_link_is_never_written_through(tmp_path: Path) -> None:
    """Links planted at the predictable JSON-lines and memray sidecar names: targets untouched, one warning each."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    logs, prof = tmp_path / "logs", tmp_path / "prof"
    logs.mkdir()
    prof.mkdir()
    proc = run_python(
        f"""
        import os, socket
        import udfmem
        pid, host = os.getpid(), socket.gethostname()
        os.symlink({str(target)!r}, os.path.join({str(logs)!r}, f"udfmem-{{host}}-{{pid}}.jsonl"))
        os.symlink({str(target)!r}, os.path.join({str(prof)!r}, f"memray-Udf-{{pid}}-1.bin.json"))
        Udf = udfmem.tracked(every=1)(type("Udf", (), {{"__call__": lambda self, x: x + 1}}))
        print("RESULT", [Udf()(i) for i in range(3)])
        """,
        env={"UDFMEM_LOG_DIR": str(logs), "UDFMEM_MEMRAY_DIR": str(prof)},
    )
    assert "RESULT [1, 2, 3]" in proc.stdout
    assert "keep me\n" == target.read_text()
    warnings = parse_events(proc.stderr, "udfmem.warning")
    assert ["log-dir-failed", "output-refused"] == sorted(w["what"] for w in warnings)
    assert 1 == len(list(prof.glob("memray-Udf-*.bin")))  # the profile itself is written


def test_reused_descriptor_numbers_are_never_written_to(tmp_path: Path) -> None:
    """The user closes every fd udfmem kept and opens files of their own: theirs stay untouched, udfmem reopens."""
    logs = tmp_path / "logs"
    proc = run_python(
        f"""
        import os
        import udfmem
        Udf = udfmem.tracked(every=1)(type("Udf", (), {{"__call__": lambda self, x: x + 1}}))
        Udf()(0)  # udfmem opens statm, clear_refs and the JSON-lines file
        os.closerange(3, 256)
        mine = [os.open(os.path.join({str(tmp_path)!r}, f"user-{{i}}.csv"), os.O_RDWR | os.O_CREAT) for i in range(8)]
        for fd in mine:
            os.write(fd, b"a,b\\n1,2\\n")
        print("RESULT", [Udf()(i) for i in range(1, 4)])
        for fd in mine:
            os.close(fd)
        """,
        env={"UDFMEM_LOG_DIR": str(logs)},
    )
    assert "RESULT [2, 3, 4]" in proc.stdout
    assert ["a,b\n1,2\n"] * 8 == [(tmp_path / f"user-{i}.csv").read_text() for i in range(8)]
    snaps = parse_events(proc.stderr, "udfmem.snapshot")
    assert [1, 2, 3, 4] == [s["call"] for s in snaps]
    assert all(s["rss_mb"] > 10 for s in snaps)  # read from statm, not from a user's CSV
    (jsonl,) = logs.glob("*.jsonl")
    assert 4 == sum('"event":"udfmem.snapshot"' in line for line in jsonl.read_text().splitlines())


def test_classes_with_a_c_level_init_are_tracked() -> None:
    """dict, list and Exception subclasses work: their C __init__ is simply not measured."""

    @tracked(every=2)
    class Cache(dict):  # type: ignore[type-arg]
        def __call__(self, x: int) -> int:
            return x + len(self)

    @tracked
    class Failure(Exception):
        def __call__(self, x: int) -> int:
            return x

    assert [2, 3] == [Cache(a=1)(1), Cache(a=1)(2)]
    assert {"a": 1} == dict(Cache(a=1))
    assert 3 == Failure("boom")(3)


def test_an_arena_max_beyond_a_c_int_is_refused() -> None:
    """UDFMEM_ARENA_MAX=2**32 would wrap to mallopt(M_ARENA_MAX, 0): one warning and the default instead."""
    proc = run_python(
        """
        import udfmem
        Udf = udfmem.tracked(every=1)(type("Udf", (), {"__call__": lambda self, x: x}))
        print("RESULT", Udf()(7))
        """,
        env={"UDFMEM_ARENA_MAX": str(2**32)},
    )
    assert "RESULT 7" in proc.stdout
    (warning,) = parse_events(proc.stderr, "udfmem.warning")
    assert ("bad-env", "UDFMEM_ARENA_MAX") == (warning["what"], warning["var"])


def test_a_bad_variable_warns_once_per_process_also_with_worker_env() -> None:
    """A process that runs a UDF and calls worker_env() warns once per bad variable, not twice."""
    proc = run_python(
        """
        import udfmem
        Udf = udfmem.tracked(every=1)(type("Udf", (), {"__call__": lambda self, x: x}))
        Udf()(1)
        print("ENV", udfmem.worker_env())
        """,
        env={"UDFMEM_EVERY": "lots"},
    )
    assert "ENV {}" in proc.stdout
    assert 1 == len(parse_events(proc.stderr, "udfmem.warning"))


def test_report_skips_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO named *.bin in a profile directory is skipped, not read (reading it would hang)."""
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "stuck.bin")
    proc = subprocess.run(
        [sys.executable, "-m", "udfmem", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 2 == proc.returncode  # nothing to report
    assert "no memray .bin files found" in proc.stderr


def test_a_fork_child_of_a_profiled_process_leaves_no_file(tmp_path: Path) -> None:
    """memray cannot follow a fork here: the child runs unprofiled, warns nothing, writes no file."""
    prof = tmp_path / "prof"
    proc = run_python(
        """
        import os
        import udfmem
        Udf = udfmem.tracked(every=1000)(type("Udf", (), {"__call__": lambda self, x: x}))
        udf = Udf()
        udf(1)  # the parent's tracker opens (and stays open while udf lives)
        pid = os.fork()
        if pid == 0:
            udf(2)
            Udf()(3)
            os._exit(0)
        os.waitpid(pid, 0)
        print("RESULT ok")
        """,
        env={"UDFMEM_MEMRAY_DIR": str(prof)},
    )
    assert "RESULT ok" in proc.stdout
    assert 1 == len(list(prof.glob("*.bin")))
    assert [] == parse_events(proc.stderr, "udfmem.warning")


def test_a_finalizer_calling_the_udf_inside_a_snapshot_never_deadlocks() -> None:
    """A real __del__, run by the garbage collector inside udfmem's snapshot, calls the same tracked method.

    The call passes straight through (counted, no wait); the run finishes and every call is counted.
    """
    proc = run_python(
        """
        import gc
        import udfmem
        import udfmem.testing
        from udfmem.runtime.decorator import find_state

        inside = []

        class Boom:
            def __init__(self):
                self.me = self  # a cycle: only the collector frees it

            def __del__(self):
                # is udfmem in the middle of a snapshot on this thread?
                inside.append(udfmem.testing.state_of(Udf).snapshot_running)
                udf(0)

        @udfmem.tracked(every=1, every_s=0, trim="off")
        class Udf:
            def __call__(self, x):
                if x:
                    Boom()  # garbage at once; the next collection runs inside the snapshot of this call
                return x

        udf = Udf()
        state = find_state(Udf)
        gc.set_threshold(1, 1, 1)
        for i in range(1, 300):
            udf(i)
        gc.collect()
        print("RESULT", sum(inside), len(inside), next(state.counter) - 1)
        """,
        timeout=60,
    )
    inside, finalized, calls = map(int, proc.stdout.split("RESULT")[1].split())
    assert inside >= 100  # the path is exercised: finalizers ran inside snapshots
    assert 299 + finalized == calls


def test_a_stderr_without_flush_does_not_cut_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sys.stderr stand-in with write() but no flush(): every snapshot completes (windows stay every calls)."""

    class WriteOnly:
        """A stream some frameworks install: write() only."""

        def __init__(self) -> None:
            self.lines: list[str] = []

        def write(self, text: str) -> int:
            """Keep the text."""
            self.lines.append(text)
            return len(text)

    stream = WriteOnly()
    monkeypatch.setattr(sys, "stderr", stream)
    Udf = identity_udf(every=4, every_s=0)
    with udfmem.testing.capture() as events:
        udf = Udf()
        for i in range(16):
            udf(i)
    snaps = [e for e in events if e["event"] == "udfmem.snapshot"]
    assert [4, 8, 12, 16] == [s["call"] for s in snaps]
    assert [4, 4, 4, 4] == [s["window_calls"] for s in snaps]
    assert 4 == sum("udfmem.snapshot" in line for line in stream.lines)


def test_sample_answers_when_the_cgroup_lookup_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """An odd /proc/self/cgroup must not make udfmem.sample() raise: it returns what it could read.

    Simulated (the cgroup lookup raises): this machine's /proc is well-formed.
    """
    import udfmem
    from udfmem.probes import cgroup as _cgroup
    from udfmem.probes import process as _probes

    def broken(*_: object) -> None:
        raise ValueError("odd cgroup file")

    monkeypatch.setattr(_cgroup, "find", broken)
    _probes.forget()  # the next sample builds its probes afresh
    s = udfmem.sample()
    assert s.rss_mb is not None and s.rss_mb > 10
    assert s.limit_mb is None


def test_runtime_classes_are_forgotten_with_their_states() -> None:
    """3,000 tracked classes defined, called and dropped at runtime leave RECENT states, windows and watches.

    The timer thread holds one state at a time while it visits it, so one more may be alive then.
    """
    proc = run_python(
        """
        import gc, json
        from udfmem import tracked
        from udfmem.probes import process as _probes
        from udfmem.runtime import registry as _registry
        from udfmem.runtime import state as _state
        from udfmem.runtime import timer as _timer

        for i in range(3000):
            cls = tracked(every=1, trim="auto")(type(f"U{i}", (), {"__call__": lambda self, x: x}))
            cls()(i)
            del cls
        gc.collect()
        live = sum(isinstance(o, _state.UDFState) for o in gc.get_objects())
        print(json.dumps({
            "states": live,
            "registry": len(_registry.states()),
            "windows": len(_probes.probes().windows),
            "watched": _timer.timer.watched(),
        }))
        """
    )
    counts = json.loads(proc.stdout)
    assert all(64 <= n <= 65 for n in counts.values()), counts  # 65: the one the timer may be visiting


def test_an_engine_re_unpickling_a_dropped_class_copy_keeps_the_count() -> None:
    """The state of a class copy that was dropped is found again by the next unpickling: calls go on from 9."""
    proc = run_python(
        """
        import gc, pickle
        from udfmem import tracked
        from udfmem.runtime.decorator import find_state

        cls = tracked(every=8)(type("Copy", (), {"__call__": lambda self, x: x}))
        state = find_state(cls)
        blob = pickle.dumps(state)
        udf = cls()
        for i in range(8):
            udf(i)
        del cls, udf, state
        gc.collect()
        again = pickle.loads(blob)
        print(next(again.counter))
        """
    )
    assert "9" == proc.stdout.strip()
