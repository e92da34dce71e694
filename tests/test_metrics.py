"""Metrics export (``UDFMEM_METRICS``): OpenTelemetry gauges, the setting, imports, missing packages.

OpenTelemetry runs for real: the SDK's ``InMemoryMetricReader`` collects udfmem's
observable gauges. Each case runs in a fresh interpreter, since a meter provider can be
set once per process and "nothing was imported" needs a clean ``sys.modules``. The Ray
exporter is proven on a real cluster in ``test_engines_metrics.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import parse_events, run_python

import udfmem
from udfmem import _settings
from udfmem.emit.emitter import Emitter, build
from udfmem.emit.sinks import gauges as exported
from udfmem.emit.sinks.metrics import MetricsSink
from udfmem.emit.sinks.stderr import StderrSink
from udfmem.events.schema import Memory, Snapshot

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
    # headroom only under a known memory limit (a cgroup limit): else the gauge is left out
    headroom = {e["udf"]: e["headroom_mb"] for e in events if e["event"] == "udfmem.snapshot" and "headroom_mb" in e}
    observed = {udf: value for udf, (value, _) in _by_udf(result["metrics"].get("udfmem_headroom_mb", [])).items()}
    assert headroom == observed


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
        from udfmem.emit.sinks import otel_metrics
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
    """metrics="ray" in a process that never imported Ray: one warning, Ray not imported, no gauge made."""
    pytest.importorskip("ray")
    proc = run_python(
        """
        import sys, udfmem
        from udfmem.emit.sinks import ray_metrics
        @udfmem.tracked(every=2, metrics="ray")
        def f(x):
            return -x
        ok = [f(i) for i in range(40)] == [-i for i in range(40)]
        print("RESULT", ok, "ray" in sys.modules, ray_metrics._metrics is None)
        """
    )
    assert "RESULT True False True" in proc.stdout
    warnings = parse_events(proc.stderr, "udfmem.warning")
    assert ["metrics-not-connected"] == [w["what"] for w in warnings]
    assert 20 == len(parse_events(proc.stderr, "udfmem.snapshot", finals=False))


def test_a_broken_otel_package_gives_one_warning_and_udfmem_runs_on() -> None:
    """An opentelemetry package that fails on import with another error than ImportError: one warning, snapshots go on.

    The broken package is a stand-in written to a temporary directory put first on
    ``sys.path`` (a version mismatch between installed packages does this on real machines).
    """
    proc = run_python(
        """
        import os, sys, tempfile
        root = tempfile.mkdtemp()
        os.makedirs(os.path.join(root, "opentelemetry"))
        with open(os.path.join(root, "opentelemetry", "__init__.py"), "w") as f:
            f.write("raise RuntimeError('protobuf version mismatch')")
        sys.path.insert(0, root)
        import udfmem
        @udfmem.tracked(every=2, metrics="otel")
        def f(x):
            return x + 1
        print("RESULT", [f(i) for i in range(10)] == list(range(1, 11)))
        """
    )
    assert "RESULT True" in proc.stdout
    (warning,) = parse_events(proc.stderr, "udfmem.warning")
    assert "metrics-unavailable" == warning["what"] and "protobuf version mismatch" in warning["message"]
    assert [2, 4, 6, 8, 10] == [e["call"] for e in parse_events(proc.stderr, "udfmem.snapshot", finals=False)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", ()),
        ("", ()),
        ("ray", ("ray",)),
        ("OTEL", ("otel",)),
        (" otel , ray ", ("ray", "otel")),
        (["otel"], ("otel",)),
        ("ray,", ("ray",)),
        (("off",), ()),
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


RAY_SCHEDULE = """
    import gc, json, threading, time
    import ray
    from ray.util import metrics as ray_metrics
    import udfmem

    sets = []
    real_set = ray_metrics.Gauge.set

    def recording_set(self, value, tags=None):  # Ray's own set runs; the call is only noted
        sets.append((self._name, value, dict(tags or {{}}), threading.current_thread().name))
        timer = threading.current_thread().name == "udfmem-timer"
        if gc_armed and timer and (tags or {{}}).get("udf") == "G" and not gc_fired:  # inside G's own re-set
            gc_fired.append(1)
            gc.collect()  # a collection inside Ray's set, freeing a UDF object in a cycle: its final snapshot
        return real_set(self, value, tags)

    gc_armed, gc_fired = [], []
    ray_metrics.Gauge.set = recording_set
    # Ray exports every 2 s here (not 10 s): udfmem re-sets unchanged values every second
    ray.init(
        num_cpus=1, include_dashboard=False, log_to_driver=False, _system_config={{"metrics_report_interval_ms": 2000}}
    )

    def pushed(udf):
        return [(v, thread) for name, v, tags, thread in sets if name == "udfmem_calls" and tags["udf"] == udf]

    def wait_for(done, timeout=60.0):  # waits on what the timer did, not on a fixed time
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.01)

    @udfmem.tracked(every=1, every_s=0, trim="off", suspect=False, metrics="ray")  # only the metrics need the timer
    def f(x):
        return x

    @udfmem.tracked(every=2, every_s=0, trim="off", suspect=False, metrics="ray")
    class G:
        def __init__(self):
            self.me = self  # a cycle: freed by the garbage collector, not at del
        def __call__(self, x):
            return x

    out = {{}}
    f(0)
    out["first"] = pushed("f")
    for i in range(9):
        f(i)
    out["within_the_second"] = pushed("f")
    wait_for(lambda: len(pushed("f")) >= 2)  # the timer's push of the value that waited
    out["after_the_timer"] = pushed("f")
    g = G()
    for i in range(3):
        g(i)  # a snapshot at call 2 (pushed); call 3 waits for the final snapshot
    gc.collect(); gc.disable()
    del g
    if {gc_in_set}:
        gc_armed.append(1)  # the timer's re-set of G's values collects g inside Ray's set
    else:
        gc.collect()  # the final snapshot, pushed at once although call 2 was pushed just now
    out["final"] = pushed("G")
    seen = len(pushed("f"))
    wait_for(lambda: len(pushed("f")) >= seen + 2 and (not {gc_in_set} or (3, "udfmem-timer") in pushed("G")))
    out["after_idle"] = pushed("f")
    out["tags"] = sorted({{k for name, v, tags, t in sets for k in tags}})
    out["final_after_idle"] = pushed("G")
    print("RESULT " + json.dumps(out))
"""


def _ray_schedule(gc_in_set: bool) -> dict[str, Any]:
    pytest.importorskip("ray")
    proc = run_python(RAY_SCHEDULE.format(gc_in_set=gc_in_set), timeout=180)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def test_ray_values_are_pushed_at_most_once_a_second_and_re_set_by_the_timer() -> None:
    """With a real local Ray: a snapshot pushes at once, the next second's wait for the timer, idle values are re-set.

    Ray's ``Gauge.set`` runs as usual; the test only notes each call (value, tags, thread)
    and waits until the timer has pushed (no fixed sleeps). Only ``metrics="ray"`` starts
    udfmem's timer here (``every_s=0``, ``trim="off"``): the metrics sink asks for its visits.
    """
    r = _ray_schedule(gc_in_set=False)
    assert [[1, "MainThread"]] == r["first"]
    assert [[1, "MainThread"]] == r["within_the_second"]  # calls 2-10 came within the second
    assert [[1, "MainThread"], [10, "udfmem-timer"]] == r["after_the_timer"]  # the last one, by the timer
    idle = r["after_idle"][2:]
    assert idle and {(10, "udfmem-timer")} == {tuple(x) for x in idle}  # no calls: the same values, re-set
    assert [[2, "MainThread"], [3, "MainThread"]] == r["final"]  # a final snapshot does not wait
    assert ["host", "udf", "worker"] == r["tags"]


def test_a_collection_inside_rays_set_on_the_timer_thread_does_not_stop_the_timer() -> None:
    """A final snapshot pushed from a finalizer inside Ray's ``set`` on the timer thread re-enters; the timer goes on.

    The collection is forced (``gc.collect()`` inside the set call) where an allocation
    would trigger it; with a non-re-entrant lock the timer thread deadlocked there.
    """
    r = _ray_schedule(gc_in_set=True)
    final = r["final_after_idle"]
    assert [3, "udfmem-timer"] in final  # the final snapshot, pushed from inside the timer's own push
    assert len(r["after_idle"]) > len(r["after_the_timer"])  # and the timer still re-sets f's values


def test_a_skipped_figure_keeps_its_last_known_value() -> None:
    """A snapshot without the heap figures (its probe over budget) leaves the gauges at their last values."""
    sink = MetricsSink((), "U", "h", "w", lambda what, message: None)
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


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """The time the test set."""
        return self.now


class Recording:
    """An exporter like Ray's (values set again every ``refresh_s`` or dropped) that notes what it was given."""

    refresh_s: float | None = 5.0

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pushed: list[tuple[float, float | int | None]] = []  # (when, the calls gauge)

    def publish(self, sink: exported.Exported) -> None:
        """Note the push: when, and the calls gauge's value."""
        self.pushed.append((self.clock(), sink.known.get("udfmem_calls")))


class Visits:
    """Stands in for udfmem's timer thread: notes what the sink asks of it; the test visits by hand."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def watch(self, obj: object) -> None:
        """Note a watch."""
        self.asked.append("watch")

    def wake(self, obj: object) -> None:
        """Note a wake."""
        self.asked.append("wake")


def _snapshot(call: int, final: bool | None = None) -> Snapshot:
    return Snapshot(call, Memory(rss_mb=10.0), 0.0, 1, 0.0, final)


def test_the_sink_pushes_at_once_then_at_most_once_a_second_and_re_sets_idle_values() -> None:
    """Injected clock, visits by hand: a snapshot pushes at once, the next second's wait for a visit, idle re-sets.

    The sink asks the timer to watch it at its first change and wakes it when a value
    waits; each visit (``tick``) says when the next is due. A final snapshot does not wait.
    """
    clock, visits = Clock(), Visits()
    exporter = Recording(clock)
    sink = MetricsSink([exporter], "U", "h", "w", clock=clock, timer=visits)
    sink.write(_snapshot(1))
    assert ([(100.0, 1)], ["watch"]) == (exporter.pushed, visits.asked)
    clock.now = 100.5
    for call in range(2, 11):
        sink.write(_snapshot(call))  # within the second: waits
    assert ([(100.0, 1)], ["watch", "wake"]) == (exporter.pushed, visits.asked)

    def visit(now: float) -> float | None:  # the timer's visit, on the same clock
        clock.now = now
        return sink.tick(now)

    assert 101.0 == visit(100.5)  # the woken visit: come back when the second is over
    assert 106.0 == visit(101.0)  # pushes the waiting value; the next re-set in refresh_s
    assert 111.0 == visit(106.0)  # idle: the same value, set again
    clock.now = 106.2
    sink.write(_snapshot(11, final=True))  # a final snapshot: the process may be ending
    assert [(100.0, 1), (101.0, 10), (106.0, 10), (106.2, 11)] == [(round(t, 1), v) for t, v in exporter.pushed]
    assert ["watch", "wake"] == visits.asked


def test_the_slope_reaches_the_metrics_sink_through_the_emitter() -> None:
    """``Emitter.note_slope`` hands the detector's slope to the sinks that show it; a new slope is published."""
    clock, visits = Clock(), Visits()
    exporter = Recording(clock)
    sink = MetricsSink([exporter], "U", "h", "w", clock=clock, timer=visits)
    emitter = Emitter("U", [StderrSink("logfmt"), sink])
    emitter.emit(_snapshot(1))
    emitter.note_slope(2.5)
    clock.now = 102.0
    emitter.note_slope(3.0)
    emitter.note_slope(3.0)  # unchanged: nothing to publish
    assert (3.0, 3.0) == (sink.slope, dict(sink.values())["udfmem_growth_slope_mb_per_100_calls"])
    assert [(100.0, 1), (102.0, 1)] == exporter.pushed  # 2.5 waited (within the second), 3.0 pushed


def test_build_chooses_the_sinks_from_the_settings(tmp_path: Path) -> None:
    """``build(udf, settings)`` makes the log sinks the settings name; a metrics sink only with an exporter."""
    settings = _settings.Settings(log_format="json", log_dir=str(tmp_path))
    emitter = build("U", settings)
    assert [("StderrSink", "json"), ("JsonlSink", "json")] == [(type(s).__name__, s.format) for s in emitter.sinks]
    plain = build("U", _settings.Settings())
    assert [("StderrSink", "logfmt")] == [(type(s).__name__, s.format) for s in plain.sinks]


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


def test_a_closed_sink_asks_for_no_more_visits_and_pushes_nothing() -> None:
    """A sink whose UDF was reset (``Emitter.close``) stops its timer visits: stale values are not re-set forever."""
    clock, visits = Clock(), Visits()
    exporter = Recording(clock)
    sink = MetricsSink([exporter], "U", "h", "w", clock=clock, timer=visits)
    Emitter("U", [StderrSink("logfmt"), sink]).emit(_snapshot(1))
    sink.close()
    clock.now = 200.0
    assert (None, [(100.0, 1)]) == (sink.tick(200.0), exporter.pushed)
