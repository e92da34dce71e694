"""Driver script for the Ray engine tests: one local cluster, every scenario, results as JSON.

Run as ``python ray_data_script.py TEMP_DIR``; worker logs land in TEMP_DIR/session_latest/logs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import ray

import udfmem

SLEEP_S = 0.02  # some work per batch, so batches spread over both actors


def make_udf(name: str, kind: str, every: int = 2) -> type:
    """A tracked UDF class named ``name`` whose ``__call__`` is of ``kind``; adds 1 to ``v``."""

    def __init__(self: Any) -> None:
        self.model = np.ones(1 << 20)  # an 8 MiB "model"

    def plain(self: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(SLEEP_S)
        return {"id": batch["id"], "v": batch["v"] + 1}

    def gen(self: Any, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        time.sleep(SLEEP_S)
        yield {"id": batch["id"], "v": batch["v"] + 1}

    async def coro(self: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        await asyncio.sleep(SLEEP_S)
        return {"id": batch["id"], "v": batch["v"] + 1}

    async def agen(self: Any, batch: dict[str, np.ndarray]) -> AsyncIterator[dict[str, np.ndarray]]:
        await asyncio.sleep(SLEEP_S)
        yield {"id": batch["id"], "v": batch["v"] + 1}

    call = {"sync": plain, "gen": gen, "async": coro, "agen": agen}[kind]
    return udfmem.tracked(every=every)(type(name, (), {"__init__": __init__, "__call__": call}))


@ray.remote(num_cpus=0.1, max_concurrency=4)
@udfmem.tracked(every=100, methods=("process",))
class ThreadedActor:
    """A plain Ray actor with 4 threads, tracked on a named method."""

    def process(self, x: int) -> int:
        """Double ``x``."""
        time.sleep(0.001)
        return 2 * x


def main() -> None:
    """Run every scenario and print the results as one JSON line."""
    ray.init(num_cpus=2, _temp_dir=sys.argv[1], include_dashboard=False)
    ray.data.DataContext.get_current().wait_for_min_actors_s = 120
    ops: list[tuple[str, int, dict[str, Any]]] = []
    for kind in ("sync", "gen", "async", "agen"):
        for concurrency, word in ((1, "One"), (2, "Two")):
            ops.append((f"Embed{kind.capitalize()}{word}", concurrency, {}))
    ops.append(("EveryFromEnv", 1, {"runtime_env": {"env_vars": udfmem.worker_env(every=4)}}))
    ops.append(("Silenced", 1, {"runtime_env": {"env_vars": udfmem.worker_env(disable=True)}}))
    ops.append(("Finals", 2, {}))  # every=5 over 48 batches on 2 actors: the last calls are past a snapshot

    v_ok = ids_ok = True
    for name, concurrency, extra in ops:  # one operator at a time: at most 2 actors alive
        kind = next((k for k in ("sync", "gen", "async", "agen") if name.lower().startswith(f"embed{k}")), "sync")
        every = {"EveryFromEnv": 1000, "Finals": 5}.get(name, 3 - concurrency)  # every call with 2 actors
        udf = make_udf(name, kind, every)
        ds = ray.data.range(480, override_num_blocks=48).map(lambda r: {"id": r["id"], "v": r["id"]})
        rows = ds.map_batches(udf, concurrency=concurrency, num_cpus=0.25, batch_size=10, **extra).take_all()
        v_ok = v_ok and all(r["v"] == r["id"] + 1 for r in rows)
        ids_ok = ids_ok and sorted(r["id"] for r in rows) == list(range(480))

    actor = ThreadedActor.remote()
    doubled = ray.get([actor.process.remote(i) for i in range(400)])
    time.sleep(3)  # let the log monitor relay the last worker lines to this driver
    result = {
        "v_ok": v_ok,
        "ids": ids_ok,
        "ops": [name for name, _, _ in ops],
        "doubled_ok": doubled == [2 * i for i in range(400)],
    }
    print("RESULT " + json.dumps(result), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
