"""The JSON-lines sink (``UDFMEM_LOG_DIR``): ``udfmem-<host>-<pid>.jsonl``, one file per process.

Lines are appended with one ``write`` each on an ``O_APPEND`` descriptor, so lines from
threads never interleave. A fork child opens its own file on first use. The file is
never opened through a symbolic link (``O_NOFOLLOW``) and must be a regular file of this
user: a name planted in a shared directory is refused, with one warning.

If the file is deleted while the process runs (``UDFMEM_LOG_DIR`` removed, a cleanup job),
the next line notices (the link count of the descriptor's file is 0, read by the same
``fstat`` that checks the descriptor is still ours: no extra system call) and makes the
directory and the file again, with the same safeguards; that line and the following ones
land in the new file. Only a line written while the removal happens can be lost.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from ...probes.fds import SAFE_CREATE, KeptFd, check_own_regular_file


class JsonlSink:
    """Appends JSON lines to this process's file in ``directory``.

    If the file cannot be opened or written, ``on_error`` is told once and the sink
    stays off in this process (no retry per event).
    """

    format = "json"

    def __init__(self, directory: str, host: str, on_error: Callable[[str, OSError], None] | None = None) -> None:
        self.directory = directory
        self.host = host
        self._on_error = on_error
        self._kept: KeptFd | None = None
        self._pid = -1
        self._broken_pid = -1
        self._lock = threading.Lock()

    def path(self, pid: int) -> str:
        """The file of process ``pid``."""
        return os.path.join(self.directory, f"udfmem-{self.host}-{pid}.jsonl")

    def _file(self, pid: int) -> int:
        kept = self._kept
        if self._pid != pid or kept is None:
            with self._lock:
                if self._pid != pid or self._kept is None:
                    self._open(pid)  # a fork child's copy of the parent's file is closed there
                kept = self._kept
        assert kept is not None
        fd = kept.get()  # the user may have closed our fd and reused its number
        if fd is None or kept.links == 0 or kept is not self._kept:  # deleted: make it again
            with self._lock:
                if kept is self._kept:
                    self._open(pid)
                else:  # another thread made it again meanwhile: close what our look may have reopened
                    kept.close()
                kept = self._kept
            fd = kept.get() if kept is not None else None
        if fd is None:
            raise OSError(f"cannot reopen {self.path(pid)}")
        return fd

    def _open(self, pid: int) -> int:
        """(Re)make the directory and open this process's file in it, never through a link (under the lock)."""
        if self._kept is not None:
            self._kept.close()  # only if the number is still ours
        self._kept = None
        os.makedirs(self.directory, exist_ok=True)
        kept = KeptFd(self.path(pid), os.O_WRONLY | os.O_APPEND | SAFE_CREATE, check=check_own_regular_file)
        fd = kept.open()
        self._kept, self._pid = kept, pid
        return fd

    def write(self, line: str) -> None:
        """Append ``line``. Never raises: the first failure is reported once and the sink turns off."""
        pid = os.getpid()
        if self._broken_pid == pid:
            return
        try:
            fd = self._file(pid)
            data = (line + "\n").encode()
            written = os.write(fd, data)
            if written != len(data):  # a full disk: end the torn line so the next one starts clean
                with contextlib.suppress(OSError):
                    os.write(fd, b"\n")
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            self._broken_pid = pid
            if self._on_error is not None:
                with contextlib.suppress(Exception):
                    self._on_error(self.path(pid), exc)

    def after_fork(self) -> None:
        """In a fork child: a fresh lock (the parent's may have been held)."""
        self._lock = threading.Lock()
