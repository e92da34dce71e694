"""ONE table of settings: name, environment variable, parser, default and doc.

Each field of :class:`Settings` is a row: its default, the ``UDFMEM_*`` variable that
overrides it in the worker, how a value is checked, and what it does. Everything else
derives from the table: the decorator's keywords and their validation, ``TrackedUDF``'s
class keywords, :func:`resolve` (env over decorator arguments, a bad env value gives a
problem and the default), :func:`worker_vars` (behind ``udfmem.worker_env``) and the
README's table of variables (:func:`env_table`). Adding a setting is one row here (plus, for a decorator keyword,
one line in ``tracked``'s typed overload, which a test holds to this table).

Every environment variable udfmem reads is named in this module and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from ._checks import (
    check_arena_max,
    check_bool,
    check_dir,
    check_env_name,
    check_format,
    check_methods,
    check_metrics,
    check_name,
    check_optional_int,
    check_positive_int,
    check_seconds,
    check_setup,
    check_trim,
    format_abs_path,
    format_bool,
    format_metrics,
    parse_bool,
    parse_float,
    parse_int,
    parse_text,
    parse_trim,
    shown,
)
from ._text import capped, capped_id

#: glibc's own variable: caps malloc arenas when set at process start.
MALLOC_ARENA_MAX = "MALLOC_ARENA_MAX"
MEMRAY_DIR = "UDFMEM_MEMRAY_DIR"


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
        Row(
            check_positive_int,
            "a snapshot every K calls, per process and UDF",
            env="UDFMEM_EVERY",
            parse=parse_int,
            values="int ≥ 1",
            decorator=True,
            worker=True,
        ),
    )
    every_s: float = setting(
        60.0,
        Row(
            check_seconds,
            "also a snapshot at the first call after this many seconds (0: off); a daemon timer flags it, "
            "the hot path never reads the clock",
            env="UDFMEM_EVERY_S",
            parse=parse_float,
            values="seconds ≥ 0",
            decorator=True,
            worker=True,
            to_env=repr,
        ),
    )
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
        Row(
            check_trim,
            'give freed memory back to the OS: `"auto"`, `"off"`, or every N calls '
            "(see [Allocator](#allocator-giving-memory-back))",
            env="UDFMEM_TRIM",
            parse=parse_trim,
            values="`auto`, `off`, int ≥ 1",
            decorator=True,
            worker=True,
        ),
    )
    arena_max: int | None = setting(
        None,
        Row(
            check_arena_max,
            "cap glibc's malloc arenas (`mallopt(M_ARENA_MAX)`) at first use in the process; "
            "`worker_env(arena_max=N)` also sets `MALLOC_ARENA_MAX` for process start",
            env="UDFMEM_ARENA_MAX",
            parse=parse_int,
            values="int ≥ 1",
            decorator=True,
            worker=True,
        ),
    )
    suspect: bool = setting(
        True,
        Row(
            check_bool,
            "the online detector: each worker judges its own series and logs `udfmem.suspect` when a leak, "
            "retention or a dangerous peak starts, changes or ends "
            "(see [Online detection](#online-detection-udfmemsuspect))",
            env="UDFMEM_SUSPECT",
            parse=parse_bool,
            values="`1`/`0` (`true`, `off` …)",
            decorator=True,
            worker=True,
            to_env=format_bool,
        ),
    )
    metrics: tuple[str, ...] = setting(
        (),
        Row(
            check_metrics,
            "export the snapshot's figures as gauges: `ray` (`ray.util.metrics`, on Ray's Prometheus endpoint), "
            "`otel` (OpenTelemetry observable gauges), both, or off "
            "(see [Metrics](#metrics-ray-dashboards-prometheus-opentelemetry))",
            env="UDFMEM_METRICS",
            values="`off` (default), `ray`, `otel`, `ray,otel`",
            decorator=True,
            worker=True,
            to_env=format_metrics,
        ),
    )
    memray_env: str = setting(
        MEMRAY_DIR, Row(check_env_name, "the variable whose directory switches memray on", decorator=True)
    )
    disable: bool = setting(
        False,
        Row(
            check_bool,
            "the wrappers become silent pass-throughs",
            env="UDFMEM_DISABLE",
            parse=parse_bool,
            values="`1`/`0` (`true`, `yes`, `on` …)",
            worker=True,
            to_env=format_bool,
        ),
    )
    memray_dir: str | None = setting(
        None,
        Row(
            check_dir,
            "turns memray on: one profile per worker process (see [memray](#memray-one-profile-per-worker))",
            env=MEMRAY_DIR,
            values="a directory",
            worker=True,
            to_env=format_abs_path,
        ),
    )
    memray_native: bool = setting(
        False,
        Row(
            check_bool,
            "also record native (C/C++) stacks",
            env="UDFMEM_MEMRAY_NATIVE",
            parse=parse_bool,
            values="`1`/`0`",
            worker=True,
            to_env=format_bool,
        ),
    )
    memray_calls: int | None = setting(
        None,
        Row(
            check_optional_int,
            "stop and finalize the profile after N calls",
            env="UDFMEM_MEMRAY_CALLS",
            parse=parse_int,
            values="int ≥ 1",
            worker=True,
        ),
    )
    log_format: str = setting(
        "logfmt",
        Row(
            check_format,
            "line format on stderr; `structlog` hands the events to your own structlog configuration instead",
            env="UDFMEM_LOG_FORMAT",
            values="`logfmt` (default), `json`, `structlog`",
            worker=True,
        ),
    )
    log_dir: str | None = setting(
        None,
        Row(
            check_dir,
            "also append JSON lines to `udfmem-<host>-<pid>.jsonl` there",
            env="UDFMEM_LOG_DIR",
            values="a directory",
            worker=True,
            to_env=format_abs_path,
        ),
    )


#: Every setting's row, in the table's order.
ROWS: dict[str, Row] = {f.name: f.metadata["row"] for f in dataclasses.fields(Settings)}
#: The decorator's keywords (and ``TrackedUDF``'s class keywords).
DECORATOR_KEYS: tuple[str, ...] = tuple(k for k, row in ROWS.items() if row.decorator)
#: Every variable udfmem reads (``memray_env`` may name one more).
ENV_NAMES: tuple[str, ...] = tuple(row.env for row in ROWS.values() if row.env is not None)
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Settings)}


@dataclasses.dataclass(frozen=True)
class EnvProblem:
    """A ``UDFMEM_*`` value that could not be used, and the default used instead.

    Its texts are echoed in a ``udfmem.warning``: make it with :func:`problem`, which caps them.
    """

    var: str
    value: str
    reason: str
    default: str


def problem(var: str, value: str, reason: str, default: str) -> EnvProblem:
    """An :class:`EnvProblem` whose echoed texts are capped (``value`` keeps a digest: warned once per value)."""
    return EnvProblem(var, capped_id(value), capped(reason), capped(default))


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


def _env_value(row: Row, raw: str) -> Any:
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
        bad: list[tuple[str, str, str]] = []
        for var in names:
            raw = env.get(var)
            if raw is None:
                continue
            try:
                changes[key] = _env_value(row, raw)
                break
            except (TypeError, ValueError) as exc:
                bad.append((var, raw, str(exc).removeprefix("udfmem: ")))
        used = str(changes.get(key, getattr(settings, key)))  # the fallback variable's value, or the default
        problems += [problem(var, raw, reason, used) for var, raw, reason in bad]
    return dataclasses.replace(settings, **changes), problems


def memray_switch(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The variable that switched memray on for ``settings`` (for messages): the first with a usable value."""
    env = os.environ if environ is None else environ
    raw = env.get(settings.memray_env)
    return settings.memray_env if raw is not None and raw.strip() else MEMRAY_DIR


def log_target(environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """``UDFMEM_LOG_FORMAT`` and ``UDFMEM_LOG_DIR`` where valid, else the defaults (before any bind)."""
    settings, _ = resolve(Settings(), environ)
    return settings.log_format, settings.log_dir


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
                out[row.env] = row.to_env(_env_value(row, raw))
            except (TypeError, ValueError) as exc:
                problems.append(problem(row.env, raw, str(exc).removeprefix("udfmem: "), "(not passed on)"))
    if "UDFMEM_ARENA_MAX" in out:
        out[MALLOC_ARENA_MAX] = out["UDFMEM_ARENA_MAX"]  # glibc applies it from process start
    return out, problems


def _override(key: str, row: Row, value: object) -> str:
    if isinstance(value, bool) and row.parse is not parse_bool:
        raise TypeError(f"udfmem: worker_env({key}=...) does not take a bool")
    if row.to_env is format_metrics and isinstance(value, (tuple, list)):
        value = ",".join(map(str, value))  # metrics=("ray", "otel") as the decorator takes it
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
        return row.to_env(_env_value(row, raw))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"udfmem: worker_env({key}={shown(value)}) is not a valid {row.env}: {exc}") from None


def options_table() -> str:
    """The README's table of decorator options, from the rows."""
    lines = ["| option | default | meaning |", "|---|---|---|"]
    for key in DECORATOR_KEYS:
        value = "off" if DEFAULTS[key] == () else DEFAULTS[key]  # an empty choice of exporters reads as off
        default = "class name" if key == "name" else f"`{value!r}`".replace("'", '"')
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
