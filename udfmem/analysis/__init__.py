"""Pure analysis of what udfmem measured: stdlib only, no I/O.

Nothing here imports the runtime (no module of udfmem outside ``analysis/``), opens a file or
imports memray: callers hand in plain records (numbers, stack tuples) and get verdicts and
frozen summaries back. ``patterns`` holds every threshold and verdict name, ``growth`` the
growth rule that the series verdict (``verdict``) and :mod:`udfmem.testing` share, ``series`` the
arithmetic over ``(call, value)`` series, ``diagnosis`` a fleet's verdicts, ``profile`` the
classification of a memray profile.
"""
