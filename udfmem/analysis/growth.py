"""The growth rule: memory that grows in every sub-window, and still at the end, is growing.

One rule, two callers that judge the same thing from different evidence:
:func:`udfmem.testing.check_growth` (exact live figures at window boundaries, after a full
collection) and the series classifier of :mod:`udfmem.analysis.verdict` (a robust slope per
sub-window of noisy snapshots). The counted calls are cut into ``SUB_WINDOWS`` runs and a
measure grows only when

- it grew in **every** run (CPython's refleak rule: a leak grows in each window, noise and
  one-off caches do not), by more than the caller's noise floor; and
- the **last** run still grew at ``PLATEAU_SHARE`` of the overall rate or more (the plateau
  rule: a cache that filled and stopped is not a leak).

Thresholds live in :mod:`udfmem.analysis.patterns`; callers bring their own noise floor
(bytes for ``check_growth``, 0 for a slope that already passed its own minimum).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import patterns as P


def window_grew(rate: float | None, overall: float, last: bool, noise: float = 0.0) -> bool:
    """Whether one sub-window's growth ``rate`` passes the rule.

    ``rate`` must exceed ``noise`` (``None``, unknown, never passes); the ``last`` window's
    must also exceed ``PLATEAU_SHARE`` of the ``overall`` rate, in the same unit.
    """
    if rate is None or rate <= noise:
        return False
    return not last or rate > P.PLATEAU_SHARE * overall


def grows(rates: Sequence[float | None], overall: float, noise: float = 0.0) -> bool:
    """Whether every sub-window's rate in ``rates`` (in call order) passes :func:`window_grew`; none never grows."""
    end = len(rates) - 1
    return end >= 0 and all(window_grew(rate, overall, i == end, noise) for i, rate in enumerate(rates))
