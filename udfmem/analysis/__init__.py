"""Pure analysis of what udfmem measured: stdlib only, no I/O.

Nothing here imports the runtime (no module of udfmem outside ``analysis/``), opens a file or
imports memray: callers hand in plain records (numbers, stack tuples) and get verdicts and
frozen summaries back. ``patterns`` holds every threshold and verdict name, ``series`` the
arithmetic over ``(call, value)`` series, ``profile`` the classification of a memray profile.
"""
