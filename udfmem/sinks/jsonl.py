"""The JSON-lines sink (``UDFMEM_LOG_DIR``): ``udfmem-<host>-<pid>.jsonl``, one file per process.

Lines are appended with one ``write`` each on an ``O_APPEND`` descriptor, so lines from
threads never interleave. A fork child opens its own file on first use.
"""

from __future__ import annotations

import contextlib
import os
import threading


class JsonlSink:
    """Appends JSON lines to this process's file in ``directory``."""

    format = "json"

    def __init__(self, directory: str, host: str) -> None:
        self.directory = directory
        self.host = host
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def path(self, pid: int) -> str:
        """The file of process ``pid``."""
        return os.path.join(self.directory, f"udfmem-{self.host}-{pid}.jsonl")

    def _file(self) -> int:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    os.makedirs(self.directory, exist_ok=True)
                    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                    self._fd = os.open(self.path(pid), flags, 0o644)
                    self._pid = pid
        assert self._fd is not None
        return self._fd

    def write(self, line: str) -> None:
        """Append ``line``; I/O errors are swallowed (telemetry never raises)."""
        with contextlib.suppress(OSError):
            os.write(self._file(), (line + "\n").encode())
