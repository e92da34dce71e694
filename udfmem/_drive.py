"""Run a UDF call's result to its end, as an engine would: await a coroutine, drain an (async) iterator.

:func:`udfmem.testing.check_growth` measures what a call leaves; a body it never ran leaves
nothing. ``async def`` bodies run on one event loop per check (:class:`Loop`), never inside
a running one; a returned container (list, dict, str, bytes, array, table) is a result and
is left as it is.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

__all__ = ["Loop", "consume"]


class Loop:
    """One asyncio event loop for a whole check: made at the first awaitable a call returns, closed at the end."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Run ``awaitable`` to its end and return its result; never from inside a running loop."""
        if self.loop is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self.loop = asyncio.new_event_loop()
            else:
                if inspect.iscoroutine(awaitable):
                    awaitable.close()  # never started: no "coroutine was never awaited" warning either
                raise RuntimeError(
                    "udfmem.testing: cannot run an async UDF inside a running event loop (an async test); call "
                    "check_growth from a sync test, or await asyncio.to_thread(check_growth, udf, inputs, ...)"
                )
        try:
            return self.loop.run_until_complete(awaitable)
        except RuntimeError as exc:
            if not str(exc).startswith(("Task got bad yield", "yield was used instead of yield from")):
                raise
            raise RuntimeError(
                f"udfmem.testing: cannot run the {type(awaitable).__name__} the UDF returned on asyncio ({exc}); "
                "an awaitable of another async framework is not measured"
            ) from exc

    def close(self) -> None:
        """Cancel what is left, finalize async generators, close the loop (as ``asyncio.run`` does)."""
        loop, self.loop = self.loop, None
        if loop is None:
            return
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:  # gather() of nothing would look for the thread's current loop
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def _drain(items: AsyncIterator[Any]) -> None:
    """Every item of ``items``, dropped."""
    async for _ in items:
        pass


def consume(out: Any, loop: Loop) -> None:
    """Run what a call returned to its end, as an engine would.

    An awaitable (a coroutine) is awaited on ``loop``; an async iterator (an async generator)
    or an iterator (a generator, ``map``, any object whose type has ``__next__`` and
    ``__iter__``) is drained. Anything else is a result (a list, dict, str, bytes, array,
    table) and is left as it is: the body has already run.
    """
    if inspect.isawaitable(out):
        out = loop.run(out)
    if isinstance(out, AsyncIterator):
        loop.run(_drain(out))
    elif isinstance(out, Iterator):
        for _ in out:
            pass
