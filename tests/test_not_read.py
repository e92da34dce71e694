"""The fields a process cannot read are said once per UDF: its first setup event's ``not_read`` (issue 20).

A UDF with no setup phase measured in the process (a plain function) says them in one
``udfmem.warning`` named ``not-read`` before its first snapshot. ``udfmem diagnose`` shows
them per worker (``not_read`` in ``--json``, a note in the text).

The processes are real children whose peak reset is really impossible (see
:mod:`test_lifetime_peaks`: non-dumpable, unprivileged), so their probes' own
``Probes.unreadable`` says ``peak_rss_mb``; nothing is patched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from test_lifetime_peaks import run_child

from udfmem.analysis.diagnosis import NOT_READ
from udfmem.events.parse import parse_line
from udfmem.probes import process as _probes
from udfmem.runtime.setup import not_read_notice

PEAK_WHY = "the kernel's peak cannot be reset here: peaks are the process's lifetime peak"
"""Why the probes cannot read a window peak where the reset is impossible (``Probes.unreadable``)."""

TWO_UDFS = """
@udfmem.tracked(every=5)
class WithSetup:
    def __init__(self):
        self.ready = False

    def setup(self):
        self.ready = True

    def __call__(self, i):
        return i

@udfmem.tracked(every=5)
class Other:  # no __init__ of its own: no setup phase measured
    def __call__(self, i):
        return i

a, b = WithSetup(), Other()
a.setup()  # a second setup phase of the same UDF
for i in range(20):
    a(i)
    b(i)
"""

FUNCTION = """
@udfmem.tracked(every=5)
def plain(i):
    return i

for i in range(20):
    plain(i)
"""


def _events(stderr: str) -> list[dict[str, Any]]:
    """The udfmem events of a child's stderr, in order."""
    return [f for f in map(parse_line, stderr.splitlines()) if f is not None]


def test_the_notice_groups_fields_by_reason_in_a_greppable_form() -> None:
    """``field,field (why); field (why)``: one reason per group, a reason's ``;`` and parentheses never split it."""
    unreadable = {"heap_in_use_mb": "tcmalloc (no stats)", "heap_free_mb": "tcmalloc (no stats)", "rss_anon_mb": "a; b"}
    assert "heap_in_use_mb,heap_free_mb (tcmalloc [no stats]); rss_anon_mb (a, b)" == not_read_notice(unreadable)
    assert None is not_read_notice({})


def test_the_first_setup_event_of_each_udf_says_the_fields_not_read() -> None:
    """Two UDFs in one process, each says it once: the first setup event; without a setup phase, the warning."""
    events = _events(run_child(TWO_UDFS, no_reset=True))
    setups = [(e["udf"], e["method"], e.get("not_read")) for e in events if e["event"] == "udfmem.setup"]
    said = f"peak_rss_mb ({PEAK_WHY})"
    assert [("WithSetup", "__init__", said), ("WithSetup", "setup", None)] == setups
    warnings = [(e["udf"], e["what"], e["message"]) for e in events if e["event"] == "udfmem.warning"]
    assert [("Other", NOT_READ, said)] == warnings


def test_a_udf_without_a_setup_phase_says_them_once_in_a_warning_before_its_first_snapshot() -> None:
    """A plain function: one udfmem.warning named not-read, right before its first snapshot, never again."""
    events = _events(run_child(FUNCTION, no_reset=True))
    kinds = [(e["event"], e.get("what")) for e in events]
    assert ("udfmem.warning", NOT_READ) == kinds[0]
    assert ("udfmem.snapshot", None) == kinds[1]
    assert 1 == kinds.count(("udfmem.warning", NOT_READ))
    assert f"peak_rss_mb ({PEAK_WHY})" == events[0]["message"]


def test_a_process_that_reads_every_field_says_what_its_probes_say() -> None:
    """Where the reset works, the first setup event's not_read is this machine's own probes' notice (none here)."""
    events = _events(run_child(TWO_UDFS + FUNCTION, no_reset=False))
    expected = not_read_notice(_probes.probes().unreadable)
    assert [expected, None] == [e.get("not_read") for e in events if e["event"] == "udfmem.setup"]
    warned = [e["udf"] for e in events if e["event"] == "udfmem.warning" and e.get("what") == NOT_READ]
    assert ([] if expected is None else ["Other", "plain"]) == warned


def _diagnose(log: Path, *options: str) -> str:
    """``udfmem diagnose`` on ``log``: its stdout."""
    cmd = [sys.executable, "-m", "udfmem", "diagnose", *options, str(log)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout


def test_diagnose_shows_per_worker_the_fields_it_could_not_read(tmp_path: Path) -> None:
    """From the setup event (a class) and from the warning (a function): --json's not_read, and a note in the text."""
    log = tmp_path / "workers.log"
    log.write_text(run_child(TWO_UDFS, no_reset=True) + run_child(FUNCTION, no_reset=True))
    said = f"peak_rss_mb ({PEAK_WHY})"
    workers = json.loads(_diagnose(log, "--json"))["workers"]
    assert {"WithSetup": said, "Other": said, "plain": said} == {w["udf"]: w.get("not_read") for w in workers}
    text = _diagnose(log)
    assert 3 == text.count(f"fields not read: {said}")  # once per UDF (one worker each)
