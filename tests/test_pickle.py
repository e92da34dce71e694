"""Tracked classes, instances and functions pickle with every protocol and with cloudpickle."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
from conftest import Events, parse_events, run_python

from udfmem import tracked

sys.path.insert(0, str(Path(__file__).parent))
from udfs.simple import Doubler, Mixed, triple

Reader = Callable[..., Events]
PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickle_every_protocol_before_and_after_calls(protocol: int, stderr_events: Reader) -> None:
    """Class, instance and function round-trip before and after calls, and keep counting."""
    for obj in (Doubler, Mixed, triple):
        assert pickle.loads(pickle.dumps(obj, protocol)) is obj
    inst = Doubler(3)
    copy = pickle.loads(pickle.dumps(inst, protocol))
    assert 6 == copy(2)
    inst(1)
    copy = pickle.loads(pickle.dumps(inst, protocol))
    assert 3 * 7 == copy(7)
    assert {"factor": 3} == copy.__dict__  # nothing of udfmem's sits on the instance
    mixed = pickle.loads(pickle.dumps(Mixed(), protocol))
    assert 2 == mixed(1)


def test_cloudpickle_by_value_keeps_one_counter_per_process(stderr_events: Reader) -> None:
    """A local class shipped by value (as engines do) counts into the same per-process state."""

    @tracked(every=3)
    class Local:
        def __call__(self, x: int) -> int:
            return x

    Local()(0)
    shipped = cloudpickle.loads(cloudpickle.dumps(Local))
    shipped()(1)
    cloudpickle.loads(cloudpickle.dumps(Local()))(2)
    assert [3] == [s["call"] for s in stderr_events("udfmem.snapshot")]


def test_cloudpickle_to_another_process_counts_there(tmp_path: Path) -> None:
    """A class pickled by value after calls here starts counting at 1 in the receiving process."""

    @tracked(every=2)
    class Shipped:
        def setup(self) -> None:
            self.ready = True

        def __call__(self, x: int) -> int:
            return x + 100

    for i in range(5):
        Shipped()(i)
    inst = Shipped()
    inst.setup()
    blob = tmp_path / "udf.pkl"
    blob.write_bytes(cloudpickle.dumps(inst))
    proc = run_python(
        f"""
        import cloudpickle, os
        udf = cloudpickle.loads(open({str(blob)!r}, "rb").read())
        print(sum(udf(i) for i in range(4)), os.getpid())
        """
    )
    total, pid = map(int, proc.stdout.split())
    assert 406 == total
    snaps = parse_events(proc.stderr, "udfmem.snapshot")
    assert [(pid, "Shipped", 2), (pid, "Shipped", 4)] == [(s["pid"], s["udf"], s["call"]) for s in snaps]
