"""The per-process registry of UDF states: one state per (process, UDF), whatever makes it.

A decorated UDF gets a deterministic key; a pickled copy arriving in another process
finds (or creates) that process's state by the same key. In a fork child every state
starts afresh.

States are held weakly: a state lives as long as the class or function whose wrappers
use it, so a process that defines UDF classes at runtime does not keep them all. The
``RECENT`` states looked up last are also held strongly, so an engine that drops its
unpickled class copy and unpickles it again (once per task) finds the same state, with
its counts, and does not start a new series.

Every per-name structure here lives as long as a state of that name: the sequence of a
qualified name (:func:`new_key`) is held by its states and forgotten with the last one,
so a process defining thousands of uniquely named classes keeps none of their names.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from .. import _process, _settings


class PerProcess(Protocol):
    """What the registry needs of a state: to forget its process (in a fork child, and on ``testing.reset()``)."""

    def fresh(self) -> None:
        """Forget everything per-process; the next call binds again."""


S = TypeVar("S", bound=PerProcess)
Factory = Callable[[str, _settings.Settings, "str | None", "str | None"], S]
RECENT = 64  # states held strongly after their last lookup, beyond their class's life
_states: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_recent: collections.deque[Any] = collections.deque(maxlen=RECENT)
_registry_lock = threading.RLock()  # a finalizer may unpickle a UDF inside a lookup on this thread
_pid = os.getpid()  # the process the lock belongs to


class _Seen:
    """How many UDFs of one qualified name were decorated; held by their states, so forgotten with them."""

    __slots__ = ("__weakref__", "count")

    def __init__(self) -> None:
        self.count = 0


_seen_names: weakref.WeakValueDictionary[str, _Seen] = weakref.WeakValueDictionary()
_name_of: weakref.WeakKeyDictionary[Any, _Seen] = weakref.WeakKeyDictionary()  # state -> its name's sequence


def new_state(
    factory: Factory[S],
    qualname: str,
    settings: _settings.Settings,
    source: str | None = None,
    owner: str | None = None,
) -> S:
    """The state of a newly decorated UDF, under a new key: its qualified name plus a per-process sequence.

    Deterministic (two processes decorating in the same order agree), yet two UDFs with
    the same qualified name in one process, e.g. a class defined in a function called
    twice, still get their own counters. The sequence of a name lives as long as a state
    of that name (the 64 recent ones included): once all are gone, the name starts again
    at its bare key, as in a fresh process.
    """
    with _registry_lock:
        seen = _seen_names.get(qualname)
        if seen is None:
            seen = _seen_names[qualname] = _Seen()
        key = qualname if seen.count == 0 else f"{qualname}#{seen.count}"
        seen.count += 1
        state = _lookup(factory, key, settings, source, owner)
        _name_of[state] = seen
    return state


def lookup(
    factory: Factory[S], key: str, settings: _settings.Settings, source: str | None = None, owner: str | None = None
) -> S:
    """This process's state for ``key``, made by ``factory`` on first sight (also used by unpickling)."""
    with _registry_lock:  # not on the hot path: once per decoration or unpickling
        return _lookup(factory, key, settings, source, owner)


def _lookup(factory: Factory[S], key: str, settings: _settings.Settings, source: str | None, owner: str | None) -> S:
    state: S | None = _states.get(key)
    if state is None:
        state = _states[key] = factory(key, settings, source, owner)
    # by identity (states define no __eq__), in C without allocating: the collector cannot run in the middle and
    # have a finalizer look a state up there (the lock is re-entrant), mutating the deque under the scan
    if state not in _recent:
        _recent.append(state)
    return state


def names() -> int:
    """How many qualified names have a sequence now (:func:`new_state`): bounded by the live states' names."""
    with _registry_lock:
        return len(_seen_names)


def states() -> list[Any]:
    """The live states of this process."""
    with _registry_lock:
        return list(_states.values())


def _forget() -> None:
    """A new process (a fork child, or :func:`udfmem.testing.reset`): every state starts afresh.

    Runs after the emitter's own forgetting (:mod:`udfmem._process` orders them): a fresh
    state asks the emitter for a default one.
    """
    global _registry_lock, _pid
    if os.getpid() != _pid:  # a fork child: a thread of the parent may have held it (never renewed while running)
        _pid = os.getpid()
        _registry_lock = threading.RLock()
    for state in list(_states.values()):
        state.fresh()


_process.on_new_process(_forget, _process.RUNTIME)
