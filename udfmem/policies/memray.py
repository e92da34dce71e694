"""memray, switched on by one environment variable: one tracker per worker process.

With ``UDFMEM_MEMRAY_DIR`` set (or the variable named by ``@tracked(memray_env=...)``),
the first tracked UDF to run in a process opens a memray tracker before its first
``setup()`` or first call (never in ``__init__``: Geneva runs that on the driver) and
writes ``memray-<udf>-<pid>-<id>.bin`` there, with a ``.json`` sidecar naming the UDF's
methods so that ``udfmem report`` can attribute what is left.

The traps this avoids, each measured: a tracker entered inside a frame that later
returns records truncated stacks, so it is entered from a short-lived helper thread;
leak sizes are only exact with ``trace_python_allocators=True``, so that is on; a
tracker still open at a normal interpreter exit reports 0 leaked bytes, so it is closed
from ``atexit`` (before teardown) or after ``UDFMEM_MEMRAY_CALLS`` calls; a SIGKILLed
worker's file stays readable (memray's default file format is written as it goes).
Without the variable memray is never imported.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import json
import os
import re
import threading
import time
import weakref
from typing import Any

from .. import _process, _reentry
from .._settings import Settings
from ..emit.emitter import Emitter
from ..events.schema import Memray
from ..probes.fds import SAFE_CREATE


@dataclasses.dataclass(frozen=True)
class Target:
    """What a tracker needs to know of the UDF it profiles (nothing of its runtime state)."""

    key: str
    name: str
    methods: tuple[str, ...]
    setup: tuple[str, ...]
    source: str | None


_lock = threading.RLock()  # re-entrant: a finalizer may stop the tracker on the thread that starts it
_owner: str | None = None  # the key of the UDF whose tracker is open in this process
_emitter: Emitter | None = None
_tracker: Any = None
_path: str | None = None
_started_pid = -1
_seq = itertools.count(1)


def file_name(udf: str, pid: int, seq: int) -> str:
    """``memray-<udf>-<pid>-<id>.bin`` with the UDF name reduced to safe characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", udf).strip("._-")[:80] or "udf"
    return f"memray-{safe}-{pid}-{seq}.bin"


def _enter(tracker: Any) -> None:
    """Enter ``tracker`` from a short-lived thread: a frame that returns at once keeps full stacks."""
    error: list[BaseException] = []

    def enter() -> None:
        try:
            tracker.__enter__()
        except BaseException as exc:
            error.append(exc)

    helper = threading.Thread(target=enter, name="udfmem-memray-start")
    helper.start()
    helper.join()
    if error:
        raise error[0]


def start(target: Target, settings: Settings, switch: str, emitter: Emitter) -> bool:
    """Open this process's tracker for ``target`` if memray is switched on; True if it owns it.

    ``switch`` names the variable that switched memray on (for the warnings). Never raises.
    """
    directory = settings.memray_dir
    if directory is None:
        return False
    global _owner, _emitter, _tracker, _path, _started_pid
    with _lock:
        if _started_pid == os.getpid():
            if _owner is not None and _owner != target.key:
                emitter.warn_once(
                    "memray-busy",
                    f"memray already profiles another UDF in this process; {target.name} runs unprofiled",
                    once_key=f"memray-busy:{target.key}",
                )
            return False  # one tracker, and one file, per process
        _started_pid = os.getpid()
        try:
            import memray
        except ImportError:
            emitter.warn_once("memray-missing", f"{switch} is set but memray is not installed", var=switch)
            return False
        try:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(os.path.abspath(directory), file_name(target.name, os.getpid(), next(_seq)))
            tracker = memray.Tracker(path, native_traces=settings.memray_native, trace_python_allocators=True)
            _enter(tracker)
        except Exception as exc:
            emitter.warn_once("memray-failed", f"memray could not start ({exc!r}); the UDF runs unprofiled", var=switch)
            return False
        _owner, _emitter, _tracker, _path = target.key, emitter, tracker, path
        _write_sidecar(path, target, settings, emitter)
    emitter.emit(Memray(action="started", path=path, native=settings.memray_native))
    return True


def _write_sidecar(path: str, target: Target, settings: Settings, emitter: Emitter) -> None:
    sidecar = {
        "udf": target.name,
        "pid": os.getpid(),
        "methods": list(target.methods),
        "setup": list(target.setup),
        "source": target.source,
        "native": settings.memray_native,
        "calls_limit": settings.memray_calls,
        "started": time.time(),
    }
    try:  # a new file only: never through a planted link, never over an existing file
        fd = os.open(path + ".json", os.O_WRONLY | os.O_EXCL | SAFE_CREATE, 0o644)
    except OSError as exc:
        emitter.warn_once("output-refused", f"not writing {path}.json: {exc}", once_key=f"output-refused:{path}")
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(sidecar, f)


def stop(reason: str) -> None:
    """Close this process's tracker (the file is then complete). Never raises."""
    global _owner, _tracker, _emitter
    with _lock:
        tracker, emitter, path = _tracker, _emitter, _path
        if tracker is None or emitter is None or path is None or _started_pid != os.getpid():
            return
        _tracker = _owner = _emitter = None
    try:
        tracker.__exit__(None, None, None)
    except Exception as exc:
        emitter.warn_once("memray-failed", f"memray did not close cleanly: {exc!r}")
        return
    emitter.emit(Memray(action="stopped", path=path, reason=reason))


def stop_when_released(instance: Any) -> None:
    """Close the tracker when ``instance``, the UDF object (weakly referable: the caller checked), is released.

    Ray tears actors down before ``atexit``; Daft drops instances per partition: closing
    while the UDF's memory is still allocated makes the file show what it held.
    """
    weakref.finalize(instance, _stop_released).atexit = False


def _stop_released() -> None:
    """The finalizer of :func:`stop_when_released`: inside udfmem on this thread, deferred to its end."""
    if _reentry.here.inside:
        _reentry.defer(_stop_released)
    else:
        _reentry.section(stop, "instance-released")


def owns(key: str) -> bool:
    """Whether the UDF ``key`` owns this process's open tracker."""
    return _owner == key and _tracker is not None


def _forget() -> None:
    """A new process (a fork child): no tracker of ours runs here."""
    global _lock, _owner, _tracker, _emitter, _started_pid
    _lock = threading.RLock()
    if _tracker is not None:
        # memray cannot profile a fork of a tracked process here: a tracker started in the child
        # only warns and leaves an empty file behind. The child runs unprofiled, without a file.
        _started_pid = os.getpid()
    _owner = _tracker = _emitter = None


atexit.register(stop, "exit")
_process.on_new_process(_forget, _process.POLICIES, fork_only=True)
