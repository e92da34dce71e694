"""Driver script for the Geneva tests: local table, add_columns, backfill; prints ``RESULT {json}``.

Run as ``python geneva_script.py WORKDIR``; Ray's logs land in WORKDIR/ray/session_latest/logs.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import geneva  # noqa: E402
import pyarrow as pa  # noqa: E402
from geneva.runners.ray._mgr import ray_cluster  # noqa: E402
from geneva_udfs import BatchTripler, Doubler, DoublerLogic, batch_logic  # noqa: E402

import udfmem  # noqa: E402

ROWS = 200


def main() -> None:
    """Backfill a scalar and a batch UDF column, then compare with the undecorated logic."""
    work = sys.argv[-1]
    db = geneva.connect(os.path.join(work, "db"))
    table = db.create_table("t", pa.table({"x": pa.array(range(ROWS), pa.int64())}))
    table.add_columns({"y": Doubler(), "z": BatchTripler()})  # Doubler() runs __init__ here, on the driver
    env = {**udfmem.worker_env(every=2), "PYTHONPATH": HERE}
    with ray_cluster(
        local=True, extra_env=env, ray_init_kwargs={"num_cpus": 2, "_temp_dir": os.path.join(work, "ray")}
    ):
        for column in ("y", "z"):
            table.backfill(
                column,
                concurrency=1,
                num_cpus=0.25,
                checkpoint_size=50,
                _admission_check=False,
                refresh_status_secs=0.5,
            )
    got = table.to_arrow().sort_by("x").to_pydict()
    logic = DoublerLogic()
    x = pa.array(got["x"], pa.int64())
    result = {
        "driver_pid": os.getpid(),
        "y_ok": got["y"] == [logic(v) for v in got["x"]],
        "z_ok": got["z"] == batch_logic(x).to_pylist(),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
