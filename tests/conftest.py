"""Shared fixtures: read udfmem's real output back as events."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from udfmem import _allocator, _emit, _probes, _settings
from udfmem._render import parse_line

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
    _probes.probes().heap_budget.reset()  # a slow read in an earlier test must not hide heap fields here
    _probes.probes().blocks.reset()
    _allocator.trim()  # memory an earlier test freed but glibc held would be reused here and hide growth
    _emit._warned.clear()  # warnings are once per process; each test checks its own
    yield


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
    script: Path, *args: str, logs: str = "session_latest/logs", env: dict[str, str] | None = None
) -> Iterator[ScriptRun]:
    """Run ``script *args TEMP`` (TEMP: a fresh short directory for Ray); yield what it left, then clean up."""
    temp = tempfile.mkdtemp(prefix="/tmp/udf")  # Ray's socket paths must stay short
    try:
        proc = subprocess.run(
            [sys.executable, str(script), *args, temp],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=600,
            check=False,
        )
        assert 0 == proc.returncode, proc.stderr[-5000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        worker_files = sorted(Path(temp, logs).glob("worker-*"))
        yield ScriptRun(
            json.loads(line[len("RESULT ") :]),
            proc.stdout + proc.stderr,
            "".join(p.read_text(errors="replace") for p in worker_files),
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (this venv) with the UDFMEM_* env cleaned."""
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
