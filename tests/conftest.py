"""Shared fixtures: read udfmem's real output back as events."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from udfmem import _settings
from udfmem.emit import emitter as _emit
from udfmem.events.parse import parse_line
from udfmem.probes import allocator as _allocator
from udfmem.probes import process as _probes

Events = list[dict[str, Any]]


def parse_events(text: str, event: str | None = None, finals: bool = True) -> Events:
    """Every udfmem event in ``text``, optionally only those named ``event``.

    ``finals=False`` leaves out the ``final=true`` snapshots a UDF object's release adds
    (tests of the every-K cadence that create throwaway instances).
    """
    found = [e for e in map(parse_line, text.splitlines()) if e is not None]
    return [e for e in found if (event is None or e["event"] == event) and (finals or not e.get("final"))]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests start clean: no UDFMEM_* variable, a fresh probe budget, freed memory given back to the OS.

    The developer's shell may set UDFMEM_*; memory an earlier test freed would be reused here;
    an earlier test's once-per-process warning would hide this test's.
    """
    for name in _settings.ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    _probes.probes().use_budgets()  # fresh budgets: a slow read or a clock injected earlier must not reach here
    _allocator.trim()  # memory an earlier test freed but glibc held would be reused here and hide growth
    _emit.forget_warnings()  # warnings are once per process; each test checks its own
    yield


@pytest.fixture
def free_probes() -> None:
    """The heap and Python-blocks probes are read at every snapshot: their cost clock stands still.

    For tests whose subject is a figure, not its time budget: on a loaded machine a heap
    walk costs 10 times what it costs on a quiet one, and the budget holds fields back.
    """
    _probes.probes().use_budgets(cost_clock=lambda: 0.0)


@pytest.fixture
def stderr_events(capsys: pytest.CaptureFixture[str]) -> Callable[..., Events]:
    """Return a reader of the udfmem events written to stderr since the last read (finals only if asked)."""

    def read(event: str | None = None, finals: bool = False) -> Events:
        return parse_events(capsys.readouterr().err, event, finals)

    return read


def identity_udf(name: str = "Udf", **tracked_kwargs: Any) -> Any:
    """A fresh tracked class named ``name`` whose ``__call__`` returns its argument."""
    from udfmem import tracked

    def __call__(self: Any, x: Any) -> Any:
        return x

    return tracked(**tracked_kwargs)(type(name, (), {"__call__": __call__}))


@dataclasses.dataclass
class ScriptRun:
    """What an engine driver script left: its ``RESULT`` JSON, its console, its workers' logs."""

    result: dict[str, Any]
    console: str
    worker_logs: str


@contextlib.contextmanager
def engine_script(
    script: Path,
    *args: str,
    logs: str = "session_latest/logs",
    env: dict[str, str] | None = None,
    timeout: float = 1500,
) -> Iterator[ScriptRun]:
    """Run ``script *args TEMP`` (TEMP: a fresh short directory for Ray); yield what it left, then clean up.

    ``timeout`` is generous (a loaded machine is slow); pytest's own per-test limit applies too.
    """
    temp = tempfile.mkdtemp(prefix="/tmp/udf")  # Ray's socket paths must stay short
    # its own session: on a timeout (or a failing test) the whole cluster it started goes
    # with it, instead of Ray's agents living on, orphaned, loading the machine
    proc = subprocess.Popen(
        [sys.executable, str(script), *args, temp],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        assert 0 == proc.returncode, stderr[-5000:]
        line = next((x for x in stdout.splitlines() if x.startswith("RESULT ")), None)
        assert line is not None, f"{script.name} printed no RESULT line: {stderr[-5000:]}"
        worker_files = sorted(Path(temp, logs).glob("worker-*"))
        yield ScriptRun(
            json.loads(line[len("RESULT ") :]),
            stdout + stderr,
            "".join(p.read_text(errors="replace") for p in worker_files),
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the session's leftovers (none after a clean run)
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


LEAK = """
import udfmem
@udfmem.tracked(every=8)
class Leak:
    def __init__(self):
        self.keep = []
    def __call__(self, x):
        self.keep.append(bytes(256 * 1024))
        return x
udf = Leak()
for i in range(403):
    udf(i)
"""
"""A script (for :func:`run_python`) of a UDF leaking 256 KiB a call: 403 calls, every=8 (a setup, 51 snapshots)."""


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this venv) with the UDFMEM_* env cleaned.

    The default limit is generous (10 minutes): on a loaded machine a child is slow, not stuck.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    return proc
