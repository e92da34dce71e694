"""An idle worker's timer costs ~nothing: the stacks are walked only when an idle decision is due."""

from __future__ import annotations

import json

from conftest import run_python

IDLE = """
import json, sys, time
import udfmem

walks = []
real = sys._current_frames

def counted():  # every walk of the threads' stacks goes through here
    walks.append(time.monotonic())
    return real()

sys._current_frames = counted

@udfmem.tracked(every=1000, every_s=0, trim="auto", suspect=False)
class U:
    def __call__(self, x):
        return x

def wait_for_walks(n):
    deadline = time.monotonic() + 120  # the outcome, not the timer's punctuality
    while len(walks) < n and time.monotonic() < deadline:
        time.sleep(0.05)

u = U()
for i in range(5):
    u(i)
wait_for_walks(1)  # the idle decision: one walk, IDLE_S after the last call
decided = len(walks)
time.sleep({idle_s})  # idle: nothing to decide until calls resume
idle = len(walks) - decided
for i in range(5):
    u(i)  # calls resume: the next idle period gets its own decision
wait_for_walks(decided + idle + 1)
print("RESULT " + json.dumps({{"decided": decided, "idle": idle, "after_resume": len(walks) - decided - idle}}))
"""


def test_an_idle_worker_walks_no_stacks_once_its_idle_decision_is_made() -> None:
    """trim="auto", idle for 6 s after the idle decision: no stack walk at all; calls resuming bring one more.

    Walks are counted by wrapping ``sys._current_frames`` (the timer's only way to see the
    stacks). Before the back-off the timer walked every thread's stack once a second for
    as long as the class lived (6 walks here); machine load can only lower that count.
    """
    proc = run_python(IDLE.format(idle_s=6), timeout=300)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert 1 <= result["decided"]
    assert 0 == result["idle"]
    assert 1 <= result["after_resume"]
