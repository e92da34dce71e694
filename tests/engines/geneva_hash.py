"""Print Geneva's version ingredients for the tracked UDFs in ``geneva_udfs`` as one JSON line."""

from __future__ import annotations

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from geneva.transformer import _update_callable_code_digest
from geneva_udfs import Doubler, double_fn, named


def code_digest(func: object) -> str:
    """Geneva's code-identity walk of a UDF's callable (it covers udfmem's wrapper)."""
    hasher = hashlib.md5()
    _update_callable_code_digest(hasher, func, set())
    return hasher.hexdigest()


udf = Doubler()
print(
    json.dumps(
        {
            "class_code_digest": code_digest(udf.func),
            "named_class_version": named().version,
            "function_version": double_fn.version,
        }
    )
)
