"""The stderr sink: one line per event on the worker's current ``sys.stderr``."""

from __future__ import annotations

import sys


class StderrSink:
    """Writes to whatever ``sys.stderr`` is at the time (tests and engines replace it)."""

    def __init__(self, fmt: str = "logfmt") -> None:
        self.format = fmt

    def write(self, line: str) -> None:
        """Write ``line`` and a newline; flush unless the stream is line-buffered. Never raises."""
        try:
            stream = sys.stderr
            if stream is not None:
                stream.write(line + "\n")
                if not getattr(stream, "line_buffering", False):
                    stream.flush()
        except Exception:  # closed, broken, or a stand-in without flush(): never cut the snapshot
            pass
