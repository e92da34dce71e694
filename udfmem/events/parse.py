"""Lines in: find a udfmem event in a line (logfmt or JSON, after any prefix) and read its fields.

An event is found anywhere in a line (after Ray's, Daft's or kubectl's prefixes), in
either format, without relying on the byte layout the renderer happens to produce.
:func:`parse_line` gives the fields as a dict (what the log reader and the tests read);
:func:`parse_event` gives the typed event (:func:`udfmem.events.schema.from_fields`).
The log reader's fast path for udfmem's own snapshot lines is in
:mod:`udfmem.commands._logs` (it reads bytes, by the schema's field list).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from . import schema as _events

_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\S*)')
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z|[+-]?(inf|nan)\Z")
_EVENT = re.compile(r"""(?<![A-Za-z0-9_])event=["']?udfmem\.""")
_FLAG = re.compile(r"(?<=\s)final(?=\s|\Z)")
_decoder = json.JSONDecoder()
JSON_STARTS = 8
"""Objects tried per line (from its first ``{`` on): a prefix holds few; a hostile line holds thousands."""


def value(raw: str) -> Any:
    """One raw logfmt value as the parser reads it: quoted strings, booleans, numbers, else the text."""
    if raw.startswith('"'):
        return json.loads(raw)
    if raw.startswith("'") and len(raw) > 1:  # Python's repr (structlog's KeyValueRenderer)
        return _python_str(raw)
    if raw == "true":
        return True
    if raw == "false":
        return False
    if _INT.match(raw):
        return int(raw)
    if _FLOAT.match(raw):
        return float(raw)
    return raw


def _python_str(raw: str) -> Any:
    if "\\" not in raw:
        return raw[1:-1]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw
    return value if isinstance(value, str) else raw


def parse_logfmt(text: str) -> dict[str, Any]:
    """Parse ``key=value`` pairs; quoted values (JSON or Python strings) are strings, numbers become numbers."""
    return {key: value(raw) for key, raw in _PAIR.findall(text)}


def _parse_json(line: str) -> dict[str, Any] | None:
    start = line.find("{")
    for _ in range(JSON_STARTS):
        if start < 0:
            break
        try:
            obj, _ = _decoder.raw_decode(line, start)
        except ValueError:
            obj = None
        except RecursionError:  # nested deeper than the interpreter's limit: nothing of udfmem's
            return None
        if isinstance(obj, dict) and str(obj.get("event", "")).startswith("udfmem."):
            return obj
        start = line.find("{", start + 1)
    return None


def parse_line(line: str) -> dict[str, Any] | None:
    """The udfmem event's fields in ``line`` (logfmt or JSON, after any prefix), else None.

    logfmt pairs are read on both sides of ``event=`` (structlog's renderers write the
    event last); where a name is on both sides, the one after ``event=`` counts.
    """
    if "udfmem." not in line:
        return None
    if '"event"' in line:
        found = _parse_json(line)
        if found is not None:
            return found
    match = _EVENT.search(line)
    if match is None:
        return None
    start = match.start()
    try:
        fields = {**parse_logfmt(line[:start]), **parse_logfmt(line[start:])}
    except ValueError:  # a truncated quoted value
        return None
    if "final" not in fields and _FLAG.search(line) is not None:
        fields["final"] = True  # structlog's LogfmtRenderer writes a true flag as its bare name
    return fields


def parse_event(line: str) -> _events.Event | None:
    """The udfmem event in ``line`` as its type, or None (other lines, other schemas, garbage)."""
    fields = parse_line(line)
    if fields is None:
        return None
    try:
        return _events.from_fields(fields)
    except _events.SchemaError:
        return None
