"""Driver script for the Ray metrics test: a Ray Data run on 2 actors, scraped on Ray's Prometheus endpoint.

Run as ``python ray_metrics_script.py TEMP_DIR``. The cluster starts with a metrics export
port; a tracked UDF runs on 2 actors of a fixed pool, switched on by
``worker_env(metrics="ray")`` in the operator's ``env_vars``. One upstream
block is held back until the driver releases it, so the actors stay alive, idle, long
after their last call. Meanwhile the driver scrapes the endpoint every ``SCRAPE_S`` and
keeps the lines of udfmem's series and of a control gauge the UDF sets once per call
(plain ``ray.util.metrics``, never set again). The driver waits on events, not on time
guessed to be enough: it releases the held block once the workers have logged every other call
and at least ``IDLE_SCRAPES`` scrapes answered ``STILL_THERE_S`` or more after that
(within generous deadlines, so a slow machine makes the run slower, never different).
Prints ``RESULT {...}`` with the scrapes and the release time.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
from ray.util.metrics import Gauge

import udfmem

SCRAPE_S = 2.0
STILL_THERE_S = 30.0  # the promise under test: the series is still there this long after the last call
IDLE_SCRAPES = 3  # answered scrapes the driver takes after that, before it releases the held block
DEADLINE_S = 1200.0  # the longest any wait here lasts (a loaded machine is slow, never stuck)
ROWS, HELD_ID, HELD_ROWS = 800, 799, 10  # the last row's block (10 rows) is the held one
BATCH = 10  # rows per call
CONTROL = "udfmem_test_control"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hold_back(release: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """A batch function that passes batches on; the block holding ``HELD_ID`` once the file ``release`` exists."""

    def hold(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        deadline = time.monotonic() + DEADLINE_S
        while HELD_ID in batch["id"] and not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.2)
        return batch

    return hold


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
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    except OSError:
        return None
    return [line for line in text.splitlines() if line.startswith(("ray_udfmem_", f"ray_{CONTROL}"))]


def calls_logged(temp: str) -> int:
    """The UDF's calls so far, all workers together: its snapshots (every=1) in the workers' logs, finals left out."""
    calls = 0
    for path in glob.glob(os.path.join(temp, "session_latest", "logs", "worker-*")):
        with open(path, errors="replace") as f:
            calls += sum("event=udfmem.snapshot udf=MetricsEmbed " in x and "final=true" not in x for x in f)
    return calls


def idled(scrapes: list[tuple[float, list[str] | None]], quiet_since: float | None) -> bool:
    """Whether ``IDLE_SCRAPES`` answered scrapes were taken ``STILL_THERE_S`` or more after ``quiet_since``."""
    if quiet_since is None:
        return False
    return IDLE_SCRAPES <= sum(t >= quiet_since + STILL_THERE_S and lines is not None for t, lines in scrapes)


def main() -> None:
    """Run the dataset in a thread while scraping; print the results as one JSON line."""
    port = free_port()
    ray.init(num_cpus=2, _temp_dir=sys.argv[1], include_dashboard=False, _metrics_export_port=port)
    ray.data.DataContext.get_current().wait_for_min_actors_s = DEADLINE_S
    release = os.path.join(sys.argv[1], "release-held-block")
    ds = (
        ray.data.range(ROWS, override_num_blocks=ROWS // HELD_ROWS)
        .map(lambda r: {"id": r["id"], "v": r["id"]})
        .map_batches(hold_back(release), num_cpus=0.1, batch_size=None)
        .map_batches(
            MetricsEmbed,
            concurrency=2,
            num_cpus=0.25,
            batch_size=BATCH,
            runtime_env={"env_vars": udfmem.worker_env(metrics="ray")},
        )
    )
    out: dict[str, Any] = {}

    def run() -> None:
        rows = ds.take_all()
        out["rows_ok"] = sorted(r["id"] for r in rows) == list(range(ROWS)) and all(r["v"] == r["id"] + 1 for r in rows)
        out["done"] = time.time()

    thread = threading.Thread(target=run, daemon=True)
    start = time.time()
    thread.start()
    scrapes: list[tuple[float, list[str] | None]] = []
    quiet_since = None  # when every call but the held block's had been logged: the actors' last call was before
    while thread.is_alive():
        now = time.time()
        scrapes.append((now, scrape(port)))
        if quiet_since is None and calls_logged(sys.argv[1]) >= (ROWS - HELD_ROWS) // BATCH:
            quiet_since = time.time()
        if "released_at" not in out and (now - start > DEADLINE_S or idled(scrapes, quiet_since)):
            out["released_at"] = time.time()  # the held call, and only it, comes after this
            open(release, "w").close()
        thread.join(timeout=SCRAPE_S)
    out["quiet_since"] = quiet_since
    print("RESULT " + json.dumps({**out, "start": start, "scrapes": scrapes, "host": socket.gethostname()}), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
