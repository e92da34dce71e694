"""The extras resolve on every Python ``requires-python`` admits: engines without a wheel there are marked out.

Geneva's wheel says ``Requires-Python: <3.14,>=3.10`` (checked on PyPI on 2026-12-02 with
``pip install --dry-run --python-version 3.14``; Ray and Daft resolved there): without a
marker, ``pip install -e ".[engines]"`` fails on 3.14 for every package of the extra.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # 3.11+; requires-python admits 3.10
PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())


def wanted(extra: str, python: str, platform: str = "linux") -> set[str]:
    """The names of ``extra``'s requirements whose markers hold on ``python`` (``3.N``) and ``platform``."""
    env = {**default_environment(), "python_version": python, "python_full_version": f"{python}.0"}
    env["sys_platform"] = platform
    reqs = [Requirement(text) for text in PYPROJECT["project"]["optional-dependencies"][extra]]
    return {r.name for r in reqs if r.marker is None or r.marker.evaluate(env)}


def test_geneva_is_left_out_of_the_engines_extra_where_its_wheel_does_not_install() -> None:
    """3.10-3.13 on Linux: Ray, Daft and Geneva; on 3.14 Ray and Daft only; off Linux, no Geneva."""
    engines = {"ray", "daft", "geneva"}
    found = {python: wanted("engines", python) for python in ("3.10", "3.11", "3.12", "3.13", "3.14")}
    assert {
        "3.10": engines,
        "3.11": engines,
        "3.12": engines,
        "3.13": engines,
        "3.14": {"ray", "daft"},
    } == found
    assert {"ray", "daft"} == wanted("engines", "3.12", platform="darwin")


def test_requires_python_is_what_the_readme_says() -> None:
    """``requires-python`` and the README's list of Pythons agree on the oldest one."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert ">=3.10" == PYPROJECT["project"]["requires-python"]
    assert "Python 3.10 to 3.14" in readme
