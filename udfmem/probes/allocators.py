"""Which allocator serves ``malloc`` in this process, and what it can tell: its figures and its way to give memory back.

Users preload jemalloc or tcmalloc (Ray supports jemalloc for its workers); glibc's
``mallinfo2`` then sees nothing (reads ~0) and ``malloc_trim`` releases nothing. So the
allocator is found by where ``malloc`` itself lives: the address the process's global
symbol lookup gives for ``malloc`` is handed to ``dladdr`` (or looked up in
``/proc/self/maps``), which names the shared object serving it; that object's own
symbols (a symbol counts only when ``dladdr`` places it in the same object) say which
allocator it is. A jemalloc bundled under prefixed names (pyarrow's ``je_arrow_*``) or
loaded ``RTLD_LOCAL`` by a library never serves ``malloc`` and is never taken for it.
Found once per process (:func:`serving`; a fork child looks again), ~0.1 ms.

What each one tells (bytes; measured here, Debian ``libjemalloc2`` 5.3 and
``libtcmalloc-minimal4`` 2.10 under ``LD_PRELOAD``, Python 3.11, 2 cores):

- **glibc**: ``mallinfo2`` (read by :mod:`udfmem.probes.process`), released by
  ``malloc_trim(0)``.
- **jemalloc**: ``mallctl("epoch")`` refreshes its statistics, then in use is
  ``stats.allocated``; freed but held is ``stats.active - stats.allocated`` (free
  regions inside pages that hold live ones, and the thread caches) plus the dirty and
  muzzy pages of all arenas (``stats.arenas.<ALL>.pdirty|pmuzzy`` times the page size:
  freed pages still mapped, what a purge gives back). ``stats.retained`` is left out: it
  is address space already returned to the OS, not resident. No mmapped figure (glibc
  only). Released by ``mallctl("arena.<ALL>.purge")`` (``MALLCTL_ARENAS_ALL`` = 4096)
  after flushing the calling thread's cache. One read ~10 µs (the epoch ~8 µs; the
  muzzy pages are not asked where muzzy decay is 0, jemalloc 5.2+'s default).
- **tcmalloc** (gperftools): ``MallocExtension_GetNumericProperty``: in use is
  ``generic.current_allocated_bytes``; freed but held is ``generic.heap_size`` less
  ``tcmalloc.pageheap_unmapped_bytes`` (returned to the OS) less the in-use bytes: the
  page heap's free bytes (``tcmalloc.pageheap_free_bytes``, what
  ``MallocExtension_ReleaseFreeMemory`` gives back) plus the central, transfer and thread
  caches' free bytes (which a release leaves); the same sum as those four properties,
  checked here, in three reads. One read ~4 µs (min of repeats, load 6).
- **musl**, **mimalloc** (preloaded) and anything else: nothing read (the heap fields are
  left out, never 0), nothing released; :attr:`Allocator.unreadable` says why.

Reads keep the GIL (``PyDLL``: microseconds, and a released GIL costs more to get back
from busy threads); releases let it go (a purge takes milliseconds).

The Python object allocator is another question (:func:`python_objects`): pymalloc's
blocks are counted by ``sys.getallocatedblocks()``, which reads 0 under
``PYTHONMALLOC=malloc`` and counts only part of the objects under mimalloc (Python 3.13's
``PYTHONMALLOC=mimalloc``, free-threaded builds).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

Heap = tuple[int, int, "int | None"]
"""(in use, freed but held, mmapped or None) bytes, as :data:`udfmem.probes.process.Heap`."""

JEMALLOC_ARENAS_ALL = 4096
"""jemalloc 5's ``MALLCTL_ARENAS_ALL``: the arena index that means every arena."""


@dataclasses.dataclass(frozen=True)
class Allocator:
    """The allocator serving ``malloc`` and what udfmem can do with it.

    ``name``: ``glibc``, ``jemalloc``, ``tcmalloc``, ``musl``, ``mimalloc``, ``macos``, ``windows`` or ``unknown``
    (what events carry as ``allocator=``); ``path``: the shared object serving ``malloc``
    where known. ``read`` gives (in use, freed but held, None) bytes, or None where this
    module reads nothing (glibc is read by the probes' ``mallinfo2``; ``unreadable`` then says
    why for the others). ``release`` gives freed memory back the allocator's way, named by
    ``release_name``; ``no_release`` says why there is none.
    """

    name: str
    path: str | None = None
    read: Callable[[], Heap | None] | None = None
    release: Callable[[], None] | None = None
    release_name: str | None = None
    unreadable: str | None = None
    no_release: str | None = None


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


Owner = Callable[[int], "str | None"]
"""The path of the shared object holding an address, or None."""


def _dladdr_owner(libc: Any) -> Owner | None:
    """``dladdr`` as an :data:`Owner` (glibc has it in libc since 2.34, in libdl before); None if absent."""
    dladdr = getattr(libc, "dladdr", None)
    if dladdr is None:
        try:
            dladdr = ctypes.CDLL("libdl.so.2").dladdr
        except (OSError, AttributeError):
            return None
    dladdr.restype = ctypes.c_int
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]

    def owner(addr: int) -> str | None:
        info = _DlInfo()
        if not dladdr(addr, ctypes.byref(info)) or not info.dli_fname:
            return None
        return os.fsdecode(info.dli_fname)

    return owner


def _maps_owner(addr: int, maps: str = "/proc/self/maps") -> str | None:
    """The file mapped at ``addr`` in ``/proc/self/maps`` (dladdr's stand-in where it is missing), or None."""
    try:
        with open(maps) as f:
            for line in f:
                parts = line.split(None, 5)
                start, _, end = parts[0].partition("-")
                if int(start, 16) <= addr < int(end, 16):
                    return parts[5].strip() if len(parts) == 6 else None
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address(lib: Any, symbol: str) -> int | None:
    """The address the global lookup gives for ``symbol``, or None when it is not defined."""
    try:
        return ctypes.cast(getattr(lib, symbol), ctypes.c_void_p).value
    except (AttributeError, ValueError):
        return None


def classify(path: str | None, defines: Callable[[str], bool]) -> str:
    """The allocator's name from the object serving ``malloc`` (``path``) and ``defines(symbol)``.

    ``defines`` tells whether that same object defines a symbol (tests pass another
    platform's: musl, mimalloc). jemalloc and tcmalloc are asked first: both are linked
    against glibc, whose symbols a lookup through them could reach.
    """
    if defines("mallctl"):
        return "jemalloc"
    if defines("MallocExtension_GetNumericProperty"):
        return "tcmalloc"
    if defines("mi_malloc"):
        return "mimalloc"
    if defines("gnu_get_libc_version"):
        return "glibc"
    base = os.path.basename(path or "")
    if "musl" in base:
        return "musl"
    return "unknown"


def detect(load: Callable[[], Any] = lambda: ctypes.CDLL(None)) -> Allocator:
    """Find which allocator serves ``malloc`` here and build its readers; never raises.

    ``load`` loads the process's global symbols (``dlopen(NULL)``).
    """
    if sys.platform == "darwin":  # released by malloc_zone_pressure_relief (udfmem.probes.allocator)
        return Allocator("macos", unreadable="macOS: the malloc zones' figures are not read")
    if sys.platform == "win32":
        return Allocator("windows", unreadable="Windows: the CRT heap's figures are not read")
    try:
        lib = load()
    except OSError:
        return Allocator("unknown", unreadable="the C library could not be loaded", no_release="no C library")
    malloc = _address(lib, "malloc")
    if malloc is None:
        return Allocator("unknown", unreadable="malloc not found", no_release="malloc not found")
    owner = _dladdr_owner(lib) or _maps_owner
    path = owner(malloc)
    if path is None:
        return Allocator(
            "unknown", unreadable="cannot tell which library serves malloc", no_release="unknown allocator"
        )

    def defines(symbol: str) -> bool:
        addr = _address(lib, symbol)
        return addr is not None and owner(addr) == path

    name = classify(path, defines)
    try:
        if name == "jemalloc":
            return _jemalloc(path)
        if name == "tcmalloc":
            return _tcmalloc(path)
    except Exception as exc:  # an odd build: named, nothing read
        return Allocator(name, path, unreadable=f"{name}: {exc}", no_release=f"{name}: {exc}")
    if name == "glibc":
        return Allocator("glibc", path)  # mallinfo2 and malloc_trim: the probes and udfmem.probes.allocator
    base = os.path.basename(path)
    if name == "musl":
        return Allocator(
            name, path, unreadable="musl: malloc keeps no readable figures", no_release="musl: no malloc_trim"
        )
    why = f"{name} ({base}) serves malloc: udfmem reads no figures of it"
    return Allocator(name, path, unreadable=why, no_release=f"{name} ({base}) serves malloc: no release known")


def _library(kind: Callable[[str | None], Any], path: str) -> Any:
    """The already loaded object at ``path`` as a ``ctypes`` library of ``kind``, else the global symbols.

    The fallback is for an allocator linked into the executable: a PIE cannot be ``dlopen``-ed by name.
    """
    try:
        return kind(path)
    except OSError:
        return kind(None)


# -- jemalloc ------------------------------------------------------------------------------------


def _jemalloc(path: str) -> Allocator:
    """jemalloc's readers and release, through ``mallctl`` (raises where its statistics are off)."""
    keep_gil = _library(ctypes.PyDLL, path).mallctl
    free_gil = _library(ctypes.CDLL, path).mallctl
    for fn in (keep_gil, free_gil):
        fn.restype = ctypes.c_int
        fn.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]
    size_t, byref = ctypes.c_size_t, ctypes.byref
    width = ctypes.sizeof(size_t)

    def get(name: bytes) -> int | None:
        # fresh buffers per call: the GIL may pass to another reader between the call and the read of its value
        value, size = size_t(), size_t(width)
        return None if keep_gil(name, byref(value), byref(size), None, 0) else value.value

    enabled = ctypes.c_bool()
    enabled_size = ctypes.c_size_t(1)
    if keep_gil(b"config.stats", ctypes.byref(enabled), ctypes.byref(enabled_size), None, 0) or not enabled.value:
        raise RuntimeError("built without statistics (config.stats false)")
    page = get(b"arenas.page") or 4096
    every = JEMALLOC_ARENAS_ALL
    if get(b"stats.arenas.%d.pdirty" % every) is None:  # jemalloc 4: the index one past the last arena
        narenas, narenas_size = ctypes.c_uint(), size_t(ctypes.sizeof(ctypes.c_uint))  # an unsigned, not a size_t
        if not keep_gil(b"arenas.narenas", byref(narenas), byref(narenas_size), None, 0) and narenas.value:
            every = narenas.value
    dirty, muzzy = b"stats.arenas.%d.pdirty" % every, b"stats.arenas.%d.pmuzzy" % every
    decay = ctypes.c_ssize_t(-1)
    decay_size = ctypes.c_size_t(ctypes.sizeof(decay))
    if not keep_gil(b"opt.muzzy_decay_ms", ctypes.byref(decay), ctypes.byref(decay_size), None, 0) and not decay.value:
        muzzy = b""  # muzzy decay 0 (jemalloc 5.2+'s default): no page is ever muzzy, one read fewer
    purge = b"arena.%d.purge" % every
    cached = b"stats.arenas.%d.tcache_bytes" % every  # freed objects parked in thread caches (5.x), counted allocated

    def read() -> Heap | None:
        """(allocated less thread-cached, active - that + dirty and muzzy pages, None) after an epoch.

        ``stats.allocated`` counts the freed objects the thread caches hold; they are freed
        memory the allocator keeps, so they move to the second figure.
        """
        epoch, epoch_size = ctypes.c_uint64(1), size_t(8)
        if keep_gil(b"epoch", byref(epoch), byref(epoch_size), byref(epoch), 8):
            return None
        allocated, active = get(b"stats.allocated"), get(b"stats.active")
        pages = (get(dirty) or 0) + ((get(muzzy) or 0) if muzzy else 0)
        if allocated is None or active is None:
            return None
        allocated -= min(allocated, get(cached) or 0)
        return allocated, max(0, active - allocated) + pages * page, None

    def release() -> None:
        """Flush this thread's cache, then purge every arena's dirty and muzzy pages."""
        free_gil(b"thread.tcache.flush", None, None, None, 0)  # fails harmlessly where caches are off
        failed = free_gil(purge, None, None, None, 0)
        if failed:
            raise OSError(failed, f"mallctl {purge.decode()} failed")

    if read() is None:
        raise RuntimeError("mallctl statistics unreadable")
    return Allocator("jemalloc", path, read, release, f"jemalloc {purge.decode()}")


# -- tcmalloc ------------------------------------------------------------------------------------


def _tcmalloc(path: str) -> Allocator:
    """tcmalloc's readers and release, through its ``MallocExtension`` C entry points."""
    prop = _library(ctypes.PyDLL, path).MallocExtension_GetNumericProperty
    prop.restype = ctypes.c_int
    prop.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
    release_free = getattr(_library(ctypes.CDLL, path), "MallocExtension_ReleaseFreeMemory", None)
    size_t, byref = ctypes.c_size_t, ctypes.byref

    def read() -> Heap | None:
        """(generic.current_allocated_bytes, the page heap's and the caches' free bytes, None)."""
        # fresh buffers per read: the GIL may pass to another reader between a call and the read of its value
        in_use, heap, unmapped = size_t(), size_t(), size_t()
        if not prop(b"generic.current_allocated_bytes", byref(in_use)) or not prop(b"generic.heap_size", byref(heap)):
            return None
        prop(b"tcmalloc.pageheap_unmapped_bytes", byref(unmapped))  # 0 where this build lacks it
        return in_use.value, max(0, heap.value - unmapped.value - in_use.value), None

    if read() is None:
        raise RuntimeError("generic.current_allocated_bytes unreadable")
    if release_free is None:
        return Allocator("tcmalloc", path, read, no_release="tcmalloc: MallocExtension_ReleaseFreeMemory missing")
    release_free.restype = None
    release_free.argtypes = []
    return Allocator("tcmalloc", path, read, release_free, "tcmalloc MallocExtension_ReleaseFreeMemory")


# -- once per process ----------------------------------------------------------------------------

_found: tuple[int, Allocator] | None = None
_chosen: Allocator | None = None


def serving() -> Allocator:
    """The allocator serving ``malloc`` in this process (found once; again in a fork child)."""
    global _found
    if _chosen is not None:
        return _chosen
    found = _found
    if found is None or found[0] != os.getpid():
        found = _found = (os.getpid(), detect())
    return found[1]


def use(allocator: Allocator | None) -> None:
    """Take ``allocator`` as the one serving ``malloc`` here; None: detect it again.

    For tests that simulate what cannot happen on this machine (musl, an allocator udfmem
    cannot read). Probes built afterwards use it (``udfmem.probes.process.forget()``).
    """
    global _chosen, _found
    _chosen, _found = allocator, None


# -- the Python object allocator -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PythonObjects:
    """Where Python objects live, and why ``py_blocks`` is not measured (None: it is).

    ``allocator``: ``pymalloc`` (the default build), ``mimalloc`` (Python 3.13+ with
    ``PYTHONMALLOC=mimalloc``, and every free-threaded build) or ``malloc``.
    """

    allocator: str
    free_threaded: bool
    blocks_unreadable: str | None


def _gil_disabled_build() -> bool:
    """Whether this is a free-threaded build (``Py_GIL_DISABLED``, as the free-threading HOWTO checks).

    Asked only from 3.13 on (no earlier build is free-threaded): sysconfig's first read costs ~1.3 ms.
    """
    if sys.version_info < (3, 13):
        return False
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _pythonmalloc() -> str | None:
    """``PYTHONMALLOC`` as the interpreter read it (ignored under ``-E`` / ``-I``)."""
    if sys.flags.ignore_environment:
        return None
    return os.environ.get("PYTHONMALLOC") or None


def python_objects(
    version: tuple[int, int] = (sys.version_info[0], sys.version_info[1]),
    free_threaded: bool | None = None,
    pythonmalloc: str | None = "",
    blocks: Callable[[], int] = sys.getallocatedblocks,
) -> PythonObjects:
    """Which allocator holds Python objects, and whether ``sys.getallocatedblocks()`` counts them all.

    Each input defaults to this interpreter's (``version``; ``free_threaded`` from
    ``Py_GIL_DISABLED``; ``pythonmalloc`` from the environment, ``""`` meaning "read it";
    ``blocks`` the count itself, which is read once). Tests pass Python 3.13's to simulate
    what this machine cannot run (a stand-in for a 3.13t or ``PYTHONMALLOC=mimalloc``
    interpreter; the ``malloc`` case is real here).

    - free-threaded (3.13t, 3.14t): objects live in per-thread mimalloc heaps; the count
      walks every thread's heaps while the world is stopped and misses the objects of
      threads that exited: not measured.
    - ``PYTHONMALLOC=mimalloc`` (3.13+, default build): the count sees only the calling
      thread's heap: not measured.
    - ``PYTHONMALLOC=malloc`` / ``malloc_debug`` (or a build without pymalloc): objects are
      malloc's (the heap figures see them); the count reads 0: not measured.
    """
    if free_threaded is None:
        free_threaded = _gil_disabled_build()
    mode = _pythonmalloc() if pythonmalloc == "" else pythonmalloc
    mode = (mode or "").lower()
    if free_threaded:
        return PythonObjects(
            "mimalloc",
            True,
            "free-threaded build: Python objects are in per-thread mimalloc heaps; sys.getallocatedblocks() "
            "stops every thread to count them and misses those of exited threads",
        )
    if version >= (3, 13) and mode.startswith("mimalloc"):
        return PythonObjects(
            "mimalloc",
            False,
            f"PYTHONMALLOC={mode}: sys.getallocatedblocks() counts only the calling thread's objects",
        )
    if mode.startswith("malloc"):
        return PythonObjects(
            "malloc", False, f"PYTHONMALLOC={mode}: Python objects are malloc's; sys.getallocatedblocks() reads 0"
        )
    try:
        counted = blocks()
    except Exception:
        counted = 0
    if counted <= 0:
        return PythonObjects(
            "malloc", False, "sys.getallocatedblocks() reads 0: Python objects are malloc's (no pymalloc)"
        )
    return PythonObjects("pymalloc", False, None)
