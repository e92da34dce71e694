"""Reading udfmem events back from log lines (logfmt or JSON, with or without a prefix).

Ray prefixes worker lines on the driver (``(MapWorker(MapBatches(Embed)) pid=123) ``);
this reader finds the event wherever it starts in the line.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z")


def _value(raw: str) -> Any:
    if raw.startswith('"'):
        return json.loads(raw)
    if raw == "true":
        return True
    if raw == "false":
        return False
    if _INT.match(raw):
        return int(raw)
    if _FLOAT.match(raw):
        return float(raw)
    return raw


def parse_logfmt(text: str) -> dict[str, Any]:
    """Parse ``key=value`` pairs; quoted values are JSON strings, numbers become numbers."""
    return {key: _value(raw) for key, raw in _PAIR.findall(text)}


def parse_line(line: str) -> dict[str, Any] | None:
    """The udfmem event in ``line`` (logfmt or JSON, after any prefix), else None."""
    brace = line.find('{"event":"udfmem.')
    if brace >= 0:
        try:
            event = json.loads(line[brace:])
        except ValueError:
            return None
        return event if isinstance(event, dict) else None
    start = line.find("event=udfmem.")
    if start < 0:
        return None
    return parse_logfmt(line[start:])
