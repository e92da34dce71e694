"""Kept file descriptors that notice when they are no longer the file udfmem opened.

udfmem keeps a few descriptors open (``/proc/self/statm``, ``/proc/self/clear_refs``,
the cgroup's usage file, a JSON-lines file). A user may close them (``os.closerange``)
and open files of their own that get the same numbers; writing ``5`` to "clear_refs"
would then write into the user's file. Each use first compares ``fstat``'s device and
inode with those taken at open (~0.5 µs); on a mismatch the number is left alone (it is
the user's now) and the file is opened again.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

#: create a file udfmem writes: never through a link, and only a regular file of our own
SAFE_CREATE = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def check_own_regular_file(st: os.stat_result) -> None:
    """Refuse (``PermissionError``) a file udfmem would write that is not a regular file of this user."""
    if not stat.S_ISREG(st.st_mode) or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
        raise PermissionError("not a regular file owned by this user (a planted file or device?)")


class KeptFd:
    """One kept descriptor: :meth:`get` returns it only while it is still the file opened here."""

    def __init__(
        self, path: str, flags: int, mode: int = 0o644, check: Callable[[os.stat_result], None] | None = None
    ) -> None:
        self.path = path
        self._flags = flags | getattr(os, "O_CLOEXEC", 0)
        self._mode = mode
        self._check = check
        self.fd: int | None = None
        self._key: tuple[int, int] | None = None
        self.links = 1  # the file's link count at the last open or get; 0: it was deleted (its directory removed?)

    def open(self) -> int:
        """Open the file now (raises ``OSError``, or ``PermissionError`` from ``check``)."""
        fd = os.open(self.path, self._flags, self._mode)
        try:
            st = os.fstat(fd)
            if self._check is not None:
                self._check(st)
        except OSError:
            os.close(fd)
            raise
        self.fd, self._key, self.links = fd, (st.st_dev, st.st_ino), st.st_nlink
        return fd

    def get(self) -> int | None:
        """The descriptor, reopened if it is no longer ours; None if the file cannot be opened."""
        fd = self.fd
        if fd is not None:
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == self._key:
                    self.links = st.st_nlink
                    return fd
            except OSError:
                pass
            self.fd = None  # closed, or the number is someone else's now: never touch it again
        try:
            return self.open()
        except OSError:
            return None

    def close(self) -> None:
        """Close the descriptor if it is still ours."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == self._key:
                os.close(fd)
        except OSError:
            pass
