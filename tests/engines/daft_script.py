"""Driver script for the Daft engine tests; prints one ``RESULT {json}`` line.

Run as ``python daft_script.py MODE [RAY_TEMP_DIR]`` with MODE ``thread`` (native
runner, in-process), ``process`` (native runner, ``use_process=True``) or ``ray`` (the
Ray runner on a local cluster).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import daft
from daft import DataType, Series

import udfmem

MODE = sys.argv[1]
USE_PROCESS = {"thread": False, "process": True, "ray": None}[MODE]


def make(tracked: bool) -> tuple[Any, Any]:
    """The same two UDF classes, decorated with @daft.cls over @tracked or @daft.cls alone."""

    class Multi:
        def __init__(self, k: int = 10) -> None:
            self.k = k

        def __call__(self, x: int) -> int:
            return x + self.k

        @daft.method.batch(return_dtype=DataType.int64(), batch_size=8)
        def double(self, s: Series) -> Series:
            return Series.from_pylist([2 * v for v in s.to_pylist()])

        def repeat(self, x: int) -> Iterator[int]:
            for i in range(2):
                yield x * 10 + i

        async def aadd(self, x: int) -> int:
            await asyncio.sleep(0)
            return x + 1000

    class AddK:
        def __init__(self, k: int = 10) -> None:
            self.k = k

        def __call__(self, x: int) -> int:
            return x + self.k

    if tracked:
        Multi = udfmem.tracked(every=1, methods=("__call__", "double", "repeat", "aadd"))(Multi)  # type: ignore[misc]
        AddK = udfmem.tracked(every=1)(AddK)  # type: ignore[misc]
    kw: dict[str, Any] = {} if USE_PROCESS is None else {"use_process": USE_PROCESS}
    many: dict[str, Any] = {**kw, "max_concurrency": 2} if MODE == "process" else kw
    return daft.cls(**kw)(Multi), daft.cls(**many)(AddK)


def run(tracked: bool, parquet_dir: str) -> dict[str, Any]:
    """Apply every method to a small frame, and AddK to a multi-file (multi-partition) scan."""
    multi_cls, addk_cls = make(tracked)
    multi = multi_cls(10)
    df = daft.from_pydict({"x": list(range(20))})
    out = df.select(
        df["x"], multi(df["x"]).alias("row"), multi.double(df["x"]).alias("batch"), multi.aadd(df["x"]).alias("a")
    )
    gen = df.select(df["x"], multi.repeat(df["x"]).alias("g"))
    scan = daft.read_parquet(parquet_dir + "/*.parquet")
    added = scan.select(addk_cls(10)(scan["x"]).alias("y"))
    return {
        "methods": out.sort("x").to_pydict(),
        "gen": gen.sort(["x", "g"]).to_pydict(),
        "added": sorted(added.to_pydict()["y"]),
    }


def main() -> None:
    """Run tracked and untracked, compare, print the result."""
    if MODE == "ray":
        import ray

        ray.init(num_cpus=2, _temp_dir=sys.argv[2], include_dashboard=False)
        daft.set_runner_ray()
    parquet_dir = tempfile.mkdtemp(prefix="udfmem-daft-")
    for i in range(4):  # four files: four scan tasks, several UDF instances
        daft.from_pydict({"x": list(range(i * 50, (i + 1) * 50))}).write_parquet(parquet_dir)
    tracked, plain = run(True, parquet_dir), run(False, parquet_dir)
    result = {
        "identical": tracked == plain,
        "added_ok": tracked["added"] == [x + 10 for x in range(200)],
        "gen_rows": len(tracked["gen"]["g"]),
    }
    print("RESULT " + json.dumps(result), flush=True)
    if MODE == "ray":
        import time

        import ray

        time.sleep(2)  # let the log monitor relay the last worker lines
        ray.shutdown()


if __name__ == "__main__":
    main()
