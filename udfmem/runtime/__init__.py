"""The runtime: per-UDF state, its per-process binding, the registry, the timer and the wrappers."""
