"""``worker_env()``: the ``UDFMEM_*`` settings a driver hands to its worker processes.

The values come from the settings table (:mod:`udfmem._settings`); a bad value inherited
from the driver's environment is left out and said once through the emitter, so this
lives beside the runtime, not in the table.
"""

from __future__ import annotations

from .. import _settings
from ..emit import emitter as _emit


def worker_env(**overrides: object) -> dict[str, str]:
    """The ``UDFMEM_*`` settings to hand to worker processes, as ``dict[str, str]``.

    Starts from this process's ``UDFMEM_*`` environment and applies ``overrides`` (the
    settings table's worker rows: ``disable``, ``every``, ``every_s``, ``trim``,
    ``arena_max``, ``suspect``, ``metrics``, ``log_format``, ``log_dir``, ``memray_dir``, ``memray_native``,
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
    env, problems = _settings.worker_vars(overrides)
    for problem in problems:
        _emit.default("udfmem").warn_once(
            "bad-env",
            f"not passing {problem.var}={problem.value!r} to workers ({problem.reason})",
            once_key=f"bad-env:{problem.var}={problem.value}",  # the same key as at bind: once per process
            var=problem.var,
        )
    return env
