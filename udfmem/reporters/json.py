"""``udfmem report --json``: a JSON list with one object per profile (keys: ``ProfileSummary.to_dict``), strict JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..analysis.profile import ProfileSummary


def render(summaries: Sequence[ProfileSummary]) -> str:
    """The summaries as an indented JSON list (no trailing newline)."""
    return json.dumps([s.to_dict() for s in summaries], indent=2, allow_nan=False)  # strict JSON, never NaN
