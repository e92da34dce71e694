"""Settings from decorator arguments and the ``UDFMEM_*`` environment.

Every environment variable udfmem reads is named in this module and nowhere else.
Decorator arguments are validated when the decorator runs (a bad one is a programming
error and raises); environment values are read in the worker on first use, override
the decorator arguments, and a bad one yields a warning and the default instead.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

ENV_DISABLE = "UDFMEM_DISABLE"
ENV_EVERY = "UDFMEM_EVERY"
ENV_EVERY_S = "UDFMEM_EVERY_S"
ENV_LOG_FORMAT = "UDFMEM_LOG_FORMAT"
ENV_LOG_DIR = "UDFMEM_LOG_DIR"
ENV_TRIM = "UDFMEM_TRIM"
ENV_ARENA_MAX = "UDFMEM_ARENA_MAX"
ENV_MEMRAY_DIR = "UDFMEM_MEMRAY_DIR"
ENV_MEMRAY_NATIVE = "UDFMEM_MEMRAY_NATIVE"
ENV_MEMRAY_CALLS = "UDFMEM_MEMRAY_CALLS"
#: glibc's own variable: caps malloc arenas when set at process start.
ENV_MALLOC_ARENA_MAX = "MALLOC_ARENA_MAX"

#: Every variable udfmem reads, in the order the README documents them.
ENV_NAMES: tuple[str, ...] = (
    ENV_DISABLE,
    ENV_EVERY,
    ENV_EVERY_S,
    ENV_TRIM,
    ENV_ARENA_MAX,
    ENV_MEMRAY_DIR,
    ENV_MEMRAY_NATIVE,
    ENV_MEMRAY_CALLS,
    ENV_LOG_FORMAT,
    ENV_LOG_DIR,
)
TRIM_MODES = ("auto", "off")

LOG_FORMATS = ("logfmt", "json")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Options:
    """What the decorator was given, validated. Picklable: it travels with the class."""

    name: str
    every: int = 32
    every_s: float = 60.0
    methods: tuple[str, ...] = ("__call__",)
    setup: str | None = "setup"
    trim: str | int = "auto"
    arena_max: int | None = None
    memray_env: str = ENV_MEMRAY_DIR
    source: str | None = None
    owner: str | None = None  # qualified name of the decorated class; None for a function


@dataclasses.dataclass(frozen=True)
class Settings:
    """The settings in force in this process: options overridden by the environment."""

    disabled: bool
    every: int
    every_s: float
    log_format: str
    log_dir: str | None
    trim: str | int = "auto"
    arena_max: int | None = None
    memray_dir: str | None = None
    memray_native: bool = False
    memray_calls: int | None = None


@dataclasses.dataclass(frozen=True)
class EnvProblem:
    """A ``UDFMEM_*`` value that could not be used, and the default used instead."""

    var: str
    value: str
    reason: str
    default: str


def check_every(value: object, what: str = "every") -> int:
    """Validate a snapshot cadence in calls: a positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udfmem: {what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"udfmem: {what} must be >= 1, got {value}")
    return value


def check_every_s(value: object, what: str = "every_s") -> float:
    """Validate a snapshot period in seconds: a positive finite number, or 0 for none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"udfmem: {what} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"udfmem: {what} must be >= 0 and finite (0 turns it off), got {value}")
    return seconds


def check_trim(value: object, what: str = "trim") -> str | int:
    """Validate a trim policy: ``"auto"``, ``"off"`` or a positive number of calls."""
    if isinstance(value, str) and value.strip().lower() in TRIM_MODES:
        return value.strip().lower()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udfmem: {what} must be 'auto', 'off' or an int number of calls, got {value!r}")
    if value < 1:
        raise ValueError(f"udfmem: {what} must be >= 1 calls, got {value}")
    return value


def check_env_name(value: object, what: str = "memray_env") -> str:
    """Validate the name of an environment variable."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise TypeError(f"udfmem: {what} must name an environment variable, got {value!r}")
    return value


def check_arena_max(value: object, what: str = "arena_max") -> int | None:
    """Validate an arena cap: None, or a positive int."""
    if value is None:
        return None
    return check_every(value, what)


def make_options(
    *,
    name: object,
    every: object,
    every_s: object,
    methods: object,
    setup: object,
    trim: object = "auto",
    arena_max: object = None,
    memray_env: object = ENV_MEMRAY_DIR,
    source: object = None,
    owner: object = None,
) -> Options:
    """Build :class:`Options`, raising ``TypeError``/``ValueError`` on a bad argument."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"udfmem: name must be a non-empty str, got {name!r}")
    if isinstance(methods, str):
        raise TypeError(f"udfmem: methods must be a sequence of names, not a str (did you mean ({methods!r},)?)")
    if not isinstance(methods, (tuple, list)) or not methods:
        raise TypeError(f"udfmem: methods must be a non-empty tuple of method names, got {methods!r}")
    for method in methods:
        if not isinstance(method, str) or not method.isidentifier():
            raise TypeError(f"udfmem: methods must hold method names, got {method!r}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"udfmem: methods names a method twice: {methods!r}")
    if setup is not None and (not isinstance(setup, str) or not setup.isidentifier()):
        raise TypeError(f"udfmem: setup must be a method name or None, got {setup!r}")
    if setup is not None and setup in methods:
        raise ValueError(f"udfmem: {setup!r} cannot be both the setup method and a tracked method")
    return Options(
        name=name,
        every=check_every(every),
        every_s=check_every_s(every_s),
        methods=tuple(methods),
        setup=setup,
        trim=check_trim(trim),
        arena_max=check_arena_max(arena_max),
        memray_env=check_env_name(memray_env),
        source=source if isinstance(source, str) else None,
        owner=owner if isinstance(owner, str) else None,
    )


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _parse_every(raw: str) -> int:
    return check_every(int(raw.strip()), "value")


def _parse_every_s(raw: str) -> float:
    return check_every_s(float(raw.strip()), "value")


def _parse_format(raw: str) -> str:
    low = raw.strip().lower()
    if low not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}")
    return low


def _parse_trim(raw: str) -> str | int:
    text = raw.strip()
    return check_trim(int(text) if text.lstrip("+-").isdigit() else text, "value")


def _parse_arena_max(raw: str) -> int:
    return check_every(int(raw.strip()), "value")


def _parse_dir(raw: str) -> str:
    path = raw.strip()
    if not path:
        raise ValueError("empty path")
    return path


def _read(env: Mapping[str, str], var: str, parse: Callable[[str], T], default: T, problems: list[EnvProblem]) -> T:
    raw = env.get(var)
    if raw is None:
        return default
    try:
        return parse(raw)
    except (TypeError, ValueError) as exc:
        problems.append(EnvProblem(var=var, value=raw, reason=str(exc), default=str(default)))
        return default


def resolve(options: Options, environ: Mapping[str, str] | None = None) -> tuple[Settings, list[EnvProblem]]:
    """Combine ``options`` with the environment; return the settings and any bad values."""
    env = os.environ if environ is None else environ
    problems: list[EnvProblem] = []
    log_dir: str | None = None
    memray_dir = _read(env, options.memray_env, _parse_dir, log_dir, problems)
    if memray_dir is None and options.memray_env != ENV_MEMRAY_DIR:
        memray_dir = _read(env, ENV_MEMRAY_DIR, _parse_dir, log_dir, problems)
    settings = Settings(
        disabled=_read(env, ENV_DISABLE, _parse_bool, False, problems),
        every=_read(env, ENV_EVERY, _parse_every, options.every, problems),
        every_s=_read(env, ENV_EVERY_S, _parse_every_s, options.every_s, problems),
        log_format=_read(env, ENV_LOG_FORMAT, _parse_format, "logfmt", problems),
        log_dir=_read(env, ENV_LOG_DIR, _parse_dir, log_dir, problems),
        trim=_read(env, ENV_TRIM, _parse_trim, options.trim, problems),
        arena_max=_read(env, ENV_ARENA_MAX, _parse_arena_max, options.arena_max, problems),
        memray_dir=memray_dir,
        memray_native=_read(env, ENV_MEMRAY_NATIVE, _parse_bool, False, problems),
        memray_calls=_read(env, ENV_MEMRAY_CALLS, _parse_arena_max, None, problems),
    )
    return settings, problems


def _format_bool(value: bool) -> str:
    return "1" if value else "0"


def _parse_abs_dir(raw: str) -> str:
    return os.path.abspath(_parse_dir(raw))  # workers run in other directories


#: worker_env() keyword -> (variable, parser of its text, formatter of the parsed value)
_WORKER_KEYS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str]]] = {
    "disable": (ENV_DISABLE, _parse_bool, _format_bool),
    "every": (ENV_EVERY, _parse_every, str),
    "every_s": (ENV_EVERY_S, _parse_every_s, repr),
    "log_format": (ENV_LOG_FORMAT, _parse_format, str),
    "log_dir": (ENV_LOG_DIR, _parse_abs_dir, str),
    "trim": (ENV_TRIM, _parse_trim, str),
    "arena_max": (ENV_MALLOC_ARENA_MAX, _parse_arena_max, str),  # glibc reads it at process start
    "memray_dir": (ENV_MEMRAY_DIR, _parse_abs_dir, str),
    "memray_native": (ENV_MEMRAY_NATIVE, _parse_bool, _format_bool),
    "memray_calls": (ENV_MEMRAY_CALLS, _parse_arena_max, str),
}


def _check_override(key: str, value: object) -> str:
    var, parse, fmt = _WORKER_KEYS[key]
    if isinstance(value, bool) and key not in ("disable", "memray_native"):
        raise TypeError(f"udfmem: worker_env({key}=...) does not take a bool")
    if not isinstance(value, (str, int, float, os.PathLike)):
        raise TypeError(f"udfmem: worker_env({key}=...) takes a str or a number, got {type(value).__name__}")
    raw = (
        _format_bool(value)
        if isinstance(value, bool)
        else os.fspath(value)
        if isinstance(value, os.PathLike)
        else str(value)
    )
    try:
        return str(fmt(parse(raw)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"udfmem: worker_env({key}={value!r}) is not a valid {var}: {exc}") from None


def worker_settings(
    overrides: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[EnvProblem]]:
    """The ``UDFMEM_*`` settings of ``environ`` plus validated ``overrides``, and bad inherited values."""
    unknown = sorted(set(overrides) - set(_WORKER_KEYS))
    if unknown:
        raise TypeError(f"udfmem: worker_env() got unknown settings {unknown}; known: {sorted(_WORKER_KEYS)}")
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    problems: list[EnvProblem] = []
    for key, (var, parse, fmt) in _WORKER_KEYS.items():
        if key in overrides:
            value = overrides[key]
            if value is not None:
                out[var] = _check_override(key, value)
            continue
        raw = env.get(var)
        if raw is None:
            continue
        try:
            out[var] = str(fmt(parse(raw)))
        except (TypeError, ValueError) as exc:
            problems.append(EnvProblem(var=var, value=raw, reason=str(exc), default="(not passed on)"))
    return out, problems


def worker_env(**overrides: object) -> dict[str, str]:
    """The ``UDFMEM_*`` settings to hand to worker processes, as ``dict[str, str]``.

    Starts from this process's ``UDFMEM_*`` environment and applies ``overrides``
    (``disable``, ``every``, ``every_s``, ``trim``, ``log_format``, ``log_dir``,
    ``memray_dir``, ``memray_native``, ``memray_calls``; ``None`` drops a setting).
    ``arena_max=N`` sets glibc's ``MALLOC_ARENA_MAX``, which only takes
    effect when a process starts: the right place is a worker's environment. Pass the
    result where the engine takes worker environment variables::

        ray.init(runtime_env={"env_vars": udfmem.worker_env(every=8)})
        ds.map_batches(Embed, runtime_env={"env_vars": udfmem.worker_env(every=8)})
        geneva.runners.ray.raycluster.ray_cluster(local=True, extra_env=udfmem.worker_env(every=8))

    Raises:
        TypeError, ValueError: for an unknown setting or a bad override value. A bad
            value inherited from the environment is left out, with one ``udfmem.warning``.
    """
    from . import _log

    env, problems = worker_settings(overrides)
    for problem in problems:
        _log.warn_once(
            _log.make_logger("udfmem"),
            "bad-env",
            f"not passing {problem.var}={problem.value!r} to workers ({problem.reason})",
            once_key=f"worker-env:{problem.var}={problem.value}",
            var=problem.var,
        )
    return env
