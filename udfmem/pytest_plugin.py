"""udfmem's pytest plugin: the ``limit_growth_per_call`` marker and the ``udfmem_growth`` fixture.

Loaded automatically when udfmem is installed (entry point ``pytest11``); it does nothing
unless a test uses them. In pytest-memray's conventions (``limit_memory``,
``limit_leaks``), sizes are ``"<N> [KMGT]B"`` with binary multipliers::

    @pytest.mark.limit_growth_per_call("64 KB", calls=256, warmup=32)
    def test_embed_keeps_nothing(udf):
        udf(make_batch())

runs the test body ``warmup`` times, then ``calls`` times counted, and fails the test
when it grows per run (as :func:`udfmem.testing.check_growth` measures), with a one-line
reason and a ``udfmem-growth`` report section naming what grew.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import testing

MARKER = "limit_growth_per_call"


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(size, calls=256, warmup=32): run the test body warmup + calls times and fail it when "
        "it leaves more than size per run (malloc in-use + Arrow + Python objects), e.g. '64 KB'",
    )


class _Body:
    """The test body as a UDF: each call runs it once with its fixtures."""

    def __init__(self, test: Any, kwargs: dict[str, Any]) -> None:
        self.test = test
        self.kwargs = kwargs

    def __call__(self, _: int) -> None:
        self.test(**self.kwargs)


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, None]:
    """Under the marker, run the test body repeatedly and judge its growth per run."""
    marker = pyfuncitem.get_closest_marker(MARKER)
    if marker is None:
        yield
        return
    limit = testing.parse_size(marker.args[0] if marker.args else marker.kwargs.get("size", "64 KB"))
    calls, warmup = int(marker.kwargs.get("calls", 256)), int(marker.kwargs.get("warmup", 32))
    test = pyfuncitem.obj

    def looped(**kwargs: Any) -> None:
        # the verdict is raised here, as the test's own failure: raised from a hookwrapper's teardown it
        # would become a PluggyTeardownRaisedWarning (under -W error, in place of the reason)
        body = _Body(test, kwargs)
        targets = {name: value for name, value in kwargs.items() if hasattr(value, "__dict__")}
        report = testing.measure(body, range(calls + warmup), calls, warmup, targets, test.__module__)
        if not report.passed(limit):
            pyfuncitem.add_report_section("call", "udfmem-growth", f"{report.reason(limit)}\n{report.evidence}")
            pytest.fail(f"udfmem: {report.reason(limit)}", pytrace=False)

    pyfuncitem.obj = looped
    try:
        yield
    finally:
        pyfuncitem.obj = test


@pytest.fixture
def udfmem_growth() -> Any:
    """:func:`udfmem.testing.check_growth`, to call on a UDF inside a test."""
    return testing.check_growth
