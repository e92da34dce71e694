"""udfmem: memory telemetry for long-lived data-processing UDF workers.

Put ``@tracked`` on a stateful UDF class (innermost, under the engine's decorator) and
every K calls each worker logs one ``udfmem.snapshot`` line with its RSS, Arrow's live
bytes, the gap between them, the allocator's freed-but-held memory and the growth since
setup. ``sample()`` reads the same probes on demand; ``trim()`` gives freed memory back
to the OS, and the ``trim=`` policy of ``@tracked`` does so when it pays.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .probes.allocator import TrimResult, trim
    from .probes.memory import MemorySample, sample
    from .runtime.decorator import TrackedUDF, tracked
    from .runtime.workers import worker_env

__version__ = "0.1.0"

__all__ = [
    "MemorySample",
    "TrackedUDF",
    "TrimResult",
    "__version__",
    "sample",
    "tracked",
    "trim",
    "worker_env",
]

_HOME = {
    "MemorySample": ".probes.memory",
    "TrackedUDF": ".runtime.decorator",
    "TrimResult": ".probes.allocator",
    "sample": ".probes.memory",
    "tracked": ".runtime.decorator",
    "trim": ".probes.allocator",
    "worker_env": ".runtime.workers",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use: the command line (``udfmem diagnose``) needs none of the runtime."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'udfmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
