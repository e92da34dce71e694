"""Metrics export (``UDFMEM_METRICS``): OpenTelemetry gauges, the setting, imports, missing packages.

OpenTelemetry runs for real: the SDK's ``InMemoryMetricReader`` collects udfmem's
observable gauges. Each case runs in a fresh interpreter, since a meter provider can be
set once per process and "nothing was imported" needs a clean ``sys.modules``. The Ray
exporter is proven on a real cluster in ``test_engines_metrics.py``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import parse_events, run_python

import udfmem
from udfmem import _settings
from udfmem._events import Memory, Snapshot
from udfmem.sinks import gauges as exported
from udfmem.sinks.metrics import MIN_SET_S, REFRESH_S, MetricsSink

GAUGES = (
    "udfmem_rss_mb",
    "udfmem_peak_rss_mb",
    "udfmem_arrow_live_mb",
    "udfmem_heap_in_use_mb",
    "udfmem_heap_free_mb",
    "udfmem_growth_mb",
    "udfmem_calls",
)
FIELDS = ("rss_mb", "peak_rss_mb", "arrow_live_mb", "heap_in_use_mb", "heap_free_mb", "growth_mb", "call")

OTEL_RUN = """
    import json, sys, time
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import udfmem

    reader = InMemoryMetricReader()
    if {sdk_first}:
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    @udfmem.tracked(every=4, trim=16, metrics="otel")
    class Leaky:
        def __init__(self):
            self.kept = []
        def __call__(self, x):
            self.kept.append(bytearray({keep}))  # kept per call
            time.sleep(0.002)
            return x + 1

    @udfmem.tracked(every=4, metrics="otel")
    class Steady:
        def __call__(self, x):
            time.sleep(0.002)
            return bytearray(256 << 10) and x + 1

    leaky, steady = Leaky(), Steady()
    ok = all(leaky(i) == i + 1 and steady(i) == i + 1 for i in range(200))
    if not {sdk_first}:
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    out = {{}}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = [[dp.value, dict(dp.attributes)] for dp in m.data.data_points]
    print("RESULT " + json.dumps({{"ok": ok, "metrics": out, "scope": sm.scope.name}}))
"""


def _otel_run(sdk_first: bool = True, keep: int = 256 << 10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    proc = run_python(OTEL_RUN.format(sdk_first=sdk_first, keep=keep))
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), parse_events(proc.stderr)


def _by_udf(points: list[list[Any]]) -> dict[str, tuple[Any, dict[str, str]]]:
    return {attrs["udf"]: (value, attrs) for value, attrs in points}


def test_the_gauges_are_the_ones_the_issue_names() -> None:
    """The exported gauges are exactly the issue's list (a rename breaks dashboards)."""
    assert (*GAUGES[:6], "udfmem_headroom_mb", "udfmem_calls") == tuple(g.name for g in exported.GAUGES)
    assert "udfmem_growth_slope_mb_per_100_calls" == exported.SLOPE.name


def test_otel_gauges_equal_the_last_snapshot_with_udf_host_worker_attributes() -> None:
    """With the SDK's in-memory reader, each gauge of each UDF holds its last snapshot's figure (last known)."""
    result, events = _otel_run()
    assert result["ok"] is True
    assert "udfmem" == result["scope"]
    for udf in ("Leaky", "Steady"):
        snaps = [e for e in events if e["udf"] == udf and e["event"] == "udfmem.snapshot"]
        known = {k: v for snap in snaps for k, v in snap.items()}  # a skipped probe keeps its last value
        head = snaps[-1]
        for gauge, field in zip(GAUGES, FIELDS, strict=True):
            value, attrs = _by_udf(result["metrics"][gauge])[udf]
            expected = snaps[-1]["call"] if gauge == "udfmem_calls" else known[field]
            assert (gauge, expected) == (gauge, value)
            assert {"udf": udf, "host": head["host"], "worker": head["worker"]} == attrs
        trims = [e for e in events if e["udf"] == udf and e["event"] == "udfmem.trim"]
        assert len(trims) == _by_udf(result["metrics"]["udfmem_trims"])[udf][0]
        released = sum(max(0.0, e["released_mb"]) for e in trims)
        assert released == pytest.approx(_by_udf(result["metrics"]["udfmem_trim_released_mb"])[udf][0], abs=0.01)
    assert "udfmem_headroom_mb" not in result["metrics"] or all(
        p[0] == [e for e in events if e["udf"] == p[1]["udf"] and "headroom_mb" in e][-1]["headroom_mb"]
        for p in result["metrics"]["udfmem_headroom_mb"]
    )


def test_otel_growth_slope_comes_from_the_online_detector() -> None:
    """The slope gauge is about 25 MiB/100 calls where a UDF keeps 256 KiB a call, and 0 where nothing is kept.

    Memory is per process, so the leak-free case runs in a process of its own.
    """
    steady, _ = _otel_run(keep=0)
    assert {"Leaky": 0.0, "Steady": 0.0} == {
        udf: value for udf, (value, _) in _by_udf(steady["metrics"]["udfmem_growth_slope_mb_per_100_calls"]).items()
    }
    result, events = _otel_run()
    slopes = _by_udf(result["metrics"]["udfmem_growth_slope_mb_per_100_calls"])
    assert 20.0 < slopes["Leaky"][0] < 35.0  # 25 MiB per 100 calls kept
    suspects = [e for e in events if e["event"] == "udfmem.suspect" and e["udf"] == "Leaky"]
    assert suspects and suspects[0]["pattern"] == "heap-leak"


def test_otel_provider_configured_after_the_udf_ran_still_gets_the_gauges() -> None:
    """Instruments made on the API's proxy meter before the SDK is set up report once it is."""
    result, _ = _otel_run(sdk_first=False)
    assert {"Leaky", "Steady"} == set(_by_udf(result["metrics"]["udfmem_rss_mb"]))


def test_otel_without_an_sdk_never_runs_a_callback() -> None:
    """With the API alone (no SDK), the gauges are no-ops: udfmem's callbacks never run, the SDK is never imported."""
    proc = run_python(
        """
        import sys
        from udfmem.sinks import otel_metrics
        runs = []
        make = otel_metrics._gauge_callback
        def counting(gauge, observation):
            inner = make(gauge, observation)
            def observe(options):
                runs.append(gauge.name)
                return inner(options)
            return observe
        otel_metrics._gauge_callback = counting
        import udfmem
        @udfmem.tracked(every=2, metrics="otel")
        def f(x):
            return x
        assert [f(i) for i in range(100)] == list(range(100))
        print("RESULT", len(runs), "opentelemetry.sdk" in sys.modules, "opentelemetry" in sys.modules)
        """
    )
    assert "RESULT 0 False True" in proc.stdout
    assert [] == parse_events(proc.stderr, "udfmem.warning")


def test_off_by_default_imports_no_metrics_package() -> None:
    """Without UDFMEM_METRICS, neither ray.util.metrics nor opentelemetry is imported; with otel, not ray."""
    code = """
        import sys, udfmem
        @udfmem.tracked(every=2)
        class U:
            def __call__(self, x):
                return x
        @udfmem.tracked(every=2, metrics={metrics!r})
        def g(x):
            return x
        u = U()
        assert [u(i) for i in range(50)] == list(range(50))
        if {metrics!r} != "off":
            assert [g(i) for i in range(50)] == list(range(50))
        print("RESULT", sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "opentelemetry")))
        """
    assert "RESULT []" in run_python(code.format(metrics="off")).stdout
    assert "ray" not in run_python(code.format(metrics="otel")).stdout.split("RESULT", 1)[1]


def test_missing_packages_give_one_warning_each_and_the_udf_runs() -> None:
    """With ray and opentelemetry unimportable, metrics="ray,otel" gives one warning per package; results unchanged.

    Both packages are installed here; their absence is simulated by ``sys.modules[name] = None``
    (which makes the import raise ImportError, as on a machine without them).
    """
    proc = run_python(
        """
        import sys
        sys.modules["ray"] = None
        sys.modules["opentelemetry"] = None
        import udfmem
        @udfmem.tracked(every=2, metrics="ray,otel")
        class U:
            def __call__(self, x):
                return x * 2
        @udfmem.tracked(every=2, metrics="ray,otel")
        def g(x):
            return x
        u = U()
        print("RESULT", [u(i) for i in range(20)] == [2 * i for i in range(20)] and g(3) == 3)
        """
    )
    assert "RESULT True" in proc.stdout
    warnings = parse_events(proc.stderr, "udfmem.warning")
    assert ["metrics-unavailable", "metrics-unavailable"] == [w["what"] for w in warnings]
    assert ["opentelemetry-api", "ray"] == sorted(
        "ray" if "needs the ray package" in w["message"] else "opentelemetry-api" for w in warnings
    )
    assert {"UDFMEM_METRICS"} == {w["var"] for w in warnings}
    assert [("U", c) for c in range(2, 21, 2)] == [
        (e["udf"], e["call"]) for e in parse_events(proc.stderr, "udfmem.snapshot", finals=False)
    ]


def test_ray_metrics_outside_a_ray_cluster_warn_once_and_the_udf_runs() -> None:
    """metrics="ray" in a process that never called ray.init: one warning, no gauge set, results unchanged."""
    pytest.importorskip("ray")
    proc = run_python(
        """
        import udfmem
        @udfmem.tracked(every=2, metrics="ray")
        def f(x):
            return -x
        print("RESULT", [f(i) for i in range(40)] == [-i for i in range(40)])
        """
    )
    assert "RESULT True" in proc.stdout
    warnings = parse_events(proc.stderr, "udfmem.warning")
    assert ["metrics-not-connected"] == [w["what"] for w in warnings]
    assert 20 == len(parse_events(proc.stderr, "udfmem.snapshot", finals=False))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", ()),
        ("", ()),
        ("ray", ("ray",)),
        ("OTEL", ("otel",)),
        (" otel , ray ", ("ray", "otel")),
        (["otel"], ("otel",)),
    ],
)
def test_metrics_setting_accepts_off_ray_otel_and_both(value: Any, expected: tuple[str, ...]) -> None:
    """The decorator's metrics= takes off, ray, otel or both (any case, any order, or a sequence)."""
    assert expected == _settings.from_decorator(metrics=value).metrics


@pytest.mark.parametrize(("value", "error"), [("prometheus", ValueError), ("ray,statsd", ValueError), (1, TypeError)])
def test_bad_metrics_argument_fails_at_decoration(value: Any, error: type[Exception]) -> None:
    """An unknown exporter or a wrong type is a clear error when decorating, naming the known values."""
    with pytest.raises(error, match="metrics"):
        udfmem.tracked(metrics=value)


def test_bad_metrics_env_value_warns_once_and_keeps_the_default() -> None:
    """UDFMEM_METRICS=statsd: one bad-env warning, metrics off, the UDF runs."""
    proc = run_python(
        """
        import sys, udfmem
        @udfmem.tracked(every=2)
        def f(x):
            return x
        print("RESULT", [f(i) for i in range(10)] == list(range(10)), "opentelemetry" in sys.modules)
        """,
        env={"UDFMEM_METRICS": "statsd"},
    )
    assert "RESULT True False" in proc.stdout
    (warning,) = parse_events(proc.stderr, "udfmem.warning")
    assert ("bad-env", "UDFMEM_METRICS") == (warning["what"], warning["var"])


def test_env_switches_otel_on_over_the_decorator() -> None:
    """UDFMEM_METRICS=otel in the worker turns the exporter on for a UDF decorated without it."""
    settings, problems = _settings.resolve(_settings.from_decorator(), {"UDFMEM_METRICS": "otel"})
    assert (("otel",), []) == (settings.metrics, problems)


def test_worker_env_passes_metrics_on() -> None:
    """worker_env(metrics=...) takes a str or a sequence and writes the canonical UDFMEM_METRICS."""
    assert {"UDFMEM_METRICS": "ray,otel"} == udfmem.worker_env(metrics=("otel", "ray"))
    assert {"UDFMEM_METRICS": "off"} == udfmem.worker_env(metrics="off")
    with pytest.raises(ValueError, match="UDFMEM_METRICS"):
        udfmem.worker_env(metrics="graphite")


class Recording:
    """A stand-in exporter that records what the sink pushes (the real Ray exporter runs in test_engines_metrics)."""

    expires = True

    def __init__(self, sink: MetricsSink) -> None:
        self.sink = sink
        self.pushed: list[int] = []

    def publish(self) -> None:
        """Record the call of the sink's last snapshot."""
        assert self.sink.last is not None
        self.pushed.append(self.sink.last.call)


def _recording_sink() -> tuple[MetricsSink, Recording]:
    sink = MetricsSink((), "U", "h", "w", lambda what, message: None)
    exporter = Recording(sink)
    sink._exporters.append(exporter)
    sink.expires = True
    return sink, exporter


def _snap(call: int, final: bool | None = None) -> Snapshot:
    return Snapshot(call, Memory(rss_mb=float(call)), None, 1, 0.0, final)


def test_ray_values_are_pushed_at_most_once_a_second_and_the_timer_sets_the_rest() -> None:
    """A snapshot pushes at once, one within MIN_SET_S waits for the timer's visit; a final one never waits.

    The exporter is a recording stand-in for Ray's (this checks the sink's schedule, not Ray).
    """
    sink, exporter = _recording_sink()
    sink.write(_snap(1))
    sink.write(_snap(2))  # within the second: left for the timer
    assert [1] == exporter.pushed
    now = time.monotonic()
    assert now + MIN_SET_S == sink.refresh(now)  # too early for the dirty values: nothing pushed yet
    assert [1] == exporter.pushed
    sink.refresh(now + MIN_SET_S)
    assert [1, 2] == exporter.pushed
    sink.write(_snap(3, final=True))  # a final snapshot: the process may be ending
    assert [1, 2, 3] == exporter.pushed


def test_the_timer_re_sets_unchanged_values_every_refresh_s() -> None:
    """With no new snapshot the values are pushed again only once REFRESH_S passed (Ray would drop them)."""
    sink, exporter = _recording_sink()
    sink.write(_snap(7))
    now = time.monotonic()
    sink.refresh(now + REFRESH_S - 0.5)
    assert [7] == exporter.pushed
    sink.refresh(now + REFRESH_S + 0.1)
    assert [7, 7] == exporter.pushed


def test_before_any_snapshot_the_timer_pushes_nothing() -> None:
    """A timer visit before the first snapshot pushes nothing and does not delay the first snapshot's push."""
    sink, exporter = _recording_sink()
    sink.refresh(time.monotonic())
    sink.write(_snap(1))
    assert [1] == exporter.pushed


def test_a_skipped_figure_keeps_its_last_known_value() -> None:
    """A snapshot without the heap figures (its probe over budget) leaves the gauges at their last values."""
    sink, _ = _recording_sink()
    sink.write(Snapshot(1, Memory(rss_mb=10.0, heap_in_use_mb=4.0, heap_free_mb=1.0), 0.5, 1, 0.0))
    sink.write(Snapshot(2, Memory(rss_mb=11.0), 0.7, 1, 0.0))
    assert {
        "udfmem_rss_mb": 11.0,
        "udfmem_arrow_live_mb": 0.0,
        "udfmem_heap_in_use_mb": 4.0,
        "udfmem_heap_free_mb": 1.0,
        "udfmem_growth_mb": 0.7,
        "udfmem_calls": 2,
    } == dict(sink.values())


def test_the_readme_promql_parses_and_names_only_exported_series() -> None:
    """Each PromQL line of the README parses, and every ``ray_udfmem_*`` series it reads is one udfmem exports."""
    promql_parser = pytest.importorskip("promql_parser")
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```promql\n(.*?)```", readme, re.S)
    assert block is not None
    queries = [q for q in block.group(1).splitlines() if q.strip() and not q.startswith("#")]
    names = {f"ray_{g.name}" for g in (*exported.GAUGES, exported.SLOPE)}
    names |= {f"ray_{name}_total" for name, _ in (exported.TRIMS, exported.RELEASED)}
    assert 4 <= len(queries)
    for query in queries:
        promql_parser.parse(query)  # raises on a syntax error
        used = set(re.findall(r"\bray_udfmem_\w+", query))
        assert used and used <= names, query
