"""Module-level Geneva UDFs for the Geneva tests (workers import this module)."""

from __future__ import annotations

import geneva
import pyarrow as pa
import pyarrow.compute as pc

import udfmem


class DoublerLogic:
    """The undecorated scalar logic, to compare results with."""

    def __init__(self) -> None:
        self.factor = 2

    def __call__(self, x: int) -> int:
        """Multiply ``x`` by the factor."""
        return x * self.factor


@geneva.udf(data_type=pa.int64(), num_cpus=0.25)
@udfmem.tracked(every=1000)
class Doubler(DoublerLogic):
    """Scalar UDF: one call per row."""

    def __call__(self, x: int) -> int:
        """Multiply ``x`` by the factor."""
        return x * self.factor


def batch_logic(x: pa.Array) -> pa.Array:
    """The undecorated batch logic."""
    return pc.add(pc.multiply(x, 3), 1)


@geneva.udf(data_type=pa.int64(), num_cpus=0.25)
@udfmem.tracked(every=1000)
class BatchTripler:
    """Batch UDF (pa.Array in and out): one call per batch."""

    def __call__(self, x: pa.Array) -> pa.Array:
        """Three times ``x`` plus one, for a whole batch."""
        return batch_logic(x)


@udfmem.tracked(every=4)
class NamedImpl:
    """A tracked class kept importable under its own name (Geneva's version is then stable)."""

    def __call__(self, x: int) -> int:
        """Double ``x``."""
        return 2 * x


named = geneva.udf(data_type=pa.int64())(NamedImpl)


@geneva.udf(data_type=pa.int64())
@udfmem.tracked(every=4)
def double_fn(x: int) -> int:
    """A tracked function UDF."""
    return 2 * x
