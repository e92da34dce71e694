"""UDFs with known retention, for the memray tests (run in subprocesses and Ray workers)."""

from __future__ import annotations

from udfmem import tracked

MIB = 1024 * 1024


@tracked(every=64)
class Clean:
    """Keeps a 64 MiB model from setup; each call uses 4 MiB of scratch and frees it."""

    def setup(self) -> None:
        """Load the model."""
        self.model = bytearray(b"\x01") * (64 * MIB)

    def __call__(self, i: int) -> int:
        """Use scratch memory, keep nothing."""
        scratch = bytearray(b"\x02") * (4 * MIB)
        return len(scratch) + i


@tracked(every=64)
class Leaky:
    """Keeps 8 MiB of every call on ``self``: per-call retention."""

    def setup(self) -> None:
        """Prepare the (leaking) cache."""
        self.kept: list[bytearray] = []

    def __call__(self, i: int) -> int:
        """Keep a copy of this call's scratch."""
        self.kept.append(bytearray(b"\x03") * (8 * MIB))
        return i
