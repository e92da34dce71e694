"""Every event type renders and parses back to itself, in both formats, after any prefix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfmem.events import parse as _parse
from udfmem.events import render as _render
from udfmem.events import schema as _events

# Values as the runtime produces them: finite numbers (sizes, times), any text.
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
TEXT = st.text(min_size=1, max_size=40)
KINDS: dict[type[Any], st.SearchStrategy[Any]] = {
    float: FLOATS,
    int: st.integers(min_value=-(2**62), max_value=2**62),
    str: TEXT,
    bool: st.booleans(),
}


def event_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Events of type ``cls`` with every field drawn (optional ones sometimes None)."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, kind, required in _events.SPECS[cls]:
        if kind is _events.Memory:
            fields[name] = event_strategy(_events.Memory)
            continue
        value = KINDS[kind]
        never_none = required or cls._field_defaults.get(name) is not None
        fields[name] = value if never_none else st.none() | value
    return st.builds(cls, **fields)


ANY_EVENT = st.one_of([event_strategy(cls) for cls in _events.TYPES])
HEADS = st.tuples(TEXT, st.integers(min_value=1, max_value=2**22), TEXT, st.text("abcdefghij", min_size=8, max_size=8))


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
@settings(max_examples=300, deadline=None)
@given(event=ANY_EVENT, head=HEADS)
def test_every_event_round_trips(fmt: str, event: Any, head: tuple[str, int, str, str]) -> None:
    """render -> parse -> from_fields gives back the same event, with the head fields, in both formats."""
    udf, pid, host, worker = head
    line = _render.render(
        event, _render.head(fmt, event.EVENT, udf, pid, host, worker), "2026-11-27T16:00:00.123Z", fmt
    )
    fields = _parse.parse_line(line)
    assert fields is not None
    assert event == _events.from_fields(fields)
    assert (event.EVENT, udf, pid, host, worker, "2026-11-27T16:00:00.123Z") == tuple(fields[k] for k in _events.HEAD)
    assert _events.SCHEMA_VERSION == fields["schema"]
    if fmt == "json":
        assert fields == json.loads(line)  # valid JSON, not just parseable by udfmem


@settings(max_examples=100, deadline=None)
@given(event=ANY_EVENT, prefix=st.sampled_from([
    "(MapWorker(MapBatches(Embed)) pid=4242, ip=10.0.0.5) ",
    "[`mod.Embed.__call__` Worker #0] ",
    "2026-11-27T16:00:00.123456789Z ",
    "",
]))  # fmt: skip
def test_events_parse_after_engine_prefixes(event: Any, prefix: str) -> None:
    """Ray's, Daft's and kubectl's prefixes in front of a line do not change what is read."""
    for fmt in ("logfmt", "json"):
        line = _render.render(event, _render.head(fmt, event.EVENT, "Embed", 7, "w1", "abcdefgh"), "t", fmt)
        assert event == _parse.parse_event(prefix + line)


def test_to_fields_leaves_out_unknowns_and_splices_memory() -> None:
    """to_fields is flat: the memory block's fields sit beside the snapshot's own; None is absent."""
    snap = _events.Snapshot(64, _events.Memory(rss_mb=812.4, arrow_live_mb=0.0), growth_mb=None, window_calls=32)
    assert {"call": 64, "rss_mb": 812.4, "arrow_live_mb": 0.0, "window_calls": 32, "window_s": 0.0} == (
        _events.to_fields(snap)
    )


@pytest.mark.parametrize(
    "line",
    [
        "an ordinary log line",
        "event=udfmem.snapshot udf=U pid=1 call=1 rss_mb=1.0 schema=2",  # a newer schema
        "event=udfmem.snapshot udf=U pid=1 rss_mb=1.0",  # call missing
        "event=udfmem.snapshot udf=U pid=1 call=lots rss_mb=1.0",  # wrong type
        'event=udfmem.warning udf=U what=x message="cut in the mid',  # truncated quote
        '{"event": "udfmem.snapshot", "call": 1, "memory": ',  # truncated JSON
        "\x00\xff\xfe event=udfmem.nosuch udf=U",
        "event=udfmem.",
        "event=udfmem.snapshot udf=U call=5 rss_mb=" + "9" * 400,  # too large for a float
        '{"event":"udfmem.snapshot","call":5,"rss_mb":' + "9" * 400 + "}",
    ],
)
def test_other_lines_are_none_never_an_error(line: str) -> None:
    """Lines that are not a readable event of this schema give None (diagnose counts them as skipped)."""
    assert _parse.parse_event(line) is None


def test_json_is_read_whatever_its_key_order_and_spacing() -> None:
    """JSON written by another serializer (spaces, other key order) is read too: no byte-layout dependence."""
    line = 'prefix {"call": 3, "event": "udfmem.snapshot", "udf": "U", "rss_mb": 2.5, "window_s": 1}'
    event = _parse.parse_event(line)
    assert _events.Snapshot(3, _events.Memory(rss_mb=2.5), window_s=1.0) == event


def test_templates_leave_out_unknown_fields() -> None:
    """A field whose value is None is not written at all (no ``key=None``)."""
    memory = _events.Memory(rss_mb=1.5, heap_in_use_mb=None)
    line = _render.render(_events.Snapshot(8, memory), "event=udfmem.snapshot udf=U", "t")
    assert "heap_in_use_mb" not in line
    assert "None" not in line
    assert line.endswith(" schema=1")


SNAPSHOTS = event_strategy(_events.Snapshot)


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
@settings(max_examples=200, deadline=None)
@given(event=SNAPSHOTS, segment=st.integers(min_value=0, max_value=100))
def test_the_detector_and_the_reader_read_one_point_from_a_snapshot(fmt: str, event: Any, segment: int) -> None:
    """The online detector's point (from the typed event) is the log reader's (from the rendered line's fields)."""
    from udfmem.events import point as _point

    line = _render.render(event, _render.head(fmt, event.EVENT, "U", 7, "w1", "abcdefgh"), "t", fmt)
    # None from both where a figure is not sane (the reader skips such a line)
    assert _point.of_snapshot(event, segment) == _point.of_fields(_parse.parse_line(line) or {}, segment)


def test_one_field_list_drives_the_point_the_sample_and_the_gauges() -> None:
    """The schema's snapshot fields fill every Point figure; MemorySample and the gauges name schema fields."""
    import dataclasses

    from udfmem.analysis.series import Point
    from udfmem.emit.sinks.gauges import GAUGES
    from udfmem.events import point as _point
    from udfmem.probes.memory import MemorySample

    assert [f for f in Point._fields if f != "segment"] == [
        next(s.point for s in _events.POINT_FIELDS if s.name == name) for name in _point.NAMES
    ]
    assert ["pid", "ts", *_events.Memory._fields] == [f.name for f in dataclasses.fields(MemorySample)]
    snapshot_fields = {s.name for s in _events.FIELDS[_events.Snapshot]}
    assert all(g.field.removeprefix("memory.") in snapshot_fields for g in GAUGES)
    table = _events.field_table()
    assert [f"`{name}`" for name in snapshot_fields if f"`{name}`" not in table] == []


def test_the_readme_names_every_field_of_every_event() -> None:
    """Each field in the schema's one list is named in the README's Events section: a new field cannot go unsaid."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    events = readme[readme.index("## Events") : readme.index("## Probes and their cost")]
    missing = {s.name for cls in _events.FIELDS for s in _events.FIELDS[cls] if f"`{s.name}`" not in events}
    assert set() == missing
