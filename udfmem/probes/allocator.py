"""Give freed memory back to the OS the way of the allocator serving malloc, then Arrow's pool.

glibc keeps freed memory resident in its arenas; one ``malloc_trim(0)`` from any thread
walks every arena and returns the free pages (measured here: 551 → 71 MiB in 55 ms after
a 32-thread churn, ~0.1 ms per MiB released, ~2 µs when there is nothing to free).
A preloaded jemalloc or tcmalloc serves malloc instead (:mod:`udfmem.probes.allocators`
finds which): glibc's trim would release nothing there, so theirs is used: jemalloc's
``arena.<ALL>.purge`` (its dirty pages), tcmalloc's ``MallocExtension_ReleaseFreeMemory``
(its page heap's free pages).
Arrow's default pool (mimalloc or jemalloc) keeps its own freed memory until
``release_unused()``; no malloc release touches it. Every platform without these gets a
reasoned no-op: musl has no ``malloc_trim``, macOS has ``malloc_zone_pressure_relief``,
Windows has neither, and an allocator udfmem does not know has no release it could call.
"""

from __future__ import annotations

import ctypes
import dataclasses
import platform
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _process, _reentry
from . import allocators as _allocators
from . import process as _probes

M_ARENA_MAX = -8  # glibc's mallopt parameter number


@dataclasses.dataclass(frozen=True)
class TrimResult:
    """What one :func:`trim` did. Sizes are MiB; RSS drops attributed to each step.

    ``supported`` is False where no allocator release was possible, and ``reason`` says
    why (for example ``"musl: no malloc_trim"``); ``reason`` also names a part that was
    skipped while another ran (``"pyarrow not imported"``). ``allocator`` names the
    allocator serving malloc and ``method`` the release that was called for it
    (``"malloc_trim"``, ``"jemalloc arena.4096.purge"``, ``"tcmalloc
    MallocExtension_ReleaseFreeMemory"``; None when none was); ``malloc_released_mb`` is
    what that release gave back.
    """

    supported: bool
    released_mb: float
    malloc_released_mb: float
    arrow_released_mb: float
    took_ms: float
    rss_before_mb: float | None
    rss_after_mb: float | None
    reason: str | None = None
    allocator: str | None = None
    method: str | None = None


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


Release = tuple[Any, "str | None", "str | None"]
"""A native release function (or None), its name, and why there is none."""


def platform_release(
    load_libc: Callable[[], Any] = _libc, serving: Callable[[], _allocators.Allocator] = _allocators.serving
) -> Release:
    """The native release function for this platform, its name, and why there is none.

    ``load_libc`` loads the C library (tests pass another platform's symbols); ``serving``
    names the allocator serving malloc (:func:`udfmem.probes.allocators.serving`): jemalloc
    and tcmalloc bring their own release; under another allocator than glibc's, glibc's
    ``malloc_trim`` would release nothing and is not called.
    """
    if sys.platform == "win32":
        return None, None, "Windows: no malloc_trim; the CRT heap returns memory itself"
    libc = load_libc()
    if libc is None:
        return None, None, "libc not loadable"
    if sys.platform == "darwin":
        relief = getattr(libc, "malloc_zone_pressure_relief", None)
        if relief is None:
            return None, None, "macOS: malloc_zone_pressure_relief missing"
        relief.restype = ctypes.c_size_t
        relief.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        return (lambda: relief(None, 0)), "malloc_zone_pressure_relief", None
    found = serving()
    if found.release is not None:
        return found.release, found.release_name, None
    if found.name != "glibc":  # musl, or an allocator udfmem cannot release: glibc's trim would do nothing
        return None, None, found.no_release or f"{found.name} serves malloc: no release known"
    trim_fn = getattr(libc, "malloc_trim", None)
    if trim_fn is None:
        if getattr(libc, "gnu_get_libc_version", None) is None:
            return None, None, f"{_libc_name()}: no malloc_trim"
        return None, None, "glibc without malloc_trim (symbol missing)"
    trim_fn.restype = ctypes.c_int
    trim_fn.argtypes = [ctypes.c_size_t]
    return (lambda: trim_fn(0)), "malloc_trim", None


def _libc_name() -> str:
    if sys.platform.startswith("linux"):
        return "musl" if _libc_is_musl() else "non-glibc libc"
    return f"{sys.platform} libc"


def _libc_is_musl() -> bool:
    try:
        return platform.libc_ver()[0] != "glibc"
    except Exception:
        return False


_release: Any = None
_release_name: str | None = None
_release_reason: str | None = None
_resolved = False
_trim_lock = threading.RLock()  # re-entrant: a trim from a finalizer inside a trim runs, never waits


def _resolve() -> None:
    global _release, _release_name, _release_reason, _resolved
    if not _resolved:
        _release, _release_name, _release_reason = platform_release()
        _resolved = True


def use_release(found: Release | None) -> None:
    """Use ``found`` (as :func:`platform_release` gives it) as this process's release; None: look it up again.

    For tests that simulate another platform, e.g. ``(None, None, "musl: no malloc_trim")``.
    """
    global _release, _release_name, _release_reason, _resolved
    with _trim_lock:
        if found is None:
            _resolved = False
        else:
            (_release, _release_name, _release_reason), _resolved = found, True


def _release_arrow() -> str | None:
    """Release Arrow's unused pool memory; return why not, or None when done."""
    pa = sys.modules.get("pyarrow")
    if pa is None:
        return "pyarrow not imported"
    try:
        pa.default_memory_pool().release_unused()
    except Exception as exc:
        return f"arrow release failed: {exc!r}"
    return None


def trim() -> TrimResult:
    """Release freed memory to the OS now: glibc's arenas, then Arrow's pool.

    Safe from any thread (one trim at a time per process), and from a finalizer or a
    signal handler: it never waits on a trim of its own thread. Arrow is touched only if
    your code already imported pyarrow. Never raises.

    Returns:
        A :class:`TrimResult`: MiB released in all and per step, time taken, RSS before
        and after, and where nothing could be released, why.
    """
    here = _reentry.here
    if here.inside:  # called inside udfmem on this thread (udfmem's own trims, or a finalizer there)
        return release()
    result: list[TrimResult] = []
    _reentry.section(lambda: result.append(release()))  # a finalizer run inside defers its udfmem work
    return result[0]


def release() -> TrimResult:
    """:func:`trim` itself, for udfmem's own trims (already inside a udfmem section)."""
    _resolve()
    probes = _probes.probes()
    with _trim_lock:
        t0 = time.perf_counter()
        rss0 = probes.rss()
        reasons: list[str] = []
        if _release is not None:
            try:
                _release()
            except Exception as exc:
                reasons.append(f"{_release_name} failed: {exc!r}")
        elif _release_reason:
            reasons.append(_release_reason)
        rss1 = probes.rss()
        arrow_reason = _release_arrow()
        if arrow_reason:
            reasons.append(arrow_reason)
        rss2 = probes.rss()
        took = (time.perf_counter() - t0) * 1000
    malloc_mb = _drop(rss0, rss1)
    arrow_mb = _drop(rss1, rss2)
    return TrimResult(
        supported=_release is not None or arrow_reason is None,
        released_mb=round(malloc_mb + arrow_mb, 1),
        malloc_released_mb=malloc_mb,
        arrow_released_mb=arrow_mb,
        took_ms=round(took, 3),
        rss_before_mb=_probes.mb(rss0),
        rss_after_mb=_probes.mb(rss2),
        reason="; ".join(reasons) or None,
        allocator=probes.allocator.name,
        method=_release_name if _release is not None else None,
    )


def _drop(before: int | None, after: int | None) -> float:
    if before is None or after is None:
        return 0.0
    return round(max(0, before - after) / _probes.MIB, 1)


def _reset_after_fork() -> None:
    global _trim_lock
    _trim_lock = threading.RLock()  # re-entrant: a trim from a finalizer inside a trim runs, never waits


_process.on_new_process(_reset_after_fork, _process.PROBES, fork_only=True)  # the lock may be held by a parent thread


def arena_count() -> int | None:
    """How many glibc malloc arenas exist now (from ``malloc_info``), or None off glibc."""
    libc = _libc()
    if libc is None or getattr(libc, "malloc_info", None) is None or getattr(libc, "open_memstream", None) is None:
        return None
    buf = ctypes.c_char_p()
    size = ctypes.c_size_t()
    libc.open_memstream.restype = ctypes.c_void_p
    libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.free.argtypes = [ctypes.c_void_p]
    stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
    if not stream:
        return None
    try:
        libc.malloc_info(0, stream)
    finally:
        libc.fclose(stream)
    try:
        text = ctypes.string_at(buf, size.value)
    finally:
        libc.free(buf)
    return text.count(b"<heap nr=")


def set_arena_max(n: int) -> tuple[bool, str | None]:
    """``mallopt(M_ARENA_MAX, n)``: (applied, why not or a caveat).

    glibc only honours the cap for arenas created afterwards: when more than ``n``
    arenas exist already, the call succeeds but cannot shrink them (the caveat says so).
    Under another allocator (a preloaded jemalloc or tcmalloc) glibc's arenas serve
    nothing: the cap is not applied, and the reason says which allocator serves malloc.
    """
    serving = _allocators.serving().name
    if serving != "glibc":
        return False, f"{serving} serves malloc: M_ARENA_MAX caps glibc's arenas only"
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None or getattr(libc, "gnu_get_libc_version", None) is None:
        return False, "no glibc mallopt"
    mallopt.restype = ctypes.c_int
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    existing = arena_count()
    if not mallopt(M_ARENA_MAX, n):
        return False, "mallopt(M_ARENA_MAX) failed"
    if existing is not None and existing > n:
        return True, f"too late: {existing} arenas already exist; the cap only limits new ones"
    return True, None
