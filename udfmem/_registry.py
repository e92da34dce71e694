"""The per-process registry of UDF states: one :class:`~udfmem._state.UDFState` per (process, UDF).

A decorated UDF gets a deterministic key; a pickled copy arriving in another process
finds (or creates) that process's state by the same key. In a fork child every state
starts afresh.
"""

from __future__ import annotations

import os
import threading

from . import _settings
from ._state import UDFState

_states: dict[str, UDFState] = {}
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


def lookup(key: str, settings: _settings.Settings, source: str | None = None, owner: str | None = None) -> UDFState:
    """This process's state for ``key``, created on first sight (also used by unpickling)."""
    state = _states.get(key)
    if state is None:
        with _registry_lock:
            state = _states.get(key)
            if state is None:
                state = _states[key] = UDFState(key, settings, source, owner)
    return state


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for state in list(_states.values()):
        state._fresh()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
