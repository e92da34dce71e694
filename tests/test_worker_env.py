"""worker_env(): the UDFMEM_* settings to hand to engine workers, validated on the driver."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Events, run_python

import udfmem

Reader = Callable[..., Events]


def test_overrides_become_env_strings() -> None:
    """Keyword overrides become the UDFMEM_* variables, as strings the worker parses back."""
    assert {
        "UDFMEM_DISABLE": "1",
        "UDFMEM_EVERY": "8",
        "UDFMEM_EVERY_S": "2.5",
        "UDFMEM_LOG_FORMAT": "json",
    } == udfmem.worker_env(disable=True, every=8, every_s=2.5, log_format="JSON")


def test_current_environment_is_carried_and_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    """UDFMEM_* already set on the driver are passed on; an override wins; None drops one."""
    monkeypatch.setenv("UDFMEM_EVERY", "16")
    monkeypatch.setenv("UDFMEM_LOG_FORMAT", "json")
    monkeypatch.setenv("UNRELATED", "x")
    assert {"UDFMEM_EVERY": "16", "UDFMEM_LOG_FORMAT": "json"} == udfmem.worker_env()
    assert {"UDFMEM_EVERY": "4"} == udfmem.worker_env(every=4, log_format=None)


def test_log_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers run in other directories: a relative log_dir is resolved on the driver."""
    monkeypatch.chdir(tmp_path)
    assert {"UDFMEM_LOG_DIR": str(tmp_path / "logs")} == udfmem.worker_env(log_dir="logs")
    assert {"UDFMEM_LOG_DIR": str(tmp_path / "p")} == udfmem.worker_env(log_dir=tmp_path / "p")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"evry": 3}, TypeError, "unknown settings"),
        ({"every": 0}, ValueError, "not a valid UDFMEM_EVERY"),
        ({"every": True}, TypeError, "does not take a bool"),
        ({"every_s": -1}, ValueError, "UDFMEM_EVERY_S"),
        ({"log_format": "xml"}, ValueError, "UDFMEM_LOG_FORMAT"),
        ({"every": [1]}, TypeError, "takes a str or a number"),
    ],
)
def test_bad_override_raises(kwargs: dict[str, Any], error: type, match: str) -> None:
    """A bad override is a programming error on the driver: it raises, naming the setting."""
    with pytest.raises(error, match=match):
        udfmem.worker_env(**kwargs)


def test_bad_inherited_value_is_dropped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, stderr_events: Reader
) -> None:
    """A bad UDFMEM_* on the driver is not shipped to the workers: one udfmem.warning says so."""
    monkeypatch.setenv("UDFMEM_EVERY", "lots")
    assert {} == udfmem.worker_env()
    assert {} == udfmem.worker_env()
    warnings = stderr_events("udfmem.warning")
    assert [("bad-env", "UDFMEM_EVERY")] == [(w["what"], w["var"]) for w in warnings]


def test_round_trip_through_a_worker_process() -> None:
    """The returned dict, used as a child's environment, configures udfmem there."""
    env = udfmem.worker_env(every=3, log_format="json")
    proc = run_python(
        """
        import udfmem
        @udfmem.tracked(every=1000)
        class Udf:
            def __call__(self, x):
                return x
        udf = Udf()
        for i in range(6):
            udf(i)
        """,
        env={**env, "PATH": os.environ.get("PATH", "")},
    )
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert [("udfmem.snapshot", 3), ("udfmem.snapshot", 6)] == [(e["event"], e["call"]) for e in events]
