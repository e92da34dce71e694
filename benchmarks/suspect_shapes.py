"""A tracked ``Embed`` UDF in one memory shape, called CALLS times: bench_suspect.py's and test_suspect.py's runs.

Run: ``python benchmarks/suspect_shapes.py SHAPE SIZE CALLS SEED [OPTION=VALUE...]``; the
``udfmem.*`` lines go to stderr. ``every=8``; each call also waits 0.5 ms (the detector's
time budget is a share of the UDF's time). OPTIONs go to ``@udfmem.tracked`` (``trim=off``,
``trim=32``, ``every=100``, ``suspect=False``), except the script's own: ``stop=N`` (the
call at which a saturating shape stops growing), ``threads=N`` (N threads call the one
UDF object, as a threaded actor with ``max_concurrency=N``) and ``work_us=N`` (each call's
wait, 500 by default; 0 for fast calls), ``holes=N`` (a heap fragmented by N free chunks
before the UDF, so that malloc's walk is slow: the heap probe's time budget then holds
readings back, as on a loaded machine). What none sets comes from ``UDFMEM_*`` as in any
worker. Shapes:

- leaks of SIZE bytes per call: ``cache`` (a dict on self), ``batches`` (a list on self),
  ``closures`` (closures over each batch), ``module`` (a module-level list), ``arrow``
  (Arrow arrays on self);
- ``small``: 20,000 small strings per call (pymalloc's arenas, not malloc's figures);
- ``stops``: SIZE/4 per call for 200 calls, then nothing;
- ``saturates``: a bounded cache, SIZE per call until call ``stop`` (215), then full;
- ``table``: a warm-up table (a vocabulary) whose new entries per call fall from 2 x SIZE to
  none at call ``stop`` (160): it grows fast, slows, and is full from there;
- ``fast``: a ``cache`` of SIZE per call for fast calls (run with ``work_us=0``,
  ``every=100``, ``threads=4``: the README's plain Ray actor);
- ``trims``: a ``cache`` of SIZE per call plus 16 MiB of small buffers made and freed in
  each call (what a decoder leaves to the allocator; run it with ``trim=N``: periodic trims);
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
options = {"every": 8}
for arg in sys.argv[5:]:
    key, _, value = arg.partition("=")
    options[key] = int(value) if value.isdigit() else {"True": True, "False": False}.get(value, value)
stop = options.pop("stop", {"saturates": 215, "table": 160}.get(shape, 0))
threads = options.pop("threads", 1)
work_s = options.pop("work_us", 500) / 1e6
# holes=N: N freed 700-byte blocks between kept ones, made before the UDF: malloc's walk
# (the heap probe) then costs ~20 µs per 1,000 (8,000: what a small heap's walk costs at load 4)
_kept = [bytearray(700) for _ in range(2 * options.pop("holes", 0))]
del _kept[::2]
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


@udfmem.tracked(**options)
class Embed:
    """An embedding UDF with an 8 MiB model whose calls keep (or not) memory in the chosen shape."""

    def __init__(self):
        self.cache, self.batches, self.callbacks, self.kept = {}, [], [], []
        self.model = bytearray(b"m") * (8 * MIB)
        self.n = 0

    def __call__(self, x):
        """One call: 0.5 ms of work (``work_us``), then the shape's allocation."""
        self.n += 1  # threads=N: the count may race; the leaks key on the input
        n = self.n
        if work_s:
            time.sleep(work_s)
        if shape in ("cache", "fast"):
            self.cache[f"key-{x}"] = bytearray(b"x") * size
        elif shape == "trims":  # the kept pieces interleave with freed ones: holes only a trim gives back
            made = [bytearray(b"s") * (16 * 1024) for _ in range(16 * MIB // (16 * 1024))]
            self.batches.extend(made[:: max(1, len(made) * 16 * 1024 // max(size, 1))])
            del made
        elif shape == "saturates":
            if n <= stop:
                self.cache[n] = bytearray(b"x") * size
        elif shape == "table":
            new = int(2 * size * max(0, stop - n) / stop)  # bytes of new entries: 2 x SIZE falling to 0 at stop
            for j in range(new // 4096):
                self.cache[(n, j)] = bytes(4096)
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
if threads == 1:
    for i in range(calls):
        udf(i)
else:  # one object called from N threads at once, as a threaded actor (max_concurrency=N)
    share = [range(t, calls, threads) for t in range(threads)]
    workers = [threading.Thread(target=lambda r: [udf(i) for i in r], args=(r,)) for r in share]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
