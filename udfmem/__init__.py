"""udfmem: memory telemetry for long-lived data-processing UDF workers.

Put ``@tracked`` on a stateful UDF class (innermost, under the engine's decorator) and
every K calls each worker logs one ``udfmem.snapshot`` line with its RSS, Arrow's live
bytes, the gap between them, the allocator's freed-but-held memory and the growth since
setup. ``sample()`` reads the same probes on demand; ``trim()`` gives freed memory back
to the OS, and the ``trim=`` policy of ``@tracked`` does so when it pays.
"""

from __future__ import annotations

from ._allocator import TrimResult, trim
from ._decorator import TrackedUDF, tracked
from ._memory import MemorySample, sample
from ._settings import worker_env

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
