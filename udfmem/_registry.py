"""The per-process registry of UDF states: one state per (process, UDF), whatever makes it.

A decorated UDF gets a deterministic key; a pickled copy arriving in another process
finds (or creates) that process's state by the same key. In a fork child every state
starts afresh.

States are held weakly: a state lives as long as the class or function whose wrappers
use it, so a process that defines UDF classes at runtime does not keep them all. The
``RECENT`` states looked up last are also held strongly, so an engine that drops its
unpickled class copy and unpickles it again (once per task) finds the same state, with
its counts, and does not start a new series.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from . import _settings


class PerProcess(Protocol):
    """What the registry needs of a state: to forget its process (in a fork child)."""

    def fresh(self) -> None:
        """Forget everything per-process; the next call binds again."""


S = TypeVar("S", bound=PerProcess)
Factory = Callable[[str, _settings.Settings, "str | None", "str | None"], S]
RECENT = 64  # states held strongly after their last lookup, beyond their class's life
_states: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_recent: collections.deque[Any] = collections.deque(maxlen=RECENT)
_registry_lock = threading.Lock()
_seen_names: dict[str, int] = {}


def new_key(qualname: str) -> str:
    """A key for a newly decorated UDF: its qualified name plus a per-process sequence.

    Deterministic (two processes decorating in the same order agree), yet two UDFs with
    the same qualified name in one process, e.g. a class defined in a function called
    twice, still get their own counters.
    """
    with _registry_lock:
        seq = _seen_names.get(qualname, 0)
        _seen_names[qualname] = seq + 1
    return qualname if seq == 0 else f"{qualname}#{seq}"


def lookup(
    factory: Factory[S], key: str, settings: _settings.Settings, source: str | None = None, owner: str | None = None
) -> S:
    """This process's state for ``key``, made by ``factory`` on first sight (also used by unpickling)."""
    with _registry_lock:  # not on the hot path: once per decoration or unpickling
        state: S | None = _states.get(key)
        if state is None:
            state = _states[key] = factory(key, settings, source, owner)
        if not any(kept is state for kept in _recent):
            _recent.append(state)
    return state


def states() -> list[Any]:
    """The live states of this process."""
    with _registry_lock:
        return list(_states.values())


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for state in list(_states.values()):
        state.fresh()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
