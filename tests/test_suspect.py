"""The online detector: ``udfmem.suspect`` names the pattern, early, and what grows; silent when healthy."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import Events, parse_events, run_python

from udfmem.commands.diagnose import load
from udfmem.probes import inspect as _inspect

pytestmark = pytest.mark.timeout(1800)  # a test runs up to two shapes, each within SUBPROCESS_S
SUBPROCESS_S = 900

SHAPES = (Path(__file__).resolve().parent.parent / "benchmarks" / "suspect_shapes.py").read_text()
"""The ``Embed`` UDF in one shape (bench_suspect.py's runs): argv SHAPE SIZE CALLS SEED [OPTION=VALUE...]."""
MIB = 1 << 20
SEED = 18  # the noisy shape's transients are the same sequence in every run


_RUNS: dict[tuple[str, int, tuple[str, ...], int], str] = {}


def run(
    shape: str, calls: int = 160, env: dict[str, str] | None = None, options: tuple[str, ...] = (), size: int = MIB
) -> str:
    """Run the shape (``size`` bytes per call) in a fresh interpreter; its stderr (without ``env``: shared by tests).

    ``options`` go to ``@udfmem.tracked`` (``"suspect=False"``) or the script (``"stop=100"``).
    The limit is generous: 400 calls of the noisy shape fault in ~40 GiB of transients,
    which takes minutes on a loaded machine.
    """
    key = (shape, calls, options, size)
    if env is None and key in _RUNS:
        return _RUNS[key]
    code = f"import sys; sys.argv = ['x', *{[shape, str(size), str(calls), str(SEED), *options]!r}]\n" + SHAPES
    stderr = run_python(code, env=env, timeout=SUBPROCESS_S).stderr
    if env is None:
        _RUNS[key] = stderr
    return stderr


def suspects(stderr: str) -> Events:
    """The ``udfmem.suspect`` events in ``stderr``."""
    return parse_events(stderr, "udfmem.suspect")


def said_at(stderr: str) -> list[int]:
    """The call of the snapshot each ``udfmem.suspect`` event followed: when it was said."""
    out, call = [], 0
    for event in parse_events(stderr):
        if event["event"] == "udfmem.snapshot":
            call = event["call"]
        elif event["event"] == "udfmem.suspect":
            out.append(call)
    return out


@pytest.mark.parametrize(
    ("shape", "named"),
    [("cache", "self.cache"), ("batches", "self.batches"), ("closures", "self.callbacks"), ("module", "module KEEP")],
)
def test_a_heap_leak_is_flagged_by_call_96_naming_what_grows(shape: str, named: str) -> None:
    """1 MiB per call at every=8, in each common shape: heap-leak said by call 96, the right attribute named first.

    ``since_call`` is where the growth began (the rule's onset): by then, too.
    """
    stderr = run(shape)
    first = suspects(stderr)[0]
    assert "heap-leak" == first["pattern"]
    assert said_at(stderr)[0] <= 96
    assert first["since_call"] <= 96
    assert first["growing"].startswith(f"{named} +")
    assert first["slope_mb_per_100_calls"] == pytest.approx(100, rel=0.2)


def test_small_objects_are_a_heap_leak_through_py_blocks() -> None:
    """20,000 small strings per call (pymalloc arenas, which malloc's figures miss): heap-leak, self.batches named."""
    first = suspects(run("small", calls=240))[0]
    assert ("heap-leak", "self.batches") == (first["pattern"], first["growing"].split(" +")[0])


def test_an_arrow_leak_is_flagged_as_such() -> None:
    """1 MiB of Arrow arrays kept per call: arrow-leak said by call 96."""
    stderr = run("arrow")
    first = suspects(stderr)[0]
    assert ("arrow-leak", True) == (first["pattern"], said_at(stderr)[0] <= 96)


@pytest.mark.parametrize("shape", ["noisy", "bounded"])
def test_healthy_runs_say_nothing(shape: str) -> None:
    """0-200 MiB transients per call, or a cache that fills 48 MiB and stops: not one suspect event in 400 calls."""
    assert [] == suspects(run(shape, calls=400))


def test_a_leak_that_stops_is_said_to_be_over_once() -> None:
    """256 KiB per call for 200 calls, then nothing for 600: heap-leak, then pattern=healthy once."""
    patterns = [e["pattern"] for e in suspects(run("stops", calls=800))]
    assert "heap-leak" == patterns[0]
    assert ["healthy"] == [p for p in patterns if p == "healthy"]
    assert "healthy" == patterns[-1]


def test_online_and_offline_verdicts_agree(tmp_path: Path) -> None:
    """The last suspect pattern of a leaking run is diagnose's verdict on its log; a healthy run: both healthy."""
    for shape, expected in (("cache", "heap-leak"), ("noisy", "healthy")):
        stderr = run(shape, calls=400)
        log = tmp_path / f"{shape}.log"
        log.write_text(stderr)
        (worker,) = load([str(log)]).workers
        said = [e["pattern"] for e in suspects(stderr)]
        assert expected == worker.verdict.pattern
        assert expected == (said[-1] if said else "healthy")


def test_switched_off_by_env_or_decorator() -> None:
    """UDFMEM_SUSPECT=0 in the worker's environment: the leak runs without a suspect event."""
    assert [] == suspects(run("cache", env={"UDFMEM_SUSPECT": "0"}))
    stderr = run("cache", options=("suspect=False",))
    assert [] == suspects(stderr)
    assert parse_events(stderr, "udfmem.snapshot")


class Hostile(list[Any]):
    """A container whose every method but __len__ raises (and counts calls)."""

    calls: ClassVar[list[str]] = []

    def __iter__(self) -> Any:
        Hostile.calls.append("__iter__")
        raise RuntimeError("no iterating me")

    def __getitem__(self, i: Any) -> Any:
        Hostile.calls.append("__getitem__")
        raise RuntimeError("no indexing me")

    def __sizeof__(self) -> int:
        Hostile.calls.append("__sizeof__")
        raise RuntimeError("no sizing me")


def test_the_inspection_calls_only_len_keeps_no_reference_and_stops_at_its_budget() -> None:
    """A hostile container is measured by len alone; the object dies when dropped; a zero budget measures nothing."""

    class Udf:
        def __init__(self) -> None:
            self.cache = Hostile([1, 2, 3])
            self.data = bytearray(1000)

    udf = Udf()
    measures = _inspect.inspect(udf, None, budget_s=60.0)  # a budget the machine's load cannot spend
    assert 3 == measures["self.cache"][0]  # bytes: list's own __sizeof__ and sampled items, none of Hostile's
    assert (None, 1000) == measures["self.data"]
    assert [] == Hostile.calls
    ref = weakref.ref(udf)
    del udf
    gc.collect()
    assert ref() is None
    assert {} == _inspect.inspect(Udf(), None, budget_s=0.0)


def test_growing_names_the_largest_growth_first() -> None:
    """Two inspections: the attribute that grew most bytes is named first, with items and bytes."""
    before = {"self.cache": (10, 10 * 1024 * 1024), "self.small": (5, 500), "module KEEP": (1, 100)}
    now = {"self.cache": (20, 20 * 1024 * 1024), "self.small": (6, 600), "module KEEP": (1, 100)}
    assert "self.cache +10 items (~10.0 MiB); self.small +1 items (~100 B)" == _inspect.growing(before, now)
    assert _inspect.growing(now, now) is None
