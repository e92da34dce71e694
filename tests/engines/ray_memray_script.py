"""Ray Data with memray switched on through worker_env(): a clean and a leaky UDF, 256 batches each.

Run as ``python ray_memray_script.py RAY_TEMP_DIR PROFILE_DIR``.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from typing import Any

import numpy as np
import ray

import udfmem
from udfmem.commands.report import closed_properly

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


def wait_closed(profile_dir: str, udf: str, deadline_s: float = 900) -> None:
    """Wait until the actor's tracker has closed its file (its UDF object was released), or the deadline passes.

    Ray Data tears the actor down after the dataset is consumed; closing the tracker writes
    what a 2 GiB heap still holds, which on a loaded machine takes a while. Shutting Ray
    down before that would kill the worker mid-close and leave an incomplete profile.
    """
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        files = glob.glob(os.path.join(profile_dir, f"memray-{udf}-*.bin"))
        if files and all(closed_properly(f) for f in files):
            return
        time.sleep(0.5)


def main() -> None:
    """Run both UDFs on one actor each."""
    ray.init(num_cpus=2, _temp_dir=sys.argv[1], include_dashboard=False)
    env = udfmem.worker_env(memray_dir=sys.argv[2])
    for udf in (CleanBatches, LeakyBatches):
        ds = ray.data.range(2560, override_num_blocks=16)
        rows = ds.map_batches(udf, concurrency=1, num_cpus=0.5, batch_size=10, runtime_env={"env_vars": env}).count()
        print(f"ROWS {udf.__name__} {rows}", flush=True)
        wait_closed(sys.argv[2], udf.__name__)
    ray.shutdown()


if __name__ == "__main__":
    main()
