"""Lines out: render events as logfmt or JSON (:mod:`udfmem.events.parse` reads them back).

Rendering is precompiled: for each event type one function is generated once, with the
field names and quoting decided ahead of time, so a snapshot line costs a few string
concatenations instead of a generic per-field loop (structlog's own renderers cost
8-20 µs a line; a generic loop here cost ~25 µs). The head (``event udf pid host
worker``) is rendered once per emitter; the emitter caches the timestamp's per-second prefix.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from . import schema as _events

_PLAIN = re.compile(r"[A-Za-z0-9_./:@+-]+\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+|inf|nan)\Z", re.IGNORECASE)
_quoted: dict[str, str] = {}
_json_quoted: dict[str, str] = {}
_CACHE_MAX = 4096


def logfmt_str(text: str) -> str:
    """``text`` as a logfmt value: bare when unambiguous, else a JSON string (cached)."""
    out = _quoted.get(text)
    if out is None:
        plain = _PLAIN.match(text) and not _NUMBER.match(text) and text not in ("true", "false")
        out = text if plain else json.dumps(text)
        if len(_quoted) < _CACHE_MAX:
            _quoted[text] = out
    return out


def json_str(text: str) -> str:
    """``text`` as a JSON string (cached)."""
    out = _json_quoted.get(text)
    if out is None:
        out = json.dumps(text)
        if len(_json_quoted) < _CACHE_MAX:
            _json_quoted[text] = out
    return out


def ts_prefix(second: int) -> str:
    """The UTC ISO-8601 time of ``second`` without its fraction, e.g. ``2026-11-22T21:30:00``.

    The emitter caches it per second and appends ``.mmmZ``.
    """
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def head(fmt: str, event: str, udf: str, pid: int, host: str, worker: str) -> str:
    """The rendered head of a line (without ``ts``), for ``fmt`` ``logfmt`` or ``json``."""
    if fmt == "json":
        return f'{{"event":{json_str(event)},"udf":{json_str(udf)},"pid":{pid},"host":{json_str(host)},' + (
            f'"worker":{json_str(worker)}'
        )
    return f"event={logfmt_str(event)} udf={logfmt_str(udf)} pid={pid} host={logfmt_str(host)} worker={worker}"


Template = Callable[[str, str, Any], str]


def _flat(cls: type[Any]) -> list[tuple[str, type[Any], str, bool]]:
    """(name, kind, local variable, required) of every field in line order, ``Memory`` spliced in."""
    return [
        (s.name, s.kind, f"m{s.at}" if s.memory else f"e{s.at}", s.required and not s.memory)
        for s in _events.FIELDS[cls]
    ]


def _part(fmt: str, name: str, kind: type[Any], var: str, required: bool, keys: list[str]) -> str:
    """An f-string fragment for a field: required numbers as they are, anything optional conditional.

    Expressions only name local variables (a key is the default argument ``_Ki``): an
    f-string expression may hold neither quotes of its own kind nor backslashes before
    Python 3.12, and locals are the cheapest names to read.
    """
    key = f',"{name}":' if fmt == "json" else f" {name}="
    if kind in (str, bool):
        keys.append(key)
        k = f"_K{len(keys) - 1}"
        value = ("_jstr" if fmt == "json" else "_lstr") + f"({var})" if kind is str else f"(_T if {var} else _F)"
        return f"{{_E if {var} is None else {k} + {value}}}"
    if not required:
        keys.append(key)
        value = f"_jnum({var})" if kind is float and fmt == "json" else f"_repr({var})"
        return f"{{_E if {var} is None else _K{len(keys) - 1} + {value}}}"
    number = f"_jnum({var})" if kind is float and fmt == "json" else var  # str() of an int or float is its repr
    return key.replace("{", "{{").replace("}", "}}") + f"{{{number}}}"


def _compile(cls: type[Any], fmt: str) -> Template:
    """Generate the renderer of ``cls`` in ``fmt``: one f-string, optional fields in conditional parts.

    The event and its memory block are unpacked into locals first, and keys and helpers are
    default arguments (locals too): a snapshot line reads no global and indexes no tuple.
    """
    fields = _flat(cls)
    tail = f',"schema":{_events.SCHEMA_VERSION}}}' if fmt == "json" else f" schema={_events.SCHEMA_VERSION}"
    keys: list[str] = []
    start = '{head},"ts":"{ts}"' if fmt == "json" else "{head} ts={ts}"
    body = "".join(_part(fmt, name, kind, var, required, keys) for name, kind, var, required in fields)
    specs = _events.SPECS[cls]
    helpers: dict[str, Any] = {"_jstr": json_str, "_lstr": logfmt_str, "_jnum": _json_number, "_repr": repr}
    helpers.update({"_E": "", "_T": "true", "_F": "false"}, **{f"_K{i}": key for i, key in enumerate(keys)})
    defaults = ", ".join(f"{name}={name}" for name in helpers)
    lines = [f"def render(head, ts, e, {defaults}):"]
    lines.append(f"    {', '.join(f'e{i}' for i in range(len(specs)))}, = e")
    memory_at = [i for i, (_, kind, _r) in enumerate(specs) if kind is _events.Memory]
    if memory_at:
        lines.append(f"    {', '.join(f'm{i}' for i in range(len(_events.SPECS[_events.Memory])))}, = e{memory_at[0]}")
    lines.append(f'    return f"""{start}{body}{tail.replace("}", "}}")}"""')
    namespace: dict[str, Any] = dict(helpers)
    exec(compile("\n".join(lines), f"<udfmem render {cls.EVENT} {fmt}>", "exec"), namespace)
    template: Template = namespace["render"]
    return template


def _json_number(value: float) -> str:
    text = repr(value)
    return "null" if text[-1] in "nf" else text  # nan, inf: not JSON; sizes and times are never either


TEMPLATES: dict[tuple[type[Any], str], Template] = {
    (cls, fmt): _compile(cls, fmt) for cls in _events.TYPES for fmt in ("logfmt", "json")
}


def render(event: _events.Event, head_text: str, ts: str, fmt: str = "logfmt") -> str:
    """One line for ``event`` after its rendered ``head_text`` (see :func:`head`)."""
    return TEMPLATES[type(event), fmt](head_text, ts, event)
