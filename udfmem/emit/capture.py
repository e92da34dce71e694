"""In-process observers of events: :func:`capture`, for tests and ``udfmem demo``.

While no capture runs, an event pays one truth test of :data:`hooks` (an empty tuple).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..events import schema as _events

Hook = Callable[[dict[str, Any]], None]
hooks: tuple[Hook, ...] = ()
"""The observers now: replaced whole under the lock, read without it (a tuple never changes)."""
_lock = threading.Lock()
_lock_pid = os.getpid()


@contextlib.contextmanager
def capture() -> Iterator[list[dict[str, Any]]]:
    """Collect every event emitted in this process while the block runs.

    Yields a list that receives each event as the flat field dict a parser of its line
    would return (head fields, ``ts``, the event's own fields). Safe to nest and to use
    from several threads.
    """
    global hooks
    events: list[dict[str, Any]] = []
    with _lock:
        hooks = (*hooks, events.append)
    try:
        yield events
    finally:
        with _lock:
            hooks = tuple(h for h in hooks if h != events.append)


def show(head: dict[str, Any], ts: str, event: _events.Event) -> None:
    """Hand the event's fields to every observer (only called while some :func:`capture` runs); never raises."""
    fields = {**head, "event": event.EVENT, "ts": ts, **_events.to_fields(event)}
    for hook in hooks:
        with contextlib.suppress(Exception):
            hook(dict(fields))


def forget() -> None:
    """In a new process: a fresh lock (another thread of the parent may have held it); running captures stay."""
    global _lock, _lock_pid
    if os.getpid() != _lock_pid:
        _lock, _lock_pid = threading.Lock(), os.getpid()
