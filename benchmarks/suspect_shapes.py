"""A tracked ``Embed`` UDF in one memory shape, called CALLS times: bench_suspect.py's and test_suspect.py's runs.

Run: ``python benchmarks/suspect_shapes.py SHAPE SIZE CALLS SEED [OPTION=VALUE...]``; the
``udfmem.*`` lines go to stderr. ``every=8``; each call also waits 0.5 ms (the detector's
time budget is a share of the UDF's time). OPTIONs go to ``@udfmem.tracked`` (``trim=off``,
``suspect=False``); what none sets comes from ``UDFMEM_*`` as in any worker. Shapes:

- leaks of SIZE bytes per call: ``cache`` (a dict on self), ``batches`` (a list on self),
  ``closures`` (closures over each batch), ``module`` (a module-level list), ``arrow``
  (Arrow arrays on self);
- ``small``: 20,000 small strings per call (pymalloc's arenas, not malloc's figures);
- ``stops``: SIZE/4 per call for 200 calls, then nothing;
- healthy: ``noisy`` (0-200 MiB transients, a SEEDed sequence), ``churn`` (8 threads
  allocate 8 MiB each in small buffers, 1 in 8 kept until the next call: allocator
  retention), ``bounded`` (a cache that fills 48 MiB and stops).

Tests read it as text and run it with ``python -c`` (a fresh interpreter, ``__main__``
as here): keep it a plain script.
"""

import random
import sys
import threading
import time

import udfmem

KEEP = []
MIB = 1 << 20
shape, size, calls, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
options = {}
for arg in sys.argv[5:]:
    key, _, value = arg.partition("=")
    options[key] = int(value) if value.isdigit() else {"True": True, "False": False}.get(value, value)
random.seed(seed)  # the noisy shape's transients are the same sequence in every run with this seed


def churn(i):
    """8 threads allocate 8 MiB each in 4-120 KiB buffers; 1 in 8 is returned (kept), the rest freed."""
    made = [[] for _ in range(8)]
    gate = threading.Barrier(8)

    def work(t):
        gate.wait()
        rnd, total = random.Random(seed * 100 + i * 8 + t), 0
        while total < 8 * MIB:
            n = rnd.randrange(4096, 120 * 1024)
            made[t].append(bytearray(b"x") * n)
            total += n

    ts = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return [b for bufs in made for j, b in enumerate(bufs) if j % 8 == 0]


@udfmem.tracked(every=8, **options)
class Embed:
    """An embedding UDF with an 8 MiB model whose calls keep (or not) memory in the chosen shape."""

    def __init__(self):
        self.cache, self.batches, self.callbacks, self.kept = {}, [], [], []
        self.model = bytearray(b"m") * (8 * MIB)
        self.n = 0

    def __call__(self, x):
        """One call: 0.5 ms of work, then the shape's allocation."""
        self.n += 1
        time.sleep(0.0005)
        if shape == "cache":
            self.cache[f"key-{self.n}"] = bytearray(b"x") * size
        elif shape == "batches":
            self.batches.append(bytearray(b"x") * size)
        elif shape == "closures":
            batch = bytearray(b"x") * size
            self.callbacks.append(lambda: len(batch))
        elif shape == "module":
            KEEP.append(bytearray(b"x") * size)
        elif shape == "arrow":
            import pyarrow as pa

            self.batches.append(pa.array(range(size // 8), type=pa.int64()))
        elif shape == "small":
            self.batches.extend(f"s{self.n}-{j}" for j in range(20_000))
        elif shape == "stops":
            if self.n <= 200:
                self.batches.append(bytearray(b"x") * (size // 4))
        elif shape == "noisy":
            scratch = bytearray(b"x") * random.randint(0, 200 * MIB)
            del scratch
        elif shape == "churn":
            self.kept = churn(self.n)
        elif shape == "bounded" and len(self.cache) < 48:
            self.cache[self.n] = bytearray(b"x") * MIB
        return x


udf = Embed()
for i in range(calls):
    udf(i)
