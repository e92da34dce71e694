"""A module-level tracked UDF, so pickle can find it by reference."""

from __future__ import annotations

from udfmem import TrackedUDF, tracked


@tracked(every=2)
class Doubler:
    """Doubles its input; tracked with every=2."""

    def __init__(self, factor: int = 2) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        """Multiply ``x`` by the factor."""
        return x * self.factor


class Mixed(TrackedUDF, every=2):
    """The same UDF through the mixin."""

    def __call__(self, x: int) -> int:
        """Add one."""
        return x + 1


@tracked(every=2)
def triple(x: int) -> int:
    """A tracked plain function."""
    return 3 * x
