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
import contextlib
import itertools
import json
import os
import re
import threading
import time
from typing import Any

from . import _config, _log

_lock = threading.Lock()
_owner: Any = None  # the UDFState whose tracker is open in this process
_tracker: Any = None
_path: str | None = None
_started_pid = -1
_seq = itertools.count(1)


def file_name(udf: str, pid: int, seq: int) -> str:
    """``memray-<udf>-<pid>-<id>.bin`` with the UDF name reduced to safe characters."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", udf).strip("._-")[:80] or "udf"
    return f"memray-{safe}-{pid}-{seq}.bin"


def maybe_start(state: Any, settings: _config.Settings) -> None:
    """Open this process's tracker for ``state`` if memray is switched on. Never raises."""
    directory = settings.memray_dir
    if directory is None:
        return
    global _owner, _tracker, _path, _started_pid
    with _lock:
        if _started_pid == os.getpid() and _owner is not None:
            if _owner is not state:
                _log.warn_once(
                    state.log,
                    "memray-busy",
                    f"memray already profiles {_owner.name} in this process; {state.name} runs unprofiled",
                    once_key=f"memray-busy:{state.key}",
                )
            return
        if _started_pid == os.getpid():
            return  # this process's tracker was stopped already: one file per process
        _started_pid = os.getpid()
        try:
            import memray
        except ImportError:
            _log.warn_once(state.log, "memray-missing", "UDFMEM_MEMRAY_DIR is set but memray is not installed")
            return
        try:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(os.path.abspath(directory), file_name(state.name, os.getpid(), next(_seq)))
            tracker = memray.Tracker(path, native_traces=settings.memray_native, trace_python_allocators=True)
            error: list[BaseException] = []

            def enter() -> None:  # a frame that returns at once: full stacks afterwards
                try:
                    tracker.__enter__()
                except BaseException as exc:
                    error.append(exc)

            helper = threading.Thread(target=enter, name="udfmem-memray-start")
            helper.start()
            helper.join()
            if error:
                raise error[0]
        except Exception as exc:
            _log.warn_once(state.log, "memray-failed", f"memray could not start ({exc!r}); the UDF runs unprofiled")
            return
        _owner, _tracker, _path = state, tracker, path
        _write_sidecar(path, state, settings)
    state.log.info("udfmem.memray", action="started", path=path, native=settings.memray_native)
    if settings.memray_calls is not None:
        state.memray_stop = settings.memray_calls


def _write_sidecar(path: str, state: Any, settings: _config.Settings) -> None:
    options = state.options
    sidecar = {
        "udf": state.name,
        "pid": os.getpid(),
        "methods": list(options.methods),
        "setup": [m for m in ("__init__", options.setup) if m],
        "source": state.source,
        "native": settings.memray_native,
        "calls_limit": settings.memray_calls,
        "started": time.time(),
    }
    try:
        with open(path + ".json", "w", encoding="utf-8") as f:
            json.dump(sidecar, f)
    except OSError:
        pass


def stop(reason: str) -> None:
    """Close this process's tracker (the file is then complete). Never raises."""
    global _owner, _tracker
    with _lock:
        tracker, owner, path = _tracker, _owner, _path
        if tracker is None or _started_pid != os.getpid():
            return
        _tracker = _owner = None
    try:
        tracker.__exit__(None, None, None)
    except Exception as exc:
        _log.warn_once(owner.log, "memray-failed", f"memray did not close cleanly: {exc!r}")
        return
    with contextlib.suppress(Exception):
        owner.log.info("udfmem.memray", action="stopped", path=path, reason=reason)


def owns(state: Any) -> bool:
    """Whether ``state``'s UDF owns this process's open tracker."""
    return _owner is state and _tracker is not None


def _after_fork_in_child() -> None:
    global _lock, _owner, _tracker
    _lock = threading.Lock()
    _owner = _tracker = None  # memray does not follow forks (follow_fork is off)


atexit.register(stop, "exit")
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
