"""Render only: results in, a string out.

``text``, ``markdown`` and ``json`` render ``udfmem report``'s profile summaries (one
``render(summaries) -> str`` each); ``diagnosis`` renders ``udfmem diagnose`` (``text``
and ``as_json``); ``png`` draws ``udfmem plot``. Reporters never read logs or profiles,
compute verdicts or import the runtime.
"""
