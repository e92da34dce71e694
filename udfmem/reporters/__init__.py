"""Render only: summaries in, a string out (``text``, ``markdown``, ``json``).

Reporters never read files, compute verdicts or import the runtime; each module has one
``render(summaries) -> str``.
"""
