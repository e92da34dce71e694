"""The runtime core: a small state, a per-process binding, one lifecycle list, public test hooks."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Events, identity_udf, run_python

import udfmem
from udfmem import testing

PACKAGE = Path(udfmem.__file__).parent
Reader = Callable[..., Events]


def test_state_of_shows_calls_binding_and_trim_policy() -> None:
    """``testing.state_of`` finds a class's state from the class, an instance or a wrapper, and shows it read-only."""
    Udf = identity_udf("Shown", every=4, trim=8)
    udf = Udf()
    before = testing.state_of(Udf)
    for i in range(5):
        udf(i)
    after = testing.state_of(udf)
    assert (0, False) == (before.calls, before.bound)
    assert (5, True, True, 8, 8) == (after.calls, after.bound, after.enabled, after.trim_mode, after.next_trim)
    assert (False, 0) == (after.snapshot_running, after.pending)
    assert after.key.endswith("Shown") and "Shown" == after.name


def test_state_of_refuses_what_udfmem_does_not_track() -> None:
    """A class udfmem does not track is a clear TypeError, not a wrong answer."""

    class Plain:
        """Not tracked."""

        def __call__(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match="not tracked by udfmem"):
        testing.state_of(Plain)


def test_reset_starts_every_udf_afresh_and_says_warnings_again(
    monkeypatch: pytest.MonkeyPatch, stderr_events: Reader
) -> None:
    """After ``testing.reset()`` counts start at 0 and a once-per-process warning is said once more.

    The warning is real: a bad ``UDFMEM_EVERY`` read at bind.
    """
    monkeypatch.setenv("UDFMEM_EVERY", "many")
    Udf = identity_udf("Again", every=2)
    udf = Udf()
    udf(1)
    udf(2)
    first = [w["what"] for w in stderr_events("udfmem.warning")]
    testing.reset()
    assert 0 == testing.state_of(Udf).calls
    udf(3)
    second = [w["what"] for w in stderr_events("udfmem.warning")]
    assert (["bad-env"], ["bad-env"]) == (first, second)
    assert (1, True) == (testing.state_of(Udf).calls, testing.state_of(Udf).bound)


def test_capture_sees_each_event_as_its_line_would_read() -> None:
    """``testing.capture()`` collects the events of the block as flat field dicts (head, ts, own fields)."""
    Udf = identity_udf("Captured", every=2, trim="off")
    udf = Udf()
    with testing.capture() as events:
        udf(1)
        udf(2)
    snapshots = [e for e in events if e["event"] == "udfmem.snapshot"]
    assert [2] == [e["call"] for e in snapshots]
    assert {"udf", "pid", "host", "worker", "ts", "rss_mb"} <= set(snapshots[0])


def test_a_fork_child_forgets_in_layer_order_whatever_the_import_order() -> None:
    """Per-process forgetting runs probes, emitter, policies, runtime in that order in a fork child.

    The runtime's states ask the emitter for a fresh default emitter, so the emitter's locks
    must be renewed first; the order comes from the list, not from which module was imported first.
    """
    proc = run_python(
        """
        import json, os
        from udfmem import _process
        from udfmem.runtime import state  # the runtime first, the rest after it
        from udfmem.emit import emitter

        seen = []
        _process.on_new_process(lambda: seen.append("runtime-late"), _process.RUNTIME + 5)
        _process.on_new_process(lambda: seen.append("probes-early"), _process.PROBES - 5)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, json.dumps(seen).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print("RESULT " + os.read(r, 4096).decode())
        """
    )
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert ["probes-early", "runtime-late"] == result


def test_the_binding_and_the_layers_below_know_nothing_of_the_state() -> None:
    """Data flows one way: the binding does not import the state; probes and events import no runtime, emit or policy.

    Read from the source (imports), so a new arrow back up fails here, not in a review.
    """

    def imported(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                package = path.parent.relative_to(PACKAGE).parts
                base = list(package[: len(package) - (node.level - 1)])
                out.add(".".join([*base, *(node.module.split(".") if node.module else [])]))
        return out

    assert not {m for m in imported(PACKAGE / "runtime" / "binding.py") if m.startswith("runtime.state")}
    for layer, banned in (("probes", ("runtime", "emit", "policies")), ("events", ("runtime", "emit", "policies"))):
        for path in (PACKAGE / layer).glob("*.py"):
            assert not {m for m in imported(path) if m.split(".")[0] in banned}, path


def test_a_disabled_udf_never_takes_the_slow_path_after_its_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """``UDFMEM_DISABLE=1``: the first call binds (and finds it disabled); every later call is the counter alone."""
    import sys

    from udfmem.runtime.decorator import find_state

    monkeypatch.setenv("UDFMEM_DISABLE", "1")
    Udf = identity_udf("Off", every=4)
    udf = Udf()
    for i in range(20):
        udf(i)
    state = find_state(Udf)
    assert (20, sys.maxsize, False) == (state.calls(), state.due_at, testing.state_of(Udf).enabled)


def test_closing_a_window_never_waits_even_when_its_lock_is_held_forever() -> None:
    """A window closed while another thread holds the windows' lock (in a fork child: a thread that is gone) is queued.

    The kernel counter is a stand-in whose peak read blocks inside ``take`` (holding the
    lock) until released: the real one never blocks this long.
    """
    import threading

    from udfmem.probes.windows import PeakWindows

    inside, release = threading.Event(), threading.Event()

    class Kernel:
        """A kernel counter whose peak read waits for the test."""

        def peak(self) -> int | None:
            inside.set()
            release.wait(30)
            return 100

        def reset_peak(self) -> bool:
            return True

    windows = PeakWindows(Kernel())
    first, second = windows.open(), windows.open()
    holder = threading.Thread(target=windows.take, args=(first,))
    holder.start()
    assert inside.wait(30)
    closer = threading.Thread(target=windows.close, args=(second,))
    closer.start()
    closer.join(5)
    closed_without_waiting = not closer.is_alive()
    release.set()
    holder.join(30)
    windows.take(first)  # the queued close is applied by the next take or open
    assert (True, 1) == (closed_without_waiting, len(windows))
