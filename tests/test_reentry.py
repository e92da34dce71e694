"""Re-entry and interrupts: a finalizer or a signal handler inside udfmem never hangs a worker, across UDFs.

The hanging scenarios run in a subprocess with a timeout, so that a regression fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from conftest import parse_events, run_python

from udfmem import _reentry

# A bomb in a reference cycle re-arms itself from its __del__: every collection finds one,
# so with a gen0 threshold of 1 a collection (and the bomb's finalizer) runs at every
# allocation of a tracked object, including those inside another UDF's snapshot (the
# kernel-peak read under the window lock, the emitter, the probes).
BOMB = """
import gc, json, sys
import udfmem
import udfmem.testing

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)
def gen(n):
    for i in range(n):
        yield i

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)
class B:
    def __call__(self, x):
        return x

@udfmem.tracked(every=1000, every_s=0, trim="off", suspect=False)
class C:
    def __call__(self, x):
        return x

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)
class A:
    def __call__(self, x):
        return x

armed = [True]
fired = [0]
b = B()

class Bomb:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it
        {setup}

    def __del__(self):
        fired[0] += 1
        {on_del}
        if armed[0]:
            Bomb()  # the next collection finds another

a = A()
a(0)
b(0)
Bomb()
gc.set_threshold(1, 1, 1)
for i in range(1, {calls} + 1):
    a(i)
armed[0] = False
gc.set_threshold(700, 10, 10)
gc.collect()
print("RESULT " + json.dumps({{"fired": fired[0], "a": udfmem.testing.state_of(A).calls, {extra}}}))
"""


def _bomb(setup: str = "pass", on_del: str = "pass", extra: str = "", calls: int = 300) -> tuple[dict[str, Any], str]:
    """Run the bomb script; its RESULT and its stderr. A hang fails at the subprocess timeout."""
    code = BOMB.format(setup=setup, on_del=on_del, extra=extra, calls=calls)
    proc = run_python(code, timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result, proc.stderr


def test_a_generator_closed_by_the_collector_inside_another_udfs_snapshot_never_hangs() -> None:
    """A started generator UDF abandoned in a cycle, closed by the collector inside another UDF's snapshot.

    The generator's call ends (and counts) there; its snapshot waits for nothing the outer
    snapshot holds (the window-peak lock, the snapshot lock) and is taken once the outer one is done.
    """
    result, stderr = _bomb(
        setup="self.g = gen(3); next(self.g)",  # a started generator UDF call, abandoned with the bomb
        extra='"gen": udfmem.testing.state_of(gen).calls',
    )
    assert 1 + 300 == result["a"]  # a(0), then the loop
    assert result["fired"] >= 300  # the collector ran (and closed generators) inside A's snapshots
    assert result["fired"] == result["gen"]  # every closed generator call counted
    gen_snaps = [e["call"] for e in parse_events(stderr, "udfmem.snapshot") if e["udf"] == "gen"]
    assert result["gen"] == max(gen_snaps)  # its snapshots were taken, up to the last call
    assert [] == parse_events(stderr, "udfmem.warning")


def test_a_del_calling_another_tracked_udf_inside_a_snapshot_never_hangs() -> None:
    """A ``__del__`` run by the collector inside A's snapshot calls B: B's call counts; its snapshot comes after."""
    result, stderr = _bomb(on_del="b(1)", extra='"b": udfmem.testing.state_of(B).calls')
    assert 1 + 300 == result["a"]  # a(0), then the loop
    assert 1 + result["fired"] == result["b"]
    b_snaps = [e["call"] for e in parse_events(stderr, "udfmem.snapshot") if e["udf"] == "B"]
    assert result["b"] == max(b_snaps)
    assert [] == parse_events(stderr, "udfmem.warning")


def test_a_udf_object_released_inside_another_udfs_snapshot_gets_its_final_snapshot() -> None:
    """C objects in cycles, released by the collector inside A's snapshots: each final snapshot comes, deferred.

    Each bomb holds a C object (every=1000) that made one call, so a final snapshot is due
    at its release; inside A's snapshot it must neither wait for the locks A holds nor be lost.
    """
    result, stderr = _bomb(
        setup="self.c = C(); self.c(1)",
        extra='"c": udfmem.testing.state_of(C).calls',
        calls=100,
    )
    assert 1 + 100 == result["a"]
    finals = [e["call"] for e in parse_events(stderr, "udfmem.snapshot") if e["udf"] == "C" and e.get("final")]
    assert result["c"] == max(finals)  # the last release's final snapshot covers every call
    assert [] == parse_events(stderr, "udfmem.warning")


# Sweeps every point of udfmem's snapshot path where CPython 3.11 can deliver a signal
# (the instruction after a call returns, a function's first instruction, a backward jump)
# and raises KeyboardInterrupt there, as a Ctrl-C landing there would, once per point.
# After the interrupts: ten more calls (every=1) under capture, and whether another thread
# can take the snapshot lock at once.
AFTER = """
with udfmem.testing.capture() as events:
    for i in range(10):
        u(i)
got = []
lock = state.snapshot_lock
probe = threading.Thread(target=lambda: got.append(lock.acquire(timeout=1)) or lock.release())
probe.start()
probe.join()
"""

SWEEP = """
import dis, json, sys, threading
import udfmem
import udfmem.testing
from udfmem.runtime.decorator import find_state
from udfmem.emit import emitter as _emit

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)
class U:
    def __call__(self, x):
        return x

u = U()
u(0)
state = find_state(U)
FILES = ("runtime/state.py", "runtime/binding.py", "_reentry.py")
OPS = {{}}  # code -> {{offset: opname}}
SIGNAL_AFTER = {{"CALL", "JUMP_BACKWARD"}}

def ops(code):
    table = OPS.get(code)
    if table is None:
        table = OPS[code] = {{i.offset: i.opname for i in dis.get_instructions(code)}}
    return table

point = [0, 0]  # [points seen, the one to interrupt at]

def local(frame, event, arg):
    if event == "opcode":
        table = ops(frame.f_code)
        here = table.get(frame.f_lasti)
        last = getattr(frame, "_prev", None)
        deliverable = here == "RESUME" or LAST.get(id(frame)) in SIGNAL_AFTER
        LAST[id(frame)] = here
        if deliverable:
            point[0] += 1
            if point[0] == point[1]:
                raise KeyboardInterrupt
    return local

LAST = {{}}

def tracer(frame, event, arg):
    if event == "call" and frame.f_code.co_filename.endswith(FILES) and "udfmem" in frame.f_code.co_filename:
        frame.f_trace_opcodes = True
        return local
    return None

interrupts = 0
k = 0
while True:
    k += 1
    point[:] = [0, k]
    LAST.clear()
    sys.settrace(tracer)
    try:
        u(k)
        state.final()
    except KeyboardInterrupt:
        interrupts += 1
    finally:
        sys.settrace(None)
    if point[0] < k:
        break  # past the last point: the sweep is complete
{after}print("RESULT " + json.dumps({{
    "points": k - 1,
    "interrupts": interrupts,
    "snapshots": sum(e["event"] == "udfmem.snapshot" for e in events),
    "lock_free": got == [True],
    "pending": udfmem.testing.state_of(U).pending,
}}))
"""


def test_an_interrupt_at_any_point_of_a_snapshot_never_leaves_it_stuck() -> None:
    """KeyboardInterrupt raised at every signal-deliverable point of the snapshot path, once each, caught.

    Afterwards the snapshot lock is free, every call snapshots again and nothing pends. The
    interrupt is placed by ``sys.settrace`` at the instructions where CPython runs signal
    handlers (after a call returns, at a function's start, at a backward jump), so each
    point, the one between the lock's acquire and its ``try`` included, is hit for certain.
    """
    proc = run_python(SWEEP.format(after=AFTER), timeout=300)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["points"] >= 20  # the sweep covered the path (27 points on CPython 3.11)
    assert result["points"] == result["interrupts"]  # each point was interrupted (and caught)
    assert (True, 10, 0) == (result["lock_free"], result["snapshots"], result["pending"])


STORM = """
import json, signal, threading
import udfmem
import udfmem.testing
from udfmem.runtime.decorator import find_state
from udfmem.emit import emitter as _emit

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)
class U:
    def __call__(self, x):
        return x

delivered = [0]
most_pending = [0]

def interrupt(signum, frame):
    delivered[0] += 1
    # never into this script's own top level: its loop's jumps are outside every try, and an
    # interrupt there would end the script instead of testing udfmem
    if delivered[0] <= {interrupts} and frame is not None and frame.f_code.co_name != "<module>":
        raise KeyboardInterrupt

def storm():
    while delivered[0] < {interrupts}:
        try:
            for i in range(100):
                u(i)
            most_pending[0] = max(most_pending[0], udfmem.testing.state_of(U).pending)
        except KeyboardInterrupt:
            pass

u = U()
u(0)
state = find_state(U)
signal.signal(signal.SIGALRM, interrupt)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
while delivered[0] < {interrupts}:
    try:  # an interrupt may land in the handler's own loop: catch it here and go on
        try:
            storm()
        except KeyboardInterrupt:
            pass
    except KeyboardInterrupt:
        pass
signal.setitimer(signal.ITIMER_REAL, 0)
{after}print("RESULT " + json.dumps({{
    "snapshots": sum(e["event"] == "udfmem.snapshot" for e in events),
    "lock_free": got == [True],
    "most_pending": max(most_pending[0], udfmem.testing.state_of(U).pending),
}}))
"""


def test_a_storm_of_real_interrupts_around_tracked_calls_leaves_snapshots_working() -> None:
    """Real SIGALRMs every 0.2 ms raise KeyboardInterrupt around a loop of tracked calls, 3,000 times, caught.

    As Ctrl-C in a notebook: afterwards the lock is free, calls snapshot, and the pending
    structure never held more than one entry (one thread).
    """
    proc = run_python(STORM.format(interrupts=3000, after=AFTER), timeout=300)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert (True, 10) == (result["lock_free"], result["snapshots"])
    assert result["most_pending"] <= 1


UNPICKLE_BOMB = """
import gc, json, pickle
import udfmem
import udfmem.testing
from udfmem.runtime.decorator import find_state

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)
class Embed:
    def __call__(self, x):
        return x

# what a class pickled by value (cloudpickle, in every engine) carries: its state pickles
# to a registry lookup by key, run again on every load
blob = pickle.dumps(find_state(Embed))
armed = [True]
fired = [0]

class Bomb:
    def __init__(self):
        self.me = self

    def __del__(self):
        fired[0] += 1
        pickle.loads(blob)  # the registry again, from inside a collection
        if armed[0]:
            Bomb()

Bomb()
gc.set_threshold(1, 1, 1)
for _ in range(200):
    pickle.loads(blob)
armed[0] = False
gc.set_threshold(700, 10, 10)
gc.collect()
print("RESULT " + json.dumps({"fired": fired[0]}))
"""


def test_unpickling_a_udf_from_a_finalizer_inside_a_registry_lookup_never_hangs() -> None:
    """A ``__del__`` that unpickles a tracked UDF while the registry looks a state up on the same thread finishes."""
    proc = run_python(UNPICKLE_BOMB, timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    assert 0 < json.loads(line[len("RESULT ") :])["fired"]


DECORATE_BOMB = """
import gc, json
import udfmem
import udfmem.testing
from udfmem.runtime.decorator import find_state

fired = [0]
armed = [True]
made = []

class Bomb:
    def __init__(self):
        self.me = self

    def __del__(self):
        fired[0] += 1
        made.append(udfmem.tracked(name=f"inner{{fired[0]}}", every_s=0, trim="off", suspect=False)(lambda x: x))
        if armed[0] and fired[0] < {fires}:
            Bomb()

Bomb()
gc.set_threshold(1, 1, 1)
for i in range({names}):  # more names than the default emitters kept: each new one evicts the oldest
    made.append(udfmem.tracked(name=f"outer{{i}}", every_s=0, trim="off", suspect=False)(lambda x: x))
armed[0] = False
gc.set_threshold(700, 10, 10)
gc.collect()
for f in made:
    f(1)
states = {{id(find_state(f)) for f in made}}
print("RESULT " + json.dumps({{"fired": fired[0], "made": len(made), "states": len(states),
                               "calls": sorted({{find_state(f).calls() for f in made}})}}))
"""


def test_decorating_from_a_finalizer_inside_a_decoration_neither_raises_nor_hangs() -> None:
    """A ``__del__`` that decorates a UDF, run by the collector inside another decoration, leaves both working.

    Each decoration runs the registry and makes a default emitter (the oldest evicted past
    64 names); the collector may run inside either, on the same thread. Every decorated
    function gets a state of its own, and each counts its one call.
    """
    proc = run_python(DECORATE_BOMB.format(names=100, fires=2000), env={"UDFMEM_LOG_FORMAT": "json"}, timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert 0 < result["fired"]
    assert result["made"] == result["states"]
    assert [1] == result["calls"]


def test_every_deferred_work_runs_once_however_many_were_deferred() -> None:
    """The most works one thread may defer, each entering a section of its own, all run, once, in order.

    Deferred works run one after the other when the thread leaves its section, never one
    inside the next (which would nest a call per work, past the interpreter's recursion
    limit: the works hit there would be lost). A finalizer storm that releases objects of
    hundreds of runtime-defined UDF classes inside one snapshot defers that many finals.
    """
    ran: list[int] = []

    def work(i: int) -> Callable[[], None]:
        def run() -> None:
            _reentry.section(ran.append, i)  # what a final snapshot does: its work in a section of its own

        return run

    works = [work(i) for i in range(_reentry.MAX_DEFERRED)]

    def defer_all() -> None:
        for w in works:
            _reentry.defer(w)

    _reentry.section(defer_all)
    for _ in range(len(works)):  # each later section's end runs more of what is left
        if not _reentry.here.deferred:
            break
        _reentry.section(lambda: None)
    assert list(range(len(works))) == ran


FORK_WHILE_HELD = """
import json, os, threading, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: on purpose
import udfmem
import udfmem.testing
from udfmem.runtime.decorator import find_state

@udfmem.tracked(every=1, every_s=0, trim="off", suspect=False)  # a program's order: the decorator first
class U:
    def __call__(self, x):
        return x

from udfmem.emit import emitter as _emit

u = U()
u(1)
held, done = threading.Event(), threading.Event()

def hold():
    with _emit.{lock}:  # another thread inside udfmem's emitter bookkeeping at the instant of the fork
        held.set()
        done.wait()

t = threading.Thread(target=hold)
t.start()
held.wait()
pid = os.fork()
if pid == 0:
    u(2)
    os._exit(0)
done.set()
t.join()
status, deadline = None, time.monotonic() + 120
while status is None and time.monotonic() < deadline:
    got, st = os.waitpid(pid, os.WNOHANG)
    status = st if got else None
    time.sleep(0.05)
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print("RESULT " + json.dumps({{"exit": None if status is None else os.waitstatus_to_exitcode(status)}}))
"""


def test_a_fork_while_another_thread_makes_an_emitter_never_hangs_the_child() -> None:
    """A child forked while another thread is inside ``_emit.default()`` runs its tracked calls and exits.

    The fork hook that renews the UDF states (each asks ``_emit.default()`` for an emitter)
    must run after the one that renews the emitter module's locks. Holding the lock from a
    test thread stands in for a thread caught inside ``default()`` at the instant of the
    fork, which cannot be timed otherwise.
    """
    proc = run_python(FORK_WHILE_HELD.format(lock="_default_lock"), timeout=300)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    assert {"exit": 0} == json.loads(line[len("RESULT ") :])
