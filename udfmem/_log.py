"""Event emission: udfmem's own structlog pipeline, its renderers and its sinks.

udfmem never calls ``structlog.configure`` and never touches :mod:`logging`: each UDF
gets a logger from ``structlog.wrap_logger`` with udfmem's processors, whose last step
is a small renderer (structlog's own cost 8-20 µs a line; this one costs a few).
Lines go to the worker's stderr (logfmt, or JSON with ``UDFMEM_LOG_FORMAT=json``) and,
with ``UDFMEM_LOG_DIR``, also to one JSON-lines file per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

HEAD = ("event", "udf", "pid", "host", "ts")
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+-]+\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+|inf|nan)\Z", re.IGNORECASE)

#: In-process observers of every event dict (used by ``udfmem demo``). Never raise into them.
listeners: list[Callable[[dict[str, Any]], None]] = []

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


def iso_ts(t: float) -> str:
    """UTC ISO-8601 time with milliseconds, e.g. ``2026-11-22T21:30:00.123Z``."""
    ms = int(t * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def _logfmt_value(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and not _NUMBER.match(text) and text not in ("true", "false"):
        return text
    return json.dumps(text)


def render_logfmt(event_dict: MutableMapping[str, Any]) -> str:
    """``key=value`` pairs, head fields first; strings quoted only where needed."""
    parts = [f"{key}={_logfmt_value(event_dict[key])}" for key in HEAD if key in event_dict]
    parts += [f"{k}={_logfmt_value(v)}" for k, v in event_dict.items() if k not in HEAD and v is not None]
    return " ".join(parts)


def render_json(event_dict: MutableMapping[str, Any]) -> str:
    """One JSON object, head fields first, ``None`` fields left out."""
    ordered = {key: event_dict[key] for key in HEAD if key in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in HEAD and v is not None)
    return json.dumps(ordered, separators=(",", ":"), default=str)


class Sink:
    """The logger structlog wraps: writes a rendered line to stderr, and JSON to a file."""

    def __init__(self, log_dir: str | None) -> None:
        self.log_dir = log_dir
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _file(self) -> int | None:
        if self.log_dir is None:
            return None
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    os.makedirs(self.log_dir, exist_ok=True)
                    path = os.path.join(self.log_dir, f"udfmem-{host()}-{pid}.jsonl")
                    self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
                    self._pid = pid
        return self._fd

    def msg(self, line: str, jsonl: str | None = None) -> None:
        """Write one event. Errors are swallowed: telemetry never raises into the UDF."""
        try:
            stream = sys.stderr
            if stream is not None:
                stream.write(line + "\n")
                stream.flush()
        except (OSError, ValueError):
            pass
        if jsonl is not None:
            try:
                fd = self._file()
                if fd is not None:
                    os.write(fd, (jsonl + "\n").encode())
            except OSError:
                pass

    info = warning = msg


_sinks: dict[str | None, Sink] = {}


def _add_ts(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict["ts"] = iso_ts(time.time())
    return event_dict


def _notify(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for listener in list(listeners):
        with contextlib.suppress(Exception):
            listener(dict(event_dict))
    return event_dict


def _final(json_lines: bool, to_file: bool) -> Callable[[Any, str, MutableMapping[str, Any]], dict[str, Any]]:
    def render(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        line = render_json(event_dict) if json_lines else render_logfmt(event_dict)
        jsonl = (line if json_lines else render_json(event_dict)) if to_file else None
        return {"line": line, "jsonl": jsonl}

    return render


def make_logger(udf: str, log_format: str = "logfmt", log_dir: str | None = None) -> Any:
    """A structlog logger bound to ``udf``, this pid and host, with udfmem's own pipeline."""
    sink = _sinks.get(log_dir)
    if sink is None:
        sink = _sinks.setdefault(log_dir, Sink(log_dir))
    return structlog.wrap_logger(
        sink,
        processors=[_add_ts, _notify, _final(log_format == "json", log_dir is not None)],
        wrapper_class=structlog.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
        udf=udf,
        pid=os.getpid(),
        host=host(),
    )


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(logger: Any, key: str, message: str, **fields: Any) -> None:
    """Emit one ``udfmem.warning`` per (process, key); never raises."""
    token = (str(os.getpid()), key)
    with _warned_lock:
        if token in _warned:
            return
        _warned.add(token)
    with contextlib.suppress(Exception):
        logger.warning("udfmem.warning", what=key, message=message, **fields)
