"""Finding and opening the inputs of the log commands: files, directories, ``.gz``, stdin.

What a command is asked to read, resolved to the files it will read; a path that cannot
be read is a :class:`LogError` (the command says so in one line and exits 2).
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterable
from typing import BinaryIO


class LogError(Exception):
    """A path that cannot be read (the command exits 2 with this one line)."""


def find_logs(paths: Iterable[str]) -> list[str]:
    """The files named by ``paths``: files as given, directories walked (regular files, sorted), ``-`` for stdin."""
    found: list[str] = []
    for path in paths:
        if path == "-":
            found.append(path)
        elif os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found += sorted(os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n)))
        elif os.path.exists(path):
            if not os.path.isfile(path):
                raise LogError(f"cannot read {path}: not a regular file")
            found.append(path)
        else:
            raise LogError(f"cannot read {path}: no such file or directory")
    return found


def open_input(path: str) -> BinaryIO:
    """``path`` for reading bytes; a gzip file (by its magic bytes, whatever its name) decompressed."""
    if path == "-":
        return sys.stdin.buffer
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if f.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f
