"""The wrappers: count a UDF's calls, and take the slow path when the state says one is due.

Each wrapper keeps the kind of what it wraps (plain, generator, coroutine, async
generator), so engines that dispatch on ``inspect.isgeneratorfunction`` and friends treat
the decorated method exactly as the original; ``functools.wraps`` keeps
``inspect.signature`` and ``typing.get_type_hints``. The hot path is one ``next()`` on an
``itertools.count`` (atomic under the GIL, so exact across threads) and one comparison.

udfmem recognises its wrappers by their code objects (:data:`WRAPPER_CODES`,
:func:`is_ours`), never by an attribute: the timer looks for them on threads' stacks.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import Callable
from types import CodeType
from typing import Any, Protocol

MARK = "__udfmem_state__"  # for introspection only: udfmem recognises its wrappers by their code
_THIS_FILE = __file__
_WRAPPERS = frozenset({"agen_wrapper", "async_wrapper", "gen_wrapper", "call_wrapper", "async_setup", "setup_wrapper"})


class Counted(Protocol):
    """What a wrapper needs of a UDF's state (:class:`udfmem.runtime.state.UDFState`)."""

    counter: itertools.count[int]
    due_at: int  # from this call number on, the slow path
    ready: bool  # bound, and memray looked at

    def before(self, n: int, args: tuple[Any, ...] = ()) -> None:
        """Slow path before call ``n``."""

    def after(self, n: int) -> None:
        """Slow path after call ``n``."""

    def setup_begin(self, method: str, args: tuple[Any, ...] = ()) -> Any:
        """Start measuring a setup phase."""

    def setup_end(self, token: Any, method: str, error: str | None) -> None:
        """End a setup phase begun with :meth:`setup_begin`."""


def wrap_call(fn: Callable[..., Any], st: Counted) -> Callable[..., Any]:
    """A wrapper of the same kind as ``fn`` that counts calls and snapshots every K."""
    if inspect.isasyncgenfunction(fn):

        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not st.ready:
                try:
                    st.before(0, args)
                except RecursionError:  # too deep for udfmem here: give way, never change the call
                    pass
            try:
                agen = fn(*args, **kwargs)
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
                while True:
                    try:
                        sent = yield item
                    except GeneratorExit:
                        await agen.aclose()
                        raise
                    except BaseException as exc:
                        try:
                            item = await agen.athrow(exc)
                        except StopAsyncIteration:
                            return
                    else:
                        try:
                            item = await agen.asend(sent)
                        except StopAsyncIteration:
                            return
            finally:
                n = next(st.counter)  # a generator call counts when exhausted or closed
                if n >= st.due_at:
                    try:
                        st.after(n)
                    except RecursionError:  # too deep for udfmem here: give way, never change the call
                        pass

        wrapper: Callable[..., Any] = agen_wrapper
    elif inspect.iscoroutinefunction(fn):

        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            n = next(st.counter)
            if n >= st.due_at:
                try:
                    st.before(n, args)
                except RecursionError:  # too deep for udfmem here: give way, never change the call
                    pass
                try:
                    return await fn(*args, **kwargs)
                finally:
                    try:
                        st.after(n)
                    except RecursionError:  # too deep for udfmem here: give way, never change the call
                        pass
            return await fn(*args, **kwargs)

        wrapper = async_wrapper
    elif inspect.isgeneratorfunction(fn):

        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not st.ready:
                try:
                    st.before(0, args)
                except RecursionError:  # too deep for udfmem here: give way, never change the call
                    pass
            try:
                return (yield from fn(*args, **kwargs))
            finally:
                n = next(st.counter)  # a generator call counts when exhausted or closed
                if n >= st.due_at:
                    try:
                        st.after(n)
                    except RecursionError:  # too deep for udfmem here: give way, never change the call
                        pass

        wrapper = gen_wrapper
    else:

        def call_wrapper(*args: Any, **kwargs: Any) -> Any:
            n = next(st.counter)
            if n >= st.due_at:
                try:
                    st.before(n, args)
                except RecursionError:  # too deep for udfmem here: give way, never change the call
                    pass
                try:
                    return fn(*args, **kwargs)
                finally:
                    try:
                        st.after(n)
                    except RecursionError:  # too deep for udfmem here: give way, never change the call
                        pass
            return fn(*args, **kwargs)

        wrapper = call_wrapper
    return _finish(wrapper, fn, st)


def wrap_setup(fn: Callable[..., Any], st: Counted, method: str) -> Callable[..., Any]:
    """A wrapper that measures one setup phase (``setup`` or ``__init__``)."""
    if inspect.iscoroutinefunction(fn):

        async def async_setup(*args: Any, **kwargs: Any) -> Any:
            try:
                token = st.setup_begin(method, args)
            except RecursionError:  # too deep for udfmem here: give way, never change the call
                token = None
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                try:
                    st.setup_end(token, method, type(exc).__name__)
                except RecursionError:  # too deep for udfmem here: give way, never change the call
                    pass
                raise
            try:
                st.setup_end(token, method, None)
            except RecursionError:  # too deep for udfmem here: give way, never change the call
                pass
            return result

        return _finish(async_setup, fn, st)

    def setup_wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            token = st.setup_begin(method, args)
        except RecursionError:  # too deep for udfmem here: give way, never change the call
            token = None
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            try:
                st.setup_end(token, method, type(exc).__name__)
            except RecursionError:  # too deep for udfmem here: give way, never change the call
                pass
            raise
        try:
            st.setup_end(token, method, None)
        except RecursionError:  # too deep for udfmem here: give way, never change the call
            pass
        return result

    return _finish(setup_wrapper, fn, st)


def _wrapper_codes(outer: Callable[..., Any]) -> set[CodeType]:
    """The code objects of the wrappers defined inside ``outer`` (shared by all their closures)."""
    return {c for c in outer.__code__.co_consts if isinstance(c, CodeType) and c.co_name in _WRAPPERS}


WRAPPER_CODES: frozenset[CodeType] = frozenset(_wrapper_codes(wrap_call) | _wrapper_codes(wrap_setup))
"""The code of every call and setup wrapper: a frame running one of them is inside a tracked call or setup."""


def _finish(wrapper: Callable[..., Any], fn: Callable[..., Any], st: Counted) -> Callable[..., Any]:
    functools.update_wrapper(wrapper, fn)
    setattr(wrapper, MARK, st)
    return wrapper


def is_ours(obj: Any) -> bool:
    """Whether ``obj`` is one of udfmem's own wrappers, by its code, never by an attribute.

    ``functools.wraps`` copies ``__udfmem_state__`` (and ``__qualname__``) onto a user's
    decorator around our wrapper; unwrapping through that would drop the user's code.
    The code object is not copied: ours is compiled in this file, under these names.
    """
    code = getattr(obj, "__code__", None)
    return code is not None and code.co_filename == _THIS_FILE and code.co_name in _WRAPPERS
