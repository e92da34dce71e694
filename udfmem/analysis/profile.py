"""What a memray profile still held, and from where: plain records in, a frozen summary out.

For one profile: the peak heap, the bytes still allocated when the tracker closed
("leaked"), how much of that was allocated under the UDF's per-call methods versus under
``setup()``/``__init__`` (named by the ``.json`` sidecar udfmem writes next to the file),
the top leaking stacks, and a verdict from :func:`patterns.profile_verdict`. Reading the
file is the caller's business (``udfmem.commands.report``); nothing here imports memray.

**One-time versus per-call.** A call that leaves memory behind once — OpenBLAS's 32 MiB
buffer at the first ``x @ w``, a lookup table built lazily, a JIT cache — is not a leak
that grows with the calls. Each record may say when its still-live bytes were allocated
(``born``: memray's memory-snapshot index, one every ~10 ms) and when its stack allocated
at all (``active``). The snapshots at which the per-call methods allocated anything are
the calls' span; its first ``EARLY_SHARE`` (by rank, so idle time between batches does
not count) is "the first calls". A per-call site (an allocating stack) whose live bytes
were all born in the first calls, none later, is *one-time*: it is reported apart
(``one_time_leaked_mb``) and counts with setup for the verdict (it is setup done lazily);
a site with live bytes from any later call grows with the calls (``per_call_leaked_mb``,
all of its bytes). With fewer than ``MIN_CALL_SNAPSHOTS`` snapshots of calls (a run too
short to tell early from late), or records without times, every per-call byte counts as
per-call, as before.

**udfmem's own frames** are told by module, not by where this copy of udfmem is installed:
a frame whose file ends in ``udfmem/<a module of this package>`` (``udfmem/analysis/
verdict.py`` in a Ray ``working_dir`` copy, another venv, a relative path) is udfmem's;
an allocation made inside udfmem (its snapshot, its detector) is shown as
:data:`UDFMEM_OWN`, never as the user frames below it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import patterns

Frame = tuple[str, str, int]
"""One stack frame as memray gives it: ``(function, filename, line)``."""

CALL, SETUP, OTHER = "call", "setup", "other"
"""Where a leaked allocation came from: the per-call methods, setup, or neither."""
UDFMEM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""udfmem's package directory: frames of files anywhere under it are udfmem's own (its wrappers), never a user's."""
NO_PYTHON_FRAME = "(no Python frame: the interpreter or a native library)"
"""The stand-in for a stack with no user frame."""
UDFMEM_OWN = "(udfmem's own: its snapshots and detector)"
"""The stand-in for an allocation made inside udfmem (its innermost Python frame is udfmem's)."""
EARLY_SHARE = 0.25
"""The first calls: this share of the snapshots at which the per-call methods allocated (by rank)."""
MIN_CALL_SNAPSHOTS = 8
"""Snapshots with per-call allocations needed to tell the first calls from later ones (else all is per-call)."""
_NEVER = sys.maxsize  # the birth snapshot of bytes whose time is unknown: never among the first calls
PACKAGE = __name__.partition(".")[0]
"""udfmem's top-level package name: frames of its modules are udfmem's own."""
STACK_DEPTH = 8
"""Frames (innermost first) that identify a leaking stack."""


@dataclass(frozen=True)
class LeakRecord:
    """Bytes still allocated at one stack when the tracker closed."""

    stack: Sequence[Frame]
    """The allocating stack, innermost frame first."""
    size: int
    """Leaked bytes."""
    allocations: int
    """Number of leaked allocations."""
    born: tuple[tuple[int, int], ...] = ()
    """(memory-snapshot index at allocation, bytes) of the leaked allocations; () when unknown."""
    active: tuple[int, ...] = ()
    """Snapshot indices at which this stack allocated anything (freed or not); () when unknown.
    A record with ``size`` 0 (all freed) carries only this: when the per-call methods ran."""


@dataclass(frozen=True)
class ProfileHeader:
    """What the profile file itself says about the run."""

    pid: int
    peak_bytes: int
    native_traces: bool
    ended: bool
    """Whether the tracker was closed (a SIGKILLed worker's file has no end time)."""


@dataclass(frozen=True)
class Attribution:
    """Which functions, in which file, are the UDF's per-call methods and its setup."""

    methods: frozenset[str] = frozenset({"__call__"})
    setups: frozenset[str] = frozenset({"__init__", "setup"})
    source: str | None = None
    """The UDF's source file; ``None`` matches the names in any file."""

    @classmethod
    def from_sidecar(cls, sidecar: Mapping[str, Any]) -> Attribution:
        """Read from udfmem's ``.json`` sidecar; missing or empty entries give the defaults."""
        default = cls()
        return cls(
            methods=frozenset(sidecar.get("methods") or default.methods),
            setups=frozenset(sidecar.get("setup") or default.setups),
            source=sidecar.get("source"),
        )


@dataclass(frozen=True)
class StackEntry:
    """One of a profile's top leaking stacks."""

    leaked_mb: float
    allocations: int
    stack: tuple[str, ...]
    """Rendered user frames, innermost first (``function (file.py:line)``)."""
    one_time: bool = False
    """Whether all of it was one-time (per-call bytes born in the first calls only; module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``udfmem report --json`` prints for this stack; ``one_time`` only when true."""
        out: dict[str, Any] = {"leaked_mb": self.leaked_mb, "allocations": self.allocations, "stack": list(self.stack)}
        if self.one_time:
            out["one_time"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StackEntry:
        """The entry :meth:`to_dict` gave."""
        return cls(data["leaked_mb"], data["allocations"], tuple(data["stack"]), bool(data.get("one_time", False)))


@dataclass(frozen=True)
class ProfileSummary:
    """The summary of one memray profile (see the module docstring); sizes in MiB, rounded."""

    path: str
    udf: str | None
    pid: int | None
    peak_mb: float
    leaked_mb: float
    per_call_leaked_mb: float
    setup_leaked_mb: float
    other_leaked_mb: float
    per_call_share: float
    verdict: str
    top_stacks: tuple[StackEntry, ...]
    native_traces: bool
    complete: bool
    flamegraph: str | None = None
    """The rendered leaks flame graph's path, when one was rendered."""
    one_time_leaked_mb: float = 0.0
    """Left by the per-call methods on the first calls only, never later (module docstring); not in
    ``per_call_leaked_mb``, counted with setup for the verdict."""
    call_snapshots: int = 0
    """Memory snapshots at which the per-call methods allocated (0: no times in the records); fewer than
    ``MIN_CALL_SNAPSHOTS`` cannot tell one-time from per-call."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``udfmem report --json`` prints.

        ``one_time_leaked_mb`` and ``call_snapshots`` only when the records had times (memray's
        temporal records), ``flamegraph`` only when rendered; keys are only ever added.
        """
        out: dict[str, Any] = {
            "path": self.path,
            "udf": self.udf,
            "pid": self.pid,
            "peak_mb": self.peak_mb,
            "leaked_mb": self.leaked_mb,
            "per_call_leaked_mb": self.per_call_leaked_mb,
            "setup_leaked_mb": self.setup_leaked_mb,
            "other_leaked_mb": self.other_leaked_mb,
            "per_call_share": self.per_call_share,
            "verdict": self.verdict,
            "top_stacks": [entry.to_dict() for entry in self.top_stacks],
            "native_traces": self.native_traces,
            "complete": self.complete,
        }
        if self.call_snapshots:  # the records had times: one-time bytes were looked for
            out["one_time_leaked_mb"] = self.one_time_leaked_mb
            out["call_snapshots"] = self.call_snapshots
        if self.flamegraph is not None:
            out["flamegraph"] = self.flamegraph
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileSummary:
        """The summary :meth:`to_dict` gave (how a summary read in a child process comes back)."""
        fields = {**data, "top_stacks": tuple(StackEntry.from_dict(entry) for entry in data["top_stacks"])}
        return cls(**fields)


def classify_stack(stack: Sequence[Frame], attribution: Attribution) -> str:
    """:data:`CALL`, :data:`SETUP` or :data:`OTHER`: the innermost frame that is one of the UDF's methods decides."""
    source = attribution.source
    for function, filename, _ in stack:  # innermost first
        if source is not None and os.path.abspath(filename) != os.path.abspath(source):
            continue
        if function in attribution.setups:
            return SETUP
        if function in attribution.methods:
            return CALL
    return OTHER


@functools.cache
def _own_files() -> frozenset[str]:
    """This package's module files as ``udfmem/analysis/profile.py`` (``/``-separated), found once."""
    package = sys.modules.get(PACKAGE)
    init = getattr(package, "__file__", None) if package is not None else None
    if not init:
        return frozenset()
    root = os.path.dirname(os.path.abspath(init))
    found: set[str] = set()
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d.isidentifier()]  # packages, not __pycache__
        rel = os.path.relpath(directory, root)
        parts = [PACKAGE] if rel == os.curdir else [PACKAGE, *rel.split(os.sep)]
        found.update("/".join([*parts, f]) for f in files if f.endswith(".py"))
    return frozenset(found)


@functools.lru_cache(maxsize=4096)
def own_module(filename: str) -> str | None:
    """The udfmem module whose file ``filename`` is (``udfmem.analysis.verdict``), wherever installed; else None.

    By module: the file's path ends in ``udfmem/`` and the path of one of this package's
    modules. A worker's udfmem may live elsewhere (a Ray ``working_dir`` copy, another venv,
    a relative path): its frames are still udfmem's; a user's ``udfmem/x.py`` that is no
    module of udfmem is not.
    """
    parts = filename.replace(os.sep, "/").split("/")
    files = _own_files()
    for i, part in enumerate(parts):
        if part == PACKAGE:
            tail = "/".join(parts[i:])
            if tail in files:
                module = tail[: -len(".py")].replace("/", ".")
                return module[: -len(".__init__")] if module.endswith(".__init__") else module
    return None


def is_own(frame: Frame, own_dir: str = UDFMEM_DIR) -> bool:
    """Whether ``frame`` is udfmem's: a file of one of its modules (:func:`own_module`), or under ``own_dir``."""
    filename = frame[1]
    inside = own_dir.rstrip(os.sep) + os.sep
    return own_module(filename) is not None or os.path.abspath(filename).startswith(inside)


def user_frames(stack: Sequence[Frame], own_dir: str = UDFMEM_DIR) -> list[str]:
    """The stack without udfmem's own frames (:func:`is_own`), rendered innermost first.

    By module, not by file name or this copy's place: a module of udfmem's that moves, or a
    worker's udfmem installed elsewhere, stays out of every report.
    """
    frames = [_frame(f) for f in stack if not is_own(f, own_dir)]
    return frames or [NO_PYTHON_FRAME]


def _where(stack: Sequence[Frame]) -> tuple[str, ...]:
    """The key a leaking stack is shown under: its user frames, or :data:`UDFMEM_OWN` if udfmem allocated it."""
    if stack and is_own(stack[0]):
        return (UDFMEM_OWN,)
    return tuple(user_frames(stack)[:STACK_DEPTH])


def _frame(frame: Frame) -> str:
    function, filename, line = frame
    return f"{function} ({os.path.basename(filename)}:{line})"


def _mib(size: int) -> float:
    return round(size / patterns.MIB, 1)


def _site(stack: Sequence[Frame], attribution: Attribution) -> tuple[Frame, ...]:
    """Where in the UDF a per-call record allocated: its frames up to the per-call method, udfmem's left out.

    The callers above the method (the engine's loop, a warm-up call from another line) and
    udfmem's wrapper (a slow path every ``every`` calls) do not make another site.
    """
    frames: list[Frame] = []
    for frame in stack:  # innermost first
        if is_own(frame):
            continue
        frames.append((frame[0], frame[1], frame[2]))
        if classify_stack([frame], attribution) == CALL:
            break
    return tuple(frames)


def early_end(calls: Iterable[int]) -> int | None:
    """The last snapshot of the first calls (``EARLY_SHARE`` of the snapshots ``calls``, by rank); None if too few."""
    ranked = sorted(set(calls))
    if len(ranked) < MIN_CALL_SNAPSHOTS:
        return None
    return ranked[max(1, int(len(ranked) * EARLY_SHARE)) - 1]


def summarize(
    path: str, sidecar: Mapping[str, Any], header: ProfileHeader, records: Iterable[LeakRecord], top: int = 5
) -> ProfileSummary:
    """Summarize one profile from its sidecar (``{}`` when absent), header and leaked records.

    Records with ``size`` 0 only say when their stack allocated (``active``); per-call bytes born
    in the first calls only are one-time (module docstring).
    """
    attribution = Attribution.from_sidecar(sidecar)
    totals = {CALL: 0, SETUP: 0, OTHER: 0}
    calls: set[int] = set()
    sites: dict[tuple[Frame, ...], int] = {}  # per-call site -> the last snapshot its live bytes were born at
    per_call: list[tuple[tuple[str, ...], tuple[Frame, ...], int]] = []  # (where shown, site, bytes)
    stacks: dict[tuple[str, ...], list[int]] = {}  # where -> [bytes, allocations, one-time bytes]
    for record in records:
        origin = classify_stack(record.stack, attribution)
        if origin == CALL:
            calls.update(record.active)
        if record.size <= 0:
            continue
        totals[origin] += record.size
        where = _where(record.stack)
        entry = stacks.setdefault(where, [0, 0, 0])
        entry[0] += record.size
        entry[1] += record.allocations
        if origin == CALL:
            site = _site(record.stack, attribution)
            last = max((at for at, _ in record.born), default=_NEVER)  # no times: never one-time
            sites[site] = max(sites.get(site, last), last)
            per_call.append((where, site, record.size))
    end = early_end(calls)
    one_time = 0
    if end is not None:
        for where, site, size in per_call:
            if sites[site] <= end:
                one_time += size
                stacks[where][2] += size
    growing = totals[CALL] - one_time
    leaked = sum(totals.values())
    ranked = sorted(stacks.items(), key=lambda kv: -kv[1][0])[:top]
    verdict = patterns.profile_verdict(growing, totals[SETUP] + one_time, leaked)
    return ProfileSummary(
        path=path,
        udf=sidecar.get("udf"),
        pid=sidecar.get("pid", header.pid),
        peak_mb=_mib(header.peak_bytes),
        leaked_mb=_mib(leaked),
        per_call_leaked_mb=_mib(growing),
        setup_leaked_mb=_mib(totals[SETUP]),
        other_leaked_mb=_mib(totals[OTHER]),
        per_call_share=round(growing / leaked, 3) if leaked else 0.0,
        verdict=verdict if header.ended else patterns.INCOMPLETE,
        top_stacks=tuple(
            StackEntry(_mib(size), count, stack, one_time=once == size) for stack, (size, count, once) in ranked
        ),
        native_traces=header.native_traces,
        complete=header.ended,
        one_time_leaked_mb=_mib(one_time),
        call_snapshots=len(calls),
    )
