"""Reading memray profiles in a child process, so that a crash of memray's native reader costs one file.

memray's reader is native code: on some corrupted files it segfaults or aborts (glibc's
"free(): invalid next size"), which would end ``udfmem report`` with every other file's
result. Here one child process reads the files one at a time (a request line in, a JSON
line out, its stderr kept in a temporary file); when it dies by a signal, exits, or
takes longer than the time limit, that file fails with a one-line reason
(:class:`ReadFailed`) and a fresh child reads the next one. One child serves many files:
starting one costs ~0.1 s (Python, udfmem and memray imported), reading a small file a
few milliseconds.

The child runs the parent's interpreter isolated (``-I``: no current directory, no
``PYTHON*`` variables on its path) with the parent's ``sys.path``: a ``memray.py`` planted
in a shared profile directory is never imported. :func:`python_argv` builds such an
argv for any module (``udfmem report --flamegraph`` runs memray's CLI with it).

:func:`leaks` is the one reading of a memray file into plain records, for both callers:
the child here (``udfmem report``, on files anybody may have written) and
``udfmem.testing`` (``stacks=True``, on the fresh file its own tracker just closed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any

from .._text import capped, printable
from ..analysis import profile
from ..analysis.profile import LeakRecord, ProfileHeader, ProfileSummary

READ_TIMEOUT_S = 900.0
"""The longest one file may take to read (a profile of many GiB reads in minutes; a hang never ends)."""

_PATH = "import json, sys; sys.path[:] = json.loads(sys.argv.pop(1)); "
_SERVE = f"{_PATH}from {__name__} import serve; serve()"
_RUN_MODULE = f"{_PATH}import runpy; runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"


def python_argv(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` for a child that imports what this process imports, and nothing from its cwd."""
    return _argv(_RUN_MODULE, module, *args)


def _argv(code: str, *args: str) -> list[str]:
    """``python -I -c CODE`` with this process's ``sys.path`` (made absolute) as the child's."""
    path = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    return [sys.executable, "-I", "-c", code, json.dumps(path), *args]


_LZ4_FRAME = b"\x04\x22\x4d\x18"


def closed_properly(path: str) -> bool:
    """Whether the tracker that wrote ``path`` closed it.

    memray compresses a file (LZ4) when its tracker closes, which udfmem's trackers always
    do; a file still in memray's raw format was never closed: the worker was killed (or
    still runs), and memray's own header figures were never written.
    """
    try:
        with open(path, "rb") as f:
            return f.read(4) == _LZ4_FRAME
    except OSError:
        return False


@contextlib.contextmanager
def leaks(path: str, timed: bool = False) -> Iterator[tuple[ProfileHeader, Iterator[LeakRecord]]]:
    """The memray file at ``path``: its header and what was still allocated when its tracker closed.

    The records (one per allocating stack, threads merged) stream from memray's reader,
    which is closed when the block ends. ``timed``: from memray's temporal records, each
    with when its live bytes were allocated (``born``) and when its stack allocated at all
    (``active``), stacks with nothing left included (``size`` 0): what tells a one-time
    buffer from per-call growth (:mod:`udfmem.analysis.profile`); a memray without them
    gives the plain records, and so does a pre-aggregated capture (``memray run --aggregate``,
    which keeps no allocation history). memray's reader is native code that may crash the process on
    a corrupted file: a file this process did not just write is read in the child
    (:class:`ProfileReader`), never here. Raises when memray cannot read it.
    """
    import memray

    reader = memray.FileReader(path)
    try:
        meta = reader.metadata
        header = ProfileHeader(
            pid=meta.pid,
            peak_bytes=meta.peak_memory,
            native_traces=bool(meta.has_native_traces),
            ended=closed_properly(path),
        )
        # a pre-aggregated capture (memray run --aggregate) keeps no allocation history: plain records
        aggregated = meta.file_format == memray.FileFormat.AGGREGATED_ALLOCATIONS if timed else False
        temporal = getattr(reader, "get_temporal_allocation_records", None) if timed and not aggregated else None
        yield (
            header,
            (
                _timed(temporal(merge_threads=True))
                if temporal is not None
                else (
                    LeakRecord(record.stack_trace(), record.size, record.n_allocations)
                    for record in reader.get_leaked_allocation_records(merge_threads=True)
                )
            ),
        )
    finally:
        reader.close()


def _timed(records: Iterable[Any]) -> Iterator[LeakRecord]:
    """memray's temporal records as leak records: live intervals are the leak, all intervals the activity."""
    for record in records:
        born: list[tuple[int, int]] = []
        active: set[int] = set()
        size = count = 0
        for interval in record.intervals:
            at = int(interval.allocated_before_snapshot)
            active.add(at)
            if interval.deallocated_before_snapshot is None:
                born.append((at, int(interval.n_bytes)))
                size += int(interval.n_bytes)
                count += int(interval.n_allocations)
        yield LeakRecord(record.stack_trace(), size, count, tuple(born), tuple(sorted(active)))


class ReadFailed(Exception):
    """A profile the child could not read: memray's reason, or how the child ended (one line)."""


class ProfileReader:
    """Summarize profiles in a child process that is restarted when it dies (see the module docstring).

    Use as a context manager, or call :meth:`close`; a child left running exits when this
    process does (its requests pipe closes). Thread-safe: reads are serialized.
    """

    def __init__(self, timeout_s: float = READ_TIMEOUT_S) -> None:
        """``timeout_s``: the time limit of one file's read, in seconds."""
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = b""
        self._timed_out = False
        self._lock = threading.Lock()

    def read(self, path: str, top: int = 5) -> ProfileSummary:
        """The summary of the profile at ``path`` with its ``top`` stacks; raises :class:`ReadFailed`."""
        request = json.dumps({"path": os.path.abspath(path), "top": top}).encode() + b"\n"
        with self._lock:
            proc = self._child()
            try:
                assert proc.stdin is not None
                proc.stdin.write(request)
                proc.stdin.flush()
            except OSError:
                pass  # it died already: the read below finds the end and says how
            line = self._reply(proc, time.monotonic() + self.timeout_s)
            if line is None:
                raise ReadFailed(self._ended(proc))
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ReadFailed(reply["error"])
        return dataclasses.replace(ProfileSummary.from_dict(reply["summary"]), path=path)

    def close(self) -> None:
        """End the child (if one runs)."""
        with self._lock:
            self._stop()

    def __enter__(self) -> ProfileReader:
        """This reader."""
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        """Close."""
        self.close()

    def _child(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _stop
            self._proc = subprocess.Popen(
                _argv(_SERVE),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd="/",
            )
            self._buffer = b""
        return self._proc

    def _reply(self, proc: subprocess.Popen[bytes], deadline: float) -> bytes | None:
        """The child's next line; None when it ended, or was stopped at ``deadline``."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                if time.monotonic() < deadline:
                    continue
                proc.kill()
                proc.wait()
                self._timed_out = True
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _ended(self, proc: subprocess.Popen[bytes]) -> str:
        """Why the child gave no reply, its last line of stderr appended; a fresh child reads the next file."""
        timed_out, self._timed_out = self._timed_out, False
        code = proc.wait()
        last = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines()]
            last = capped(printable(next((line for line in reversed(lines) if line), "")))
        self._stop()
        if timed_out:
            return f"reader took longer than {self.timeout_s:g}s; stopped"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown"
            how = f"reader crashed (signal {-code}, {name})"
        else:
            how = f"reader exited with status {code}"
        return f"{how}: {last}" if last else how

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def serve() -> None:
    """The child's loop: read each requested profile, answer one JSON line per request, until stdin closes.

    Stray output of native code goes to stderr: the replies' pipe carries replies only.
    """
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply: dict[str, Any] = {"summary": summarize_here(request["path"], request["top"]).to_dict()}
        except Exception as exc:  # memray's reason, as the report says it
            reply = {"error": why(exc)}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


MAX_SIDECAR = 1 << 20
"""Bytes of a sidecar read at most (udfmem writes a few hundred); a longer one is ignored."""
_SIDECAR_FIELDS: dict[str, tuple[type, ...]] = {"udf": (str,), "pid": (int,), "source": (str, type(None))}


def read_sidecar(path: str) -> dict[str, Any]:
    """The ``.json`` sidecar udfmem wrote next to ``path``, or ``{}`` when missing or unreadable.

    In a shared directory it may be anybody's file: only a regular file is read (opened
    non-blocking: a FIFO never hangs the reader), and only the fields of the types udfmem
    writes are kept (``udf``, ``source`` and ``pid``; ``methods`` and ``setup`` as lists
    of strings); a file of another shape reads as ``{}``.
    """
    try:
        fd = os.open(path + ".json", os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}
            raw = f.read(MAX_SIDECAR + 1)
        data = json.loads(raw) if len(raw) <= MAX_SIDECAR else None
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    kept = {
        key: value
        for key, value in data.items()
        if key in _SIDECAR_FIELDS and isinstance(value, _SIDECAR_FIELDS[key]) and not isinstance(value, bool)
    }
    for key in ("methods", "setup"):
        names = data.get(key)
        if isinstance(names, list) and all(isinstance(name, str) for name in names):
            kept[key] = names
    return kept


def summarize_here(path: str, top: int = 5) -> ProfileSummary:
    """Read one memray file in this process and summarize it (raises if it is not readable).

    memray's native reader may crash the process on a corrupted file: this is what the
    child of :func:`summarize_file` runs.
    """
    with leaks(path, timed=True) as (header, records):
        return profile.summarize(path, read_sidecar(path), header, records, top=top)


def why(exc: BaseException) -> str:
    """One line saying why: a failed subprocess's last line of stderr, else the exception."""
    if isinstance(exc, subprocess.CalledProcessError):
        lines = [line.strip() for line in (exc.stderr or "").splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {exc.returncode}"
    return " ".join(str(exc).split()) or type(exc).__name__
