"""The settings table is the one source: decorator, mixin, env, worker_env and README all follow it."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest

import udfmem
import udfmem.testing
from udfmem import TrackedUDF, _settings
from udfmem.runtime import decorator as _decorator

README = Path(__file__).resolve().parent.parent / "README.md"


def test_tracked_keywords_are_the_decorator_rows() -> None:
    """tracked's runtime signature and its typed overload list exactly the table's decorator rows, same defaults."""
    params = inspect.signature(udfmem.tracked).parameters
    assert ["obj", *_settings.DECORATOR_KEYS] == list(params)
    assert {k: _settings.DEFAULTS[k] for k in _settings.DECORATOR_KEYS if k != "name"} == {
        k: params[k].default for k in _settings.DECORATOR_KEYS if k != "name"
    }
    overloads = typing.get_overloads(_decorator.tracked)
    keyword_overload = next(o for o in overloads if "every" in inspect.signature(o).parameters)
    assert set(_settings.DECORATOR_KEYS) == set(inspect.signature(keyword_overload).parameters)


def test_the_readme_tables_are_the_generated_ones() -> None:
    """The README's tables of variables and options are generated (regenerate: env_table(), options_table())."""
    readme = README.read_text(encoding="utf-8")
    assert _settings.env_table() in readme
    assert _settings.options_table() in readme


def test_env_names_come_from_the_rows() -> None:
    """ENV_NAMES lists each row's variable once, all UDFMEM_*."""
    assert len(set(_settings.ENV_NAMES)) == len(_settings.ENV_NAMES)
    assert all(name.startswith("UDFMEM_") for name in _settings.ENV_NAMES)
    assert {row.env for row in _settings.ROWS.values() if row.env} == set(_settings.ENV_NAMES)


def test_worker_env_passes_udfmem_arena_max_and_not_a_foreign_malloc_arena_max(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """UDFMEM_ARENA_MAX on the driver travels (with glibc's variable); a bare MALLOC_ARENA_MAX is not udfmem's."""
    monkeypatch.setenv("UDFMEM_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    assert {"UDFMEM_ARENA_MAX": "4", "MALLOC_ARENA_MAX": "4"} == udfmem.worker_env()
    monkeypatch.delenv("UDFMEM_ARENA_MAX")
    assert {} == udfmem.worker_env()


def test_resolve_reads_a_custom_memray_variable_first() -> None:
    """memray_env names the variable read first; UDFMEM_MEMRAY_DIR is the fallback; the switch is named."""
    options = _settings.from_decorator(memray_env="MY_PROFILE_DIR")
    both = {"MY_PROFILE_DIR": "/a", "UDFMEM_MEMRAY_DIR": "/b"}
    assert "/a" == _settings.resolve(options, both)[0].memray_dir
    assert "/b" == _settings.resolve(options, {"UDFMEM_MEMRAY_DIR": "/b"})[0].memray_dir
    assert "MY_PROFILE_DIR" == _settings.memray_switch(options, both)
    assert "UDFMEM_MEMRAY_DIR" == _settings.memray_switch(options, {"UDFMEM_MEMRAY_DIR": "/b"})


def test_a_bad_env_value_is_a_problem_not_an_error() -> None:
    """resolve() keeps the decorator's value and reports the bad one, naming the variable."""
    options = _settings.from_decorator(every=7)
    settings, problems = _settings.resolve(options, {"UDFMEM_EVERY": "0", "UDFMEM_TRIM": "sometimes"})
    assert (7, "auto") == (settings.every, settings.trim)
    assert ["UDFMEM_EVERY", "UDFMEM_TRIM"] == [p.var for p in problems]


def test_mixin_inherits_every_keyword_but_name() -> None:
    """TrackedUDF subclasses inherit class keywords except name: each subclass is named after itself."""

    class Base(TrackedUDF, every=7, name="embed"):
        def __call__(self, x: int) -> int:
            return x

    class Child(Base):
        pass

    class Named(Base, name="other"):
        pass

    assert {"every": 7, "name": "embed"} == Base.__udfmem_kwargs__
    assert {"every": 7} == Child.__udfmem_kwargs__
    assert "Child" == udfmem.testing.state_of(Child).name
    assert "other" == udfmem.testing.state_of(Named).name
