"""Text from untrusted input made safe to print, and long values cut to a bound.

Log values, sidecar fields and environment values are written by somebody else: an ESC,
BEL, CR or LF in them could clear the reader's screen, retitle the window or forge a
line. Everything udfmem prints from input goes through :func:`printable`; values it
echoes into its own lines go through :func:`capped`, so a line stays shorter than a pipe's
atomic write size and is never torn between workers sharing a stderr.
"""

from __future__ import annotations

import re

MAX_ECHO = 200
"""Characters of an echoed value (a UDF name, a bad env value) kept before the cut marker."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` with every control character (C0, DEL, C1, line and bidi controls) written as ``\xNN``/``\uNNNN``."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def capped(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters with a marker saying how many were dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[+{len(text) - limit} chars]"
