"""Ray Data with memray switched on through worker_env(): a clean and a leaky UDF, 256 batches each.

Run as ``python ray_memray_script.py RAY_TEMP_DIR PROFILE_DIR``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import ray

import udfmem

MIB = 1024 * 1024


@udfmem.tracked(every=64)
class CleanBatches:
    """setup() (called lazily, as Ray never calls it) keeps 64 MiB; batches use 4 MiB scratch."""

    def setup(self) -> None:
        """Load the model."""
        self.model = bytearray(b"\x01") * (64 * MIB)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Use scratch memory, keep nothing."""
        if not hasattr(self, "model"):
            self.setup()
        scratch = bytearray(b"\x02") * (4 * MIB)
        return {"id": batch["id"], "n": np.full(len(batch["id"]), len(scratch))}


@udfmem.tracked(every=64)
class LeakyBatches:
    """Keeps 8 MiB of every batch on self."""

    def setup(self) -> None:
        """Prepare the cache."""
        self.kept: list[bytearray] = []

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Keep a copy of this batch's scratch."""
        if not hasattr(self, "kept"):
            self.setup()
        self.kept.append(bytearray(b"\x03") * (8 * MIB))
        return {"id": batch["id"]}


def main() -> None:
    """Run both UDFs on one actor each."""
    ray.init(num_cpus=2, _temp_dir=sys.argv[1], include_dashboard=False)
    env = udfmem.worker_env(memray_dir=sys.argv[2])
    for udf in (CleanBatches, LeakyBatches):
        ds = ray.data.range(2560, override_num_blocks=16)
        rows = ds.map_batches(udf, concurrency=1, num_cpus=0.5, batch_size=10, runtime_env={"env_vars": env}).count()
        print(f"ROWS {udf.__name__} {rows}", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
