"""What a memray profile still held, and from where: plain records in, a frozen summary out.

For one profile: the peak heap, the bytes still allocated when the tracker closed
("leaked"), how much of that was allocated under the UDF's per-call methods versus under
``setup()``/``__init__`` (named by the ``.json`` sidecar udfmem writes next to the file),
the top leaking stacks, and a verdict from :func:`patterns.profile_verdict`. Reading the
file is the caller's business (``udfmem.commands.report``); nothing here imports memray.
"""

from __future__ import annotations

import os
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

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``udfmem report --json`` prints for this stack."""
        return {"leaked_mb": self.leaked_mb, "allocations": self.allocations, "stack": list(self.stack)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StackEntry:
        """The entry :meth:`to_dict` gave."""
        return cls(data["leaked_mb"], data["allocations"], tuple(data["stack"]))


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

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``udfmem report --json`` prints; ``flamegraph`` only when rendered."""
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


def user_frames(stack: Sequence[Frame], own_dir: str = UDFMEM_DIR) -> list[str]:
    """The stack without udfmem's own frames (files anywhere under ``own_dir``), rendered innermost first.

    By place, not by file name: a module of udfmem's that moves stays out of every report.
    """
    inside = own_dir.rstrip(os.sep) + os.sep
    frames = [_frame(f) for f in stack if not os.path.abspath(f[1]).startswith(inside)]
    return frames or [NO_PYTHON_FRAME]


def _frame(frame: Frame) -> str:
    function, filename, line = frame
    return f"{function} ({os.path.basename(filename)}:{line})"


def _mib(size: int) -> float:
    return round(size / patterns.MIB, 1)


def summarize(
    path: str, sidecar: Mapping[str, Any], header: ProfileHeader, records: Iterable[LeakRecord], top: int = 5
) -> ProfileSummary:
    """Summarize one profile from its sidecar (``{}`` when absent), header and leaked records."""
    attribution = Attribution.from_sidecar(sidecar)
    totals = {CALL: 0, SETUP: 0, OTHER: 0}
    stacks: dict[tuple[str, ...], list[int]] = {}
    for record in records:
        totals[classify_stack(record.stack, attribution)] += record.size
        entry = stacks.setdefault(tuple(user_frames(record.stack)[:STACK_DEPTH]), [0, 0])
        entry[0] += record.size
        entry[1] += record.allocations
    leaked = sum(totals.values())
    ranked = sorted(stacks.items(), key=lambda kv: -kv[1][0])[:top]
    return ProfileSummary(
        path=path,
        udf=sidecar.get("udf"),
        pid=sidecar.get("pid", header.pid),
        peak_mb=_mib(header.peak_bytes),
        leaked_mb=_mib(leaked),
        per_call_leaked_mb=_mib(totals[CALL]),
        setup_leaked_mb=_mib(totals[SETUP]),
        other_leaked_mb=_mib(totals[OTHER]),
        per_call_share=round(totals[CALL] / leaked, 3) if leaked else 0.0,
        verdict=patterns.profile_verdict(totals[CALL], totals[SETUP], leaked) if header.ended else patterns.INCOMPLETE,
        top_stacks=tuple(StackEntry(_mib(size), count, stack) for stack, (size, count) in ranked),
        native_traces=header.native_traces,
        complete=header.ended,
    )
