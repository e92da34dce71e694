"""Arithmetic over a series of ``(call, value)`` points, e.g. ``growth_mb`` against ``call``."""

from __future__ import annotations

from collections.abc import Sequence


def slope_per_call(points: Sequence[tuple[int, float]]) -> float:
    """The least-squares slope of value against call: value units per call.

    Every point counts, so one noisy snapshot at either end moves the slope far less than a
    first/last difference would. Fewer than two distinct calls give ``0.0`` (no trend known).
    """
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
