"""The emitter: each event is built once, rendered once per format, and handed to the sinks.

:func:`build` makes a bound UDF's emitter and every sink it writes to from its settings:
the one place sinks are chosen. :func:`default` gives the emitter of events before a UDF
is bound (or of none: ``worker_env``), with the log target the environment names. How an
event becomes lines is :mod:`udfmem.emit.pipeline`; :func:`capture` (from
:mod:`udfmem.emit.capture`) lets tests and ``udfmem demo`` observe events in-process.

Per process this module keeps the warnings already said (:func:`forget_warnings`), the
shared default emitters and the JSON-lines sinks (one per directory); :func:`forget`
drops what a new process must not inherit.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import socket
import threading
import weakref
from collections.abc import Callable, Sequence

from .. import _process, _settings
from .._text import capped, capped_id
from ..events import schema as _events
from . import capture as _capture
from . import pipeline as _pipeline
from .capture import capture
from .pipeline import MAX_MESSAGE
from .sinks import Sink
from .sinks.jsonl import JsonlSink
from .sinks.metrics import MetricsSink
from .sinks.stderr import StderrSink
from .sinks.structlog_sink import StructlogSink

__all__ = [
    "MAX_MESSAGE",
    "MAX_WARNINGS",
    "Emitter",
    "build",
    "capture",
    "default",
    "forget",
    "forget_warnings",
    "host",
    "log_sinks",
    "warned",
    "worker_tag",
]

_host: str | None = None


def host() -> str:
    """This machine's host name (cached)."""
    global _host
    if _host is None:
        try:
            _host = socket.gethostname() or "unknown"
        except OSError:
            _host = "unknown"
    return _host


def worker_tag(host_name: str, pid: int) -> str:
    """Eight lowercase letters naming this process (no digits, unlike ``pid``).

    Ray's driver merges log lines of different workers that are equal once every word
    containing a digit is dropped; this word survives that and differs per worker, so
    each worker's snapshot lines reach the driver console.
    """
    digest = hashlib.blake2b(f"{host_name}:{pid}".encode(), digest_size=8).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest)


class Emitter:
    """The events of one UDF in one process, written to its sinks. Never raises.

    Made by :func:`build` (a bound UDF) or :func:`default`; ``Emitter(udf)`` alone writes
    logfmt lines to stderr.
    """

    #: Write one event to every sink (the pipeline's closure itself: no call in between).
    emit: Callable[[_events.Event], None]

    def __init__(self, udf: str, sinks: Sequence[Sink] | None = None) -> None:
        self.udf = udf = capped_id(udf)  # capped at decoration; also a name from settings pickled elsewhere
        pid = os.getpid()
        self.worker = worker_tag(host(), pid)
        self.sinks: tuple[Sink, ...] = tuple(log_sinks("logfmt", None) if sinks is None else sinks)
        head = {"udf": udf, "pid": pid, "host": host(), "worker": self.worker}
        self.emit = _pipeline.writer(self.sinks, head)
        takers = (getattr(sink, "note_slope", None) for sink in self.sinks)  # the sinks that show the slope
        self._slope_takers: tuple[Callable[[float | None], None], ...] = tuple(t for t in takers if t is not None)

    def close(self) -> None:
        """This emitter's UDF let it go (a reset): its sinks that keep per-UDF work (metrics visits) stop it.

        Shared sinks (stderr, a JSON-lines file) stay open for the other emitters.
        """
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def note_slope(self, slope: float | None) -> None:
        """The online detector's slope after a snapshot (None: no detector): for the sinks that show it."""
        for take in self._slope_takers:
            take(slope)

    def warn_once(self, what: str, message: str, once_key: str | None = None, var: str | None = None) -> None:
        """Emit one ``udfmem.warning`` per (process, ``once_key`` or ``what``), whichever UDF meets it first.

        At most :data:`MAX_WARNINGS` distinct ones per process (then one saying so); like every
        event's text, the message is cut at :data:`MAX_MESSAGE` characters (it may echo a path
        or an exception).
        """
        first = _first_time(once_key or what)
        if first:
            self.emit(_events.Warning(what=what, message=message, var=var))
        elif first is None:
            message = f"{MAX_WARNINGS} distinct warnings in this process; further ones are dropped"
            self.emit(_events.Warning(what=_CAPPED, message=message))


# -- the sinks, chosen here ------------------------------------------------------------

_jsonl_sinks: dict[str, JsonlSink] = {}  # one per directory: every UDF of the process appends to one file
_jsonl_lock = threading.RLock()  # re-entrant: a finalizer's warning may ask for a default emitter inside


def log_sinks(log_format: str, log_dir: str | None) -> list[Sink]:
    """The sinks of the log lines: stderr in ``log_format`` (or the user's structlog), plus ``log_dir``'s file."""
    sinks: list[Sink] = [StructlogSink() if log_format == "structlog" else StderrSink(log_format)]
    if log_dir is not None:
        with _jsonl_lock:
            sink = _jsonl_sinks.get(log_dir)
            if sink is None:
                sink = _jsonl_sinks[log_dir] = JsonlSink(log_dir, host(), _log_dir_failed)
        sinks.append(sink)
    return sinks


def _log_dir_failed(path: str, exc: OSError) -> None:
    """A JSON-lines file could not be written (its sink stays off in this process): say so, once."""
    message = f"cannot write {capped(path)}: {capped(str(exc))}; its lines are dropped"
    default().warn_once("log-dir-failed", message, var="UDFMEM_LOG_DIR")


def build(udf: str, settings: _settings.Settings) -> Emitter:
    """The emitter of a UDF bound with ``settings``, and every sink it writes to: logs, file, metrics."""
    sinks = log_sinks(settings.log_format, settings.log_dir)
    gauges = None
    if settings.metrics:
        name = capped_id(udf)
        gauges = MetricsSink(settings.metrics, name, host(), worker_tag(host(), os.getpid()))
        if gauges.exporting:
            sinks.append(gauges)
    emitter = Emitter(udf, sinks)
    if gauges is not None:
        gauges.warn = _warner(emitter)
        for what, message in gauges.problems:  # once per process and message
            emitter.warn_once(what, message, once_key=f"{what}:{message}", var="UDFMEM_METRICS")
    return emitter


def _warner(emitter: Emitter) -> Callable[[str, str], None]:
    """``emitter.warn_once`` for the metrics sink, held weakly (the emitter holds the sink)."""
    method = weakref.WeakMethod(emitter.warn_once)

    def warn(what: str, message: str) -> None:
        bound = method()
        if bound is not None:
            bound(what, message, var="UDFMEM_METRICS")

    return warn


DEFAULTS_KEPT = 64
"""Default emitters kept beyond those the live states hold (the most recently asked for)."""
_default: collections.OrderedDict[tuple[int, str, str | None, str | None], Emitter] = collections.OrderedDict()
_default_lock = threading.RLock()  # re-entrant: as _jsonl_lock


def default(udf: str = "udfmem") -> Emitter:
    """A shared emitter for events before a UDF is bound (or of none), to the log target the environment names.

    One per process, name and ``UDFMEM_LOG_FORMAT``/``UDFMEM_LOG_DIR`` values; the
    :data:`DEFAULTS_KEPT` most recently asked for are kept, so a process defining thousands
    of uniquely named UDFs does not keep theirs (a state holds its own until it binds).
    """
    environ = os.environ
    key = (os.getpid(), udf, environ.get("UDFMEM_LOG_FORMAT"), environ.get("UDFMEM_LOG_DIR"))
    with _default_lock:
        emitter = _default.get(key)
        if emitter is not None:
            _default.move_to_end(key)
            return emitter
    # outside the lock: a sink may warn, which asks for a default
    emitter = Emitter(udf, log_sinks(*_settings.log_target()))
    with _default_lock:
        emitter = _default.setdefault(key, emitter)
        _default.move_to_end(key)
        while len(_default) > DEFAULTS_KEPT:
            _default.popitem(last=False)
    return emitter


# -- warnings, once per process ----------------------------------------------------------

MAX_WARNINGS = 1000
"""Distinct warnings one process emits; the next says that further ones are dropped (a flood, not news)."""
_CAPPED = "warnings-capped"
_warned: set[tuple[int, str]] = set()  # (pid, once key): at most MAX_WARNINGS + 1 entries
_warned_lock = threading.RLock()  # re-entrant: a finalizer run inside may warn too


def _first_time(key: str) -> bool | None:
    """True the first time ``key`` is met in this process, False after; None once the cap is reached."""
    token = (os.getpid(), capped_id(key))  # a key embeds echoed values: never keep them whole
    with _warned_lock:
        if token in _warned:
            return False
        if len(_warned) >= MAX_WARNINGS:
            capped_token = (token[0], _CAPPED)
            if capped_token in _warned:
                return False
            _warned.add(capped_token)
            return None
        _warned.add(token)
        return True


def warned() -> int:
    """How many distinct warnings this process has said (at most :data:`MAX_WARNINGS` + 1)."""
    return len(_warned)


def forget_warnings() -> None:
    """Forget the warnings already said in this process: each is said again the next time it is met.

    ``udfmem.testing.reset()`` calls this (each test checks its own warnings); a fork
    child does it by itself (:func:`forget`).
    """
    with _warned_lock:
        _warned.clear()


# -- a new process -------------------------------------------------------------------------

_pid = os.getpid()


def forget() -> None:
    """What a new process must not inherit: the warnings said, the default emitters; held locks (fork child).

    Registered with :mod:`udfmem._process` (a fork child, ``udfmem.testing.reset()``). The
    JSON-lines sinks stay (each opens its own file per process); in a fork child they get
    fresh locks, like this module's, since a thread of the parent may have held them.
    """
    global _warned_lock, _default_lock, _jsonl_lock, _pid
    if os.getpid() != _pid:  # a fork child: renew the locks (never in a running process: a holder would lose it)
        _pid = os.getpid()
        _warned_lock, _default_lock, _jsonl_lock = threading.RLock(), threading.RLock(), threading.RLock()
        for sink in _jsonl_sinks.values():
            sink.after_fork()
    _capture.forget()
    forget_warnings()
    with _default_lock:
        _default.clear()


_process.on_new_process(forget, _process.EMIT)
