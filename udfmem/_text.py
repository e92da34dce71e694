"""Text from untrusted input made safe to print, and long values cut to a bound.

Log values, sidecar fields and environment values are written by somebody else: an ESC,
BEL, CR or LF in them could clear the reader's screen, retitle the window or forge a
line. Everything udfmem prints from input goes through :func:`printable`; values it
echoes into its own lines go through :func:`capped`, so a line stays shorter than a pipe's
atomic write size and is never torn between workers sharing a stderr.
"""

from __future__ import annotations

import hashlib
import re

MAX_ECHO = 200
"""Characters of an echoed value (a UDF name, a bad env value) kept before the cut marker."""

MAX_LINE = 4000
"""Bytes of the longest line udfmem writes (newline excluded): under ``PIPE_BUF`` (4096 on Linux).

A write of at most ``PIPE_BUF`` bytes to a pipe is atomic, so lines of workers sharing one
stderr pipe never tear into each other. Rendered lines are ASCII (JSON escapes the rest).
"""

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


def capped_id(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to at most ``limit`` characters in all, marker included, keeping it an identifier.

    The marker names how many characters were dropped and a digest of the whole text, so
    two long values that differ only after the cut stay distinct, and the same value is
    cut the same way in every process. Idempotent: a result is never cut again.
    """
    if len(text) <= limit:
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    keep = max(0, limit - (22 + len(str(len(text)))))  # the marker is 22 characters plus the count's digits
    return f"{text[:keep]}...[+{len(text) - keep} chars #{digest}]"
