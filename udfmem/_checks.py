"""Checks, parsers and formatters of setting values (the settings table's building blocks).

A check takes a decorator or ``worker_env`` value and returns it normalised, or raises
``TypeError``/``ValueError`` with a message naming the fix; a parser turns an environment
text into a value a check accepts; a formatter turns a checked value back into the text a
worker parses.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from ._text import capped, capped_id

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
TRIM_MODES = ("auto", "off")
LOG_FORMATS = ("logfmt", "json", "structlog")
METRICS_EXPORTERS = ("ray", "otel")
C_INT_MAX = 2**31 - 1


# -- checks: a decorator or override value -> the value, or TypeError/ValueError ------------


def shown(value: object) -> str:
    """``repr(value)`` for a message, capped: a message must not echo a 100 KB value whole."""
    try:
        text = repr(value)
    except Exception:  # an int too long to print (Python's digit limit), a broken __repr__
        text = f"<a {type(value).__name__}>"
    return capped(text)


def check_positive_int(value: object, what: str) -> int:
    """A positive int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udfmem: {what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"udfmem: {what} must be >= 1, got {shown(value)}")
    return value


def check_optional_int(value: object, what: str) -> int | None:
    """None, or a positive int."""
    return None if value is None else check_positive_int(value, what)


def check_arena_max(value: object, what: str) -> int | None:
    """None, or an arena count that fits glibc's C int (a larger one would wrap to 0 in ``mallopt``)."""
    count = check_optional_int(value, what)
    if count is not None and count > C_INT_MAX:
        raise ValueError(f"udfmem: {what} must be <= {C_INT_MAX}, got {shown(count)}")
    return count


def check_seconds(value: object, what: str) -> float:
    """A finite number of seconds >= 0 (0 turns the clock off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"udfmem: {what} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"udfmem: {what} must be >= 0 and finite (0 turns it off), got {shown(value)}")
    return seconds


def check_trim(value: object, what: str) -> str | int:
    """``"auto"``, ``"off"`` or a positive number of calls."""
    if isinstance(value, str) and value.strip().lower() in TRIM_MODES:
        return value.strip().lower()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udfmem: {what} must be 'auto', 'off' or an int number of calls, got {shown(value)}")
    if value < 1:
        raise ValueError(f"udfmem: {what} must be >= 1 calls, got {shown(value)}")
    return value


def check_name(value: object, what: str) -> str:
    """A non-empty str, cut to :data:`~udfmem._text.MAX_ECHO` characters with a marker if longer.

    Every line carries the name: a 5 KB one would make lines longer than a pipe's atomic
    write. The cut keeps a digest of the whole name, so distinct long names stay distinct
    and a worker cuts the same name the same way (``diagnose`` groups by it).
    """
    if not isinstance(value, str) or not value:
        raise TypeError(f"udfmem: {what} must be a non-empty str, got {shown(value)}")
    return capped_id(value)


def check_methods(value: object, what: str) -> tuple[str, ...]:
    """A non-empty tuple (or list) of distinct method names."""
    if isinstance(value, str):
        raise TypeError(f"udfmem: {what} must be a sequence of names, not a str (did you mean ({shown(value)},)?)")
    if not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"udfmem: {what} must be a non-empty tuple of method names, got {shown(value)}")
    for method in value:
        if not isinstance(method, str) or not method.isidentifier():
            raise TypeError(f"udfmem: {what} must hold method names, got {shown(method)}")
    if len(set(value)) != len(value):
        raise ValueError(f"udfmem: {what} names a method twice: {shown(value)}")
    return tuple(value)


def check_setup(value: object, what: str) -> str | None:
    """A method name, or None."""
    if value is not None and (not isinstance(value, str) or not value.isidentifier()):
        raise TypeError(f"udfmem: {what} must be a method name or None, got {shown(value)}")
    return value


def check_env_name(value: object, what: str) -> str:
    """The name of an environment variable."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise TypeError(f"udfmem: {what} must name an environment variable, got {shown(value)}")
    return value


def check_bool(value: object, what: str) -> bool:
    """A bool."""
    if not isinstance(value, bool):
        raise TypeError(f"udfmem: {what} must be a bool, got {shown(value)}")
    return value


def check_format(value: object, what: str) -> str:
    """One of :data:`LOG_FORMATS` (any case)."""
    low = str(value).strip().lower()
    if low not in LOG_FORMATS:
        raise ValueError(f"udfmem: {what} must be one of {', '.join(LOG_FORMATS)}, got {shown(value)}")
    return low


def check_dir(value: object, what: str) -> str | None:
    """None, or a non-empty path."""
    if value is None:
        return None
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"udfmem: {what} must be a non-empty path, got {shown(value)}")
    return path.strip()


def check_metrics(value: object, what: str) -> tuple[str, ...]:
    """The metrics exporters: ``"off"``, ``"ray"``, ``"otel"``, ``"ray,otel"`` (or a sequence of names).

    Returns the distinct exporter names in :data:`METRICS_EXPORTERS` order (``()``: off).
    Case, spaces and empty items (``"ray,"``) do not matter; ``off`` alone means off.
    """
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        parts = list(value)
    else:
        raise TypeError(f"udfmem: {what} must be 'off', 'ray', 'otel' or 'ray,otel', got {shown(value)}")
    names = [n for n in (p.strip().lower() for p in parts) if n]
    if names in ([], ["off"], ["none"], ["0"], ["false"]):
        return ()
    unknown = [n for n in names if n not in METRICS_EXPORTERS]
    if unknown:
        known = ", ".join(("off", *METRICS_EXPORTERS))
        raise ValueError(f"udfmem: {what} names unknown exporters {shown(unknown)}; known: {known}")
    return tuple(n for n in METRICS_EXPORTERS if n in names)


# -- parsers: an environment text -> a value a check accepts ---------------------------------


def parse_bool(raw: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (empty is false)."""
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def parse_int(raw: str) -> int:
    """A decimal int."""
    return int(raw.strip())


def parse_float(raw: str) -> float:
    """A decimal number."""
    return float(raw.strip())


def parse_trim(raw: str) -> str | int:
    """``auto``, ``off`` or a decimal int."""
    text = raw.strip()
    return int(text) if text.lstrip("+-").isdigit() else text


def parse_text(raw: str) -> str:
    """The text itself."""
    return raw


# -- formatters: a checked value -> the environment text a worker parses back ----------------


def format_bool(value: Any) -> str:
    """``1`` or ``0``."""
    return "1" if value else "0"


def format_metrics(value: Any) -> str:
    """``off`` or the exporters comma-separated."""
    return ",".join(value) or "off"


def format_abs_path(value: Any) -> str:
    """An absolute path: workers run in other directories."""
    return os.path.abspath(str(value))
