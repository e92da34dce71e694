"""Finding and opening the inputs of the commands: files, directories, ``.gz``, stdin.

What a command is asked to read, resolved to the files it will read plus every input it
cannot read, each a :class:`LogError` naming the path and why. Nothing is skipped
silently and nothing blocks:

- a directory that cannot be listed (or vanishes) is an input that cannot be read;
- a directory's files are read sorted by name, a rotated log's pieces oldest first
  (``x.log.2``, ``x.log.1``, ``x.log``: :func:`log_order`);
- in a directory, a regular file (or a link to one) is read; a broken link is an input
  that cannot be read; a FIFO, socket or device, or a link to a directory (never
  followed), is not a log: it is skipped with a note (:attr:`LogError.note`), since a
  session directory legitimately holds sockets;
- a path named explicitly must be a regular file of a real filesystem: a FIFO, a device
  or a pseudo file (``/proc``, ``/sys``, cgroup and similar filesystems, whose "regular"
  files such as ``/proc/kmsg`` can block a read forever) cannot be read;
- files are opened non-blocking and checked again once open (a path swapped for a FIFO
  between the check and the open still cannot block).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import re
import stat
import sys
from collections.abc import Iterable
from typing import BinaryIO

from .._text import printable

PSEUDO_FILESYSTEMS = frozenset(
    {
        "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs", "bpf", "pstore",
        "efivarfs", "fusectl", "binfmt_misc", "devpts", "mqueue", "autofs", "rpc_pipefs", "nsfs", "selinuxfs",
    }
)  # fmt: skip
"""Filesystems whose files are the kernel's, not logs (a read may block, or never end)."""

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
}


class LogError(Exception):
    """An input that cannot be read: ``path`` and ``reason``; ``str()`` is ``cannot read PATH: REASON``.

    ``note`` marks what a directory held that is not a log (a FIFO, socket, device or a
    link to a directory): named as skipped, not counted as unreadable.
    """

    def __init__(self, path: str, reason: str, *, note: bool = False) -> None:
        self.path = path
        self.reason = reason
        self.note = note
        super().__init__(f"skipped {printable(path)}: {reason}" if note else f"cannot read {printable(path)}: {reason}")

    @classmethod
    def of(cls, path: str, exc: OSError) -> LogError:
        """``path`` could not be read because of ``exc``."""
        return cls(path, why(exc))


def why(exc: OSError) -> str:
    """An OSError's reason as one lower-case phrase (``permission denied``, ``no such file or directory``)."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


@functools.lru_cache(maxsize=1)
def _pseudo_devices() -> dict[int, str]:
    """``st_dev`` -> filesystem type of every mounted pseudo filesystem (from mountinfo; ``/proc``, ``/sys`` always)."""
    found: dict[int, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                head, sep, tail = line.partition(" - ")
                fields, kind = head.split(), tail.split()[:1]
                if sep and len(fields) > 2 and kind and kind[0] in PSEUDO_FILESYSTEMS:
                    major, _, minor = fields[2].partition(":")
                    if major.isdigit() and minor.isdigit():
                        found[os.makedev(int(major), int(minor))] = kind[0]
    except OSError:
        pass  # no mountinfo (not Linux): /proc and /sys below
    for path, fstype in (("/proc", "proc"), ("/sys", "sysfs")):
        with contextlib.suppress(OSError):
            found.setdefault(os.stat(path).st_dev, fstype)
    return found


def _refusal(path: str, st: os.stat_result) -> LogError | None:
    """Why the file ``st`` describes is no log to read, or None for a regular file of a real filesystem."""
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode))
        return LogError(path, f"not a regular file ({kind})" if kind else "not a regular file")
    fstype = _pseudo_devices().get(st.st_dev)
    if fstype is not None:
        return LogError(path, f"a pseudo file ({fstype}), not a log")
    return None


def check_file(path: str) -> None:
    """Raise :class:`LogError` unless ``path`` is a regular file of a real filesystem (without opening it)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LogError.of(path, exc) from None
    refusal = _refusal(path, st)
    if refusal is not None:
        raise refusal


_ROTATED = re.compile(r"(.+)\.([0-9]{1,9})(?:\.gz)?")


def log_order(name: str) -> tuple[str, int, int]:
    """The sort key of the files in a directory: by name, a rotated log's pieces oldest first.

    ``worker.err.2``, ``worker.err.1`` (or ``.1.gz``), then ``worker.err``: Python's
    ``RotatingFileHandler`` and logrotate number the pieces older the higher. A worker's
    pieces read oldest first hand its snapshots to its series in call order (a series
    skips a call before its latest, as a repeat).
    """
    rotated = _ROTATED.fullmatch(name)
    if rotated is None:
        return (name, 1, 0)
    return (rotated[1], 0, -int(rotated[2]))


def _walk(top: str, suffix: str, files: list[str], problems: list[LogError]) -> None:
    """The files under the directory ``top`` whose names end with ``suffix``, sorted; what could not be read."""

    def unlisted(exc: OSError) -> None:
        problems.append(LogError(str(exc.filename or top), why(exc)))

    for root, dirs, names in os.walk(top, onerror=unlisted):
        dirs.sort()
        for name in [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            dirs.remove(name)  # os.walk would not follow it either: say so
            problems.append(LogError(os.path.join(root, name), "a link to a directory (not followed)", note=True))
        for name in sorted(names, key=log_order):
            if not name.endswith(suffix):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except FileNotFoundError as exc:
                problems.append(LogError(path, "a broken link" if os.path.islink(path) else why(exc)))
                continue
            except OSError as exc:
                problems.append(LogError.of(path, exc))
                continue
            refusal = _refusal(path, st)
            if refusal is None:
                files.append(path)
            elif stat.S_ISREG(st.st_mode):
                problems.append(refusal)  # a pseudo file: an input that cannot be read
            else:
                problems.append(LogError(path, refusal.reason, note=True))


def find_logs(paths: Iterable[str], suffix: str = "") -> tuple[list[str], list[LogError]]:
    """The files named by ``paths`` and what could not be read (module docstring), in the order given.

    Files are kept as given (checked when opened), ``-`` is stdin, directories are walked
    (sorted) for regular files whose names end with ``suffix``.
    """
    files: list[str] = []
    problems: list[LogError] = []
    for path in paths:
        if path != "-" and os.path.isdir(path):
            _walk(path, suffix, files, problems)
        else:
            files.append(path)
    return files, problems


def open_input(path: str) -> BinaryIO:
    """``path`` for reading bytes; a gzip file (by its magic bytes, whatever its name) decompressed.

    ``-`` is stdin. Anything else must be a regular file of a real filesystem, checked
    before opening (opening a FIFO or a device can block, or act) and again once opened
    non-blocking; raises :class:`LogError`.
    """
    if path == "-":
        return sys.stdin.buffer
    check_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise LogError.of(path, exc) from None
    try:
        refusal = _refusal(path, os.fstat(fd))
        if refusal is not None:
            raise refusal
        os.set_blocking(fd, True)  # a regular file ignores it; the reads below are ordinary ones
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        gzipped = f.peek(2)[:2] == b"\x1f\x8b"
    except OSError as exc:
        f.close()
        raise LogError.of(path, exc) from None
    if gzipped:
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f
