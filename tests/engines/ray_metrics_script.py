"""Driver script for the Ray metrics test: a Ray Data run on 2 actors, scraped on Ray's Prometheus endpoint.

Run as ``python ray_metrics_script.py TEMP_DIR``. The cluster starts with a metrics export
port; a tracked UDF runs on 2 actors of a fixed pool, switched on by
``worker_env(metrics="ray")`` in the operator's ``env_vars``. One upstream
block is held back ``HOLD_S`` seconds, so the actors stay alive, idle, long after their
last call. Meanwhile the driver scrapes the endpoint every ``SCRAPE_S`` and keeps the
lines of udfmem's series and of a control gauge the UDF sets once per call (plain
``ray.util.metrics``, never set again). Prints ``RESULT {...}`` with the scrapes.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.request
from typing import Any

import numpy as np
import ray
from ray.util.metrics import Gauge

import udfmem

HOLD_S = 65.0  # the held-back block arrives this long after the start: the actors idle meanwhile
SCRAPE_S = 2.0
HELD_ID = 799  # the last row: its block is the held one
CONTROL = "udfmem_test_control"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hold_back(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pass ``batch`` on; the block holding ``HELD_ID`` only after ``HOLD_S`` seconds."""
    if HELD_ID in batch["id"]:
        time.sleep(HOLD_S)
    return batch


@udfmem.tracked(every=1, trim=8, name="MetricsEmbed")  # metrics="ray" comes from the operator's env_vars
class MetricsEmbed:
    """A stateful UDF: an 8 MiB model, ~10 ms of work and a short-lived buffer per batch."""

    def __init__(self) -> None:
        self.model = np.ones(1 << 20)
        self.control = Gauge(CONTROL, "set once per call, never re-set", tag_keys=("udf",))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add 1 to ``v``; set the control gauge."""
        scratch = np.ones(1 << 18)  # 2 MiB, freed at return: something for the trims to give back
        time.sleep(0.01)
        self.control.set(float(scratch[0]), {"udf": "MetricsEmbed"})
        return {"id": batch["id"], "v": batch["v"] + 1}


def scrape(port: int) -> list[str] | None:
    """udfmem's and the control gauge's sample lines on the endpoint now (None if it did not answer)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    return [line for line in text.splitlines() if line.startswith(("ray_udfmem_", f"ray_{CONTROL}"))]


def main() -> None:
    """Run the dataset in a thread while scraping; print the results as one JSON line."""
    port = free_port()
    ray.init(num_cpus=2, _temp_dir=sys.argv[1], include_dashboard=False, _metrics_export_port=port)
    ray.data.DataContext.get_current().wait_for_min_actors_s = 120
    ds = (
        ray.data.range(800, override_num_blocks=80)
        .map(lambda r: {"id": r["id"], "v": r["id"]})
        .map_batches(hold_back, num_cpus=0.1, batch_size=None)
        .map_batches(
            MetricsEmbed,
            concurrency=2,
            num_cpus=0.25,
            batch_size=10,
            runtime_env={"env_vars": udfmem.worker_env(metrics="ray")},
        )
    )
    out: dict[str, Any] = {}

    def run() -> None:
        rows = ds.take_all()
        out["rows_ok"] = sorted(r["id"] for r in rows) == list(range(800)) and all(r["v"] == r["id"] + 1 for r in rows)
        out["done"] = time.time()

    thread = threading.Thread(target=run)
    start = time.time()
    thread.start()
    scrapes: list[tuple[float, list[str] | None]] = []
    while thread.is_alive():
        scrapes.append((time.time(), scrape(port)))
        thread.join(timeout=SCRAPE_S)
    print("RESULT " + json.dumps({**out, "start": start, "scrapes": scrapes, "host": socket.gethostname()}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
