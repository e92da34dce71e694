"""ONE table of settings: name, environment variable, parser, default and doc.

Each field of :class:`Settings` is a row: its default, the ``UDFMEM_*`` variable that
overrides it in the worker, how a value is checked, and what it does. Everything else
derives from the table: the decorator's keywords and their validation, ``TrackedUDF``'s
class keywords, :func:`resolve` (env over decorator arguments, a bad env value gives a
problem and the default), :func:`worker_env` and the README's table of variables
(:func:`env_table`). Adding a setting is one row here (plus, for a decorator keyword,
one line in ``tracked``'s typed overload, which a test holds to this table).

Every environment variable udfmem reads is named in this module and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

#: glibc's own variable: caps malloc arenas when set at process start.
MALLOC_ARENA_MAX = "MALLOC_ARENA_MAX"
MEMRAY_DIR = "UDFMEM_MEMRAY_DIR"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
TRIM_MODES = ("auto", "off")
LOG_FORMATS = ("logfmt", "json")


# -- checks: a decorator or override value -> the value, or TypeError/ValueError ------------


def check_positive_int(value: object, what: str) -> int:
    """A positive int (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udfmem: {what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"udfmem: {what} must be >= 1, got {value}")
    return value


def check_optional_int(value: object, what: str) -> int | None:
    """None, or a positive int."""
    return None if value is None else check_positive_int(value, what)


def check_seconds(value: object, what: str) -> float:
    """A finite number of seconds >= 0 (0 turns the clock off)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"udfmem: {what} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"udfmem: {what} must be >= 0 and finite (0 turns it off), got {value}")
    return seconds


def check_trim(value: object, what: str) -> str | int:
    """``"auto"``, ``"off"`` or a positive number of calls."""
    if isinstance(value, str) and value.strip().lower() in TRIM_MODES:
        return value.strip().lower()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"udfmem: {what} must be 'auto', 'off' or an int number of calls, got {value!r}")
    if value < 1:
        raise ValueError(f"udfmem: {what} must be >= 1 calls, got {value}")
    return value


def check_name(value: object, what: str) -> str:
    """A non-empty str."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"udfmem: {what} must be a non-empty str, got {value!r}")
    return value


def check_methods(value: object, what: str) -> tuple[str, ...]:
    """A non-empty tuple (or list) of distinct method names."""
    if isinstance(value, str):
        raise TypeError(f"udfmem: {what} must be a sequence of names, not a str (did you mean ({value!r},)?)")
    if not isinstance(value, (tuple, list)) or not value:
        raise TypeError(f"udfmem: {what} must be a non-empty tuple of method names, got {value!r}")
    for method in value:
        if not isinstance(method, str) or not method.isidentifier():
            raise TypeError(f"udfmem: {what} must hold method names, got {method!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"udfmem: {what} names a method twice: {value!r}")
    return tuple(value)


def check_setup(value: object, what: str) -> str | None:
    """A method name, or None."""
    if value is not None and (not isinstance(value, str) or not value.isidentifier()):
        raise TypeError(f"udfmem: {what} must be a method name or None, got {value!r}")
    return value


def check_env_name(value: object, what: str) -> str:
    """The name of an environment variable."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise TypeError(f"udfmem: {what} must name an environment variable, got {value!r}")
    return value


def check_bool(value: object, what: str) -> bool:
    """A bool."""
    if not isinstance(value, bool):
        raise TypeError(f"udfmem: {what} must be a bool, got {value!r}")
    return value


def check_format(value: object, what: str) -> str:
    """One of :data:`LOG_FORMATS` (any case)."""
    low = str(value).strip().lower()
    if low not in LOG_FORMATS:
        raise ValueError(f"udfmem: {what} must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return low


def check_dir(value: object, what: str) -> str | None:
    """None, or a non-empty path."""
    if value is None:
        return None
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"udfmem: {what} must be a non-empty path, got {value!r}")
    return path.strip()


# -- parsers: an environment text -> a value a check accepts ---------------------------------


def parse_bool(raw: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (empty is false)."""
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def parse_int(raw: str) -> int:
    """A decimal int."""
    return int(raw.strip())


def parse_float(raw: str) -> float:
    """A decimal number."""
    return float(raw.strip())


def parse_trim(raw: str) -> str | int:
    """``auto``, ``off`` or a decimal int."""
    text = raw.strip()
    return int(text) if text.lstrip("+-").isdigit() else text


def parse_text(raw: str) -> str:
    """The text itself."""
    return raw


# -- formatters: a checked value -> the environment text a worker parses back ----------------


def format_bool(value: Any) -> str:
    """``1`` or ``0``."""
    return "1" if value else "0"


def format_abs_path(value: Any) -> str:
    """An absolute path: workers run in other directories."""
    return os.path.abspath(str(value))


@dataclasses.dataclass(frozen=True)
class Row:
    """How one setting is checked, read from the environment and handed to workers."""

    check: Callable[[object, str], Any]
    doc: str
    env: str | None = None
    parse: Callable[[str], object] = parse_text
    values: str = ""
    decorator: bool = False
    worker: bool = False
    to_env: Callable[[Any], str] = str


def setting(default: Any, row: Row) -> Any:
    """A :class:`Settings` field: its default and its :class:`Row`."""
    return dataclasses.field(default=default, metadata={"row": row})


@dataclasses.dataclass(frozen=True)
class Settings:
    """The settings of one UDF: decorator arguments, then (in the worker) the environment.

    Picklable: the decorator's settings travel with the class.
    """

    name: str = setting(
        "udf", Row(check_name, "the `udf=` field (default: the class or function name)", decorator=True)
    )
    every: int = setting(
        32,
        Row(check_positive_int, "a snapshot every K calls, per process and UDF", "UDFMEM_EVERY", parse_int,
            "int ≥ 1", decorator=True, worker=True),
    )  # fmt: skip
    every_s: float = setting(
        60.0,
        Row(check_seconds, "also a snapshot at the first call after this many seconds (0: off); a daemon timer flags it, "
            "the hot path never reads the clock", "UDFMEM_EVERY_S",
            parse_float, "seconds ≥ 0", decorator=True, worker=True, to_env=repr),
    )  # fmt: skip
    methods: tuple[str, ...] = setting(
        ("__call__",), Row(check_methods, "the per-call methods to count", decorator=True)
    )
    setup: str | None = setting(
        "setup",
        Row(
            check_setup,
            "the setup method; it and `__init__` are each logged as `udfmem.setup` (`None`: `__init__` only)",
            decorator=True,
        ),
    )
    trim: str | int = setting(
        "auto",
        Row(check_trim, "give freed memory back to the OS: `\"auto\"`, `\"off\"`, or every N calls "
            "(see [Allocator](#allocator-giving-memory-back))", "UDFMEM_TRIM",
            parse_trim, "`auto`, `off`, int ≥ 1", decorator=True, worker=True),
    )  # fmt: skip
    arena_max: int | None = setting(
        None,
        Row(check_optional_int, "cap glibc's malloc arenas (`mallopt(M_ARENA_MAX)`) at first use in the process; "
            "`worker_env(arena_max=N)` also sets `MALLOC_ARENA_MAX` for process start", "UDFMEM_ARENA_MAX",
            parse_int, "int ≥ 1", decorator=True, worker=True),
    )  # fmt: skip
    memray_env: str = setting(
        MEMRAY_DIR, Row(check_env_name, "the variable whose directory switches memray on", decorator=True)
    )
    disable: bool = setting(
        False,
        Row(check_bool, "the wrappers become silent pass-throughs", "UDFMEM_DISABLE", parse_bool,
            "`1`/`0` (`true`, `yes`, `on` …)", worker=True, to_env=format_bool),
    )  # fmt: skip
    memray_dir: str | None = setting(
        None,
        Row(check_dir, "turns memray on: one profile per worker process (see [memray](#memray-one-profile-per-worker))",
            MEMRAY_DIR, parse_text, "a directory", worker=True, to_env=format_abs_path),
    )  # fmt: skip
    memray_native: bool = setting(
        False,
        Row(check_bool, "also record native (C/C++) stacks", "UDFMEM_MEMRAY_NATIVE", parse_bool, "`1`/`0`",
            worker=True, to_env=format_bool),
    )  # fmt: skip
    memray_calls: int | None = setting(
        None,
        Row(check_optional_int, "stop and finalize the profile after N calls", "UDFMEM_MEMRAY_CALLS", parse_int,
            "int ≥ 1", worker=True),
    )  # fmt: skip
    log_format: str = setting(
        "logfmt",
        Row(check_format, "line format on stderr", "UDFMEM_LOG_FORMAT", parse_text, "`logfmt` (default), `json`",
            worker=True),
    )  # fmt: skip
    log_dir: str | None = setting(
        None,
        Row(check_dir, "also append JSON lines to `udfmem-<host>-<pid>.jsonl` there", "UDFMEM_LOG_DIR", parse_text,
            "a directory", worker=True, to_env=format_abs_path),
    )  # fmt: skip


#: Every setting's row, in the table's order.
ROWS: dict[str, Row] = {f.name: f.metadata["row"] for f in dataclasses.fields(Settings)}
#: The decorator's keywords (and ``TrackedUDF``'s class keywords).
DECORATOR_KEYS: tuple[str, ...] = tuple(k for k, row in ROWS.items() if row.decorator)
#: Every variable udfmem reads (``memray_env`` may name one more).
ENV_NAMES: tuple[str, ...] = tuple(row.env for row in ROWS.values() if row.env is not None)
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Settings)}


@dataclasses.dataclass(frozen=True)
class EnvProblem:
    """A ``UDFMEM_*`` value that could not be used, and the default used instead."""

    var: str
    value: str
    reason: str
    default: str


def from_decorator(**kwargs: Any) -> Settings:
    """Settings from decorator arguments, each checked; raises ``TypeError``/``ValueError``."""
    unknown = sorted(set(kwargs) - set(DECORATOR_KEYS))
    if unknown:
        raise TypeError(f"udfmem: unknown arguments {unknown}; known: {sorted(DECORATOR_KEYS)}")
    values = {key: ROWS[key].check(value, key) for key, value in kwargs.items()}
    settings = Settings(**values)
    if settings.setup is not None and settings.setup in settings.methods:
        raise ValueError(f"udfmem: {settings.setup!r} cannot be both the setup method and a tracked method")
    return settings


def _env_value(key: str, row: Row, raw: str) -> Any:
    return row.check(row.parse(raw), "value")


def resolve(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[Settings, list[EnvProblem]]:
    """``settings`` overridden by the environment; also the values that could not be used.

    The memray directory is read from the variable named by ``memray_env``, then from
    ``UDFMEM_MEMRAY_DIR``.
    """
    env = os.environ if environ is None else environ
    problems: list[EnvProblem] = []
    changes: dict[str, Any] = {}
    for key, row in ROWS.items():
        names = [row.env] if row.env is not None else []
        if key == "memray_dir" and settings.memray_env != MEMRAY_DIR:
            names.insert(0, settings.memray_env)
        for var in names:
            raw = env.get(var)
            if raw is None:
                continue
            try:
                changes[key] = _env_value(key, row, raw)
                break
            except (TypeError, ValueError) as exc:
                default = getattr(settings, key)
                problems.append(EnvProblem(var, raw, str(exc).removeprefix("udfmem: "), str(default)))
    return dataclasses.replace(settings, **changes), problems


def memray_switch(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The variable that switched memray on for ``settings`` (for messages)."""
    env = os.environ if environ is None else environ
    return settings.memray_env if env.get(settings.memray_env) else MEMRAY_DIR


def worker_vars(
    overrides: Mapping[str, object], environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[EnvProblem]]:
    """The worker environment: inherited ``UDFMEM_*`` values plus checked ``overrides``; bad inherited values."""
    keys = [k for k, row in ROWS.items() if row.worker]
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise TypeError(f"udfmem: worker_env() got unknown settings {unknown}; known: {sorted(keys)}")
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    problems: list[EnvProblem] = []
    for key in keys:
        row = ROWS[key]
        assert row.env is not None
        if key in overrides:
            if overrides[key] is not None:
                out[row.env] = _override(key, row, overrides[key])
        elif (raw := env.get(row.env)) is not None:
            try:
                out[row.env] = row.to_env(_env_value(key, row, raw))
            except (TypeError, ValueError) as exc:
                problems.append(EnvProblem(row.env, raw, str(exc).removeprefix("udfmem: "), "(not passed on)"))
    if "UDFMEM_ARENA_MAX" in out:
        out[MALLOC_ARENA_MAX] = out["UDFMEM_ARENA_MAX"]  # glibc applies it from process start
    return out, problems


def _override(key: str, row: Row, value: object) -> str:
    if isinstance(value, bool) and row.parse is not parse_bool:
        raise TypeError(f"udfmem: worker_env({key}=...) does not take a bool")
    if not isinstance(value, (str, int, float, os.PathLike)):
        raise TypeError(f"udfmem: worker_env({key}=...) takes a str or a number, got {type(value).__name__}")
    raw = (
        format_bool(value)
        if isinstance(value, bool)
        else os.fspath(value)
        if isinstance(value, os.PathLike)
        else str(value)
    )
    try:
        return row.to_env(_env_value(key, row, raw))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"udfmem: worker_env({key}={value!r}) is not a valid {row.env}: {exc}") from None


def options_table() -> str:
    """The README's table of decorator options, from the rows."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for key in DECORATOR_KEYS:
        default = "class name" if key == "name" else f"`{DEFAULTS[key]!r}`".replace("'", '"')
        lines.append(f"| `{key}` | {default} | {ROWS[key].doc} |")
    return "\n".join(lines)


def env_table() -> str:
    """The README's table of environment variables, from the rows."""
    lines = ["| variable | values | effect |", "|---|---|---|"]
    for key, row in ROWS.items():
        if row.env is None:
            continue
        effect = f"overrides `{key}`" if row.decorator else row.doc
        lines.append(f"| `{row.env}` | {row.values} | {effect} |")
    return "\n".join(lines)


def worker_env(**overrides: object) -> dict[str, str]:
    """The ``UDFMEM_*`` settings to hand to worker processes, as ``dict[str, str]``.

    Starts from this process's ``UDFMEM_*`` environment and applies ``overrides`` (the
    settings table's worker rows: ``disable``, ``every``, ``every_s``, ``trim``,
    ``arena_max``, ``log_format``, ``log_dir``, ``memray_dir``, ``memray_native``,
    ``memray_calls``; ``None`` drops one). ``arena_max=N`` also sets glibc's
    ``MALLOC_ARENA_MAX``, which only takes effect when a process starts: a worker's
    environment is the right place. Pass the result where the engine takes worker
    environment variables::

        ray.init(runtime_env={"env_vars": udfmem.worker_env(every=8)})
        ds.map_batches(Embed, runtime_env={"env_vars": udfmem.worker_env(every=8)})
        geneva.runners.ray.raycluster.ray_cluster(local=True, extra_env=udfmem.worker_env(every=8))

    Raises:
        TypeError, ValueError: for an unknown setting or a bad override value. A bad
            value inherited from the environment is left out, with one ``udfmem.warning``.
    """
    from . import _emit

    env, problems = worker_vars(overrides)
    for problem in problems:
        _emit.default().warn_once(
            "bad-env",
            f"not passing {problem.var}={problem.value!r} to workers ({problem.reason})",
            once_key=f"worker-env:{problem.var}={problem.value}",
            var=problem.var,
        )
    return env
