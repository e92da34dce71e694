"""``python -m udfmem``: the same as the ``udfmem`` command."""

from __future__ import annotations

import sys

from .commands import main

if __name__ == "__main__":
    sys.exit(main())
