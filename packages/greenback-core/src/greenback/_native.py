"""What native ``await`` does, and says, that :func:`greenback.await_` must do too.

``await_(aw)`` has to accept exactly what ``await aw`` accepts, fail with the
same errors (CPython rephrases them between versions, and PyPy words some of
them its own way), and leave nothing behind when it refuses. None of this
touches a portal or a greenlet: these are the rules, kept apart from the
switching engine that applies them.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

__all__ = [
    "NOT_AWAITABLE",
    "IteratorAdapter",
    "as_exception",
    "await_iterator",
    "bad_await_result",
    "chain_thrown",
    "close_quietly",
    "forgot_the_call",
    "full_name",
    "has_started",
]

_PYPY = sys.implementation.name == "pypy"

# Native await's words for an object that cannot be awaited (CPython 3.14
# rephrased them).
NOT_AWAITABLE = (
    "'{}' object can't be awaited" if sys.version_info >= (3, 14) else "object {} can't be used in 'await' expression"
)


def await_iterator(aw: Any) -> Any:
    """What native ``await aw`` would iterate, with native await's errors."""
    if isinstance(aw, types.GeneratorType) and aw.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE:
        return aw  # a @types.coroutine generator
    try:
        method: Any = getattr(type(aw), "__await__")
    except AttributeError:
        if isinstance(aw, types.CoroutineType):  # pragma: no cover - callers take these first
            return aw
        close_quietly(aw)
        raise TypeError(NOT_AWAITABLE.format(type(aw).__name__) + forgot_the_call(aw)) from None
    it = method(aw)
    if isinstance(it, types.CoroutineType):
        it.close()
        raise TypeError(bad_await_result(aw, it))
    if not hasattr(type(it), "__next__") or not hasattr(it, "send"):
        if hasattr(type(it), "__next__"):
            return IteratorAdapter(it)
        raise TypeError(bad_await_result(aw, it))
    return it


def bad_await_result(aw: Any, it: Any) -> str:
    """Native await's words for an ``__await__`` that returned *it*, no iterator
    (or a coroutine). CPython 3.15 rephrased them, naming both types; PyPy
    adds a reason to one."""
    if sys.version_info >= (3, 15):
        return f"{full_name(type(aw))}.__await__() must return an iterator, not {full_name(type(it))}"
    if isinstance(it, types.CoroutineType):
        if _PYPY:
            return "__await__() returned a coroutine (it must return an iterator instead, see PEP 492)"
        return "__await__() returned a coroutine"
    return f"__await__() returned non-iterator of type '{type(it).__name__}'"


def full_name(cls: type) -> str:
    """A type as CPython's error messages name it: module.qualname, without
    the module for builtins and __main__."""
    module = cls.__module__
    if module in ("builtins", "__main__") or not isinstance(module, str):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def forgot_the_call(aw: Any) -> str:
    """For ``await_(fetch)`` where ``await_(fetch())`` was meant: a hint, else ''.

    Native await gives none; ours is the first error many users of await_
    see, so it says what to write instead.
    """
    if not inspect.iscoroutinefunction(aw):
        return ""
    name = getattr(aw, "__qualname__", None) or getattr(getattr(aw, "func", None), "__qualname__", "fn")
    return f"; did you mean greenback.await_({name}())? ({name} is an async function: calling it makes the coroutine to await)"


class IteratorAdapter:
    """Give a plain iterator returned by ``__await__`` the send/throw of a generator."""

    __slots__ = ("_it",)

    def __init__(self, it: Any) -> None:
        self._it = it

    def send(self, value: Any) -> Any:
        return next(self._it)

    def throw(self, exc: BaseException) -> Any:
        throw = getattr(self._it, "throw", None)
        if throw is None:
            raise exc
        return throw(exc)


def close_quietly(aw: Any) -> None:
    """Close *aw* if it is a coroutine that will never be awaited now, so that
    refusing it does not also warn "coroutine ... was never awaited"."""
    if isinstance(aw, types.CoroutineType):
        aw.close()


def as_exception(typ: Any, val: Any = None, tb: Any = None) -> BaseException:
    """The exception that ``coro.throw(typ, val, tb)`` throws (the legacy
    three-argument form, which Python still accepts, or an instance)."""
    if isinstance(typ, BaseException):
        exc = typ
    elif val is None:
        exc = typ()
    elif isinstance(val, BaseException):
        exc = val
    else:
        exc = typ(val)
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


def chain_thrown(error: BaseException, handled: BaseException) -> None:
    """Chain an error thrown into a coroutine, leaving it, as native await would.

    An exception thrown into a chain of coroutines (an asyncio cancellation,
    close()) gets as __context__ the exception each coroutine it passes on
    its way out is handling. Through await_ it leaves the awaited coroutine
    into sync frames, which do no such thing: do it for them, with what they
    are handling (*handled*), avoiding cycles as the interpreter does.
    """
    if error is handled:
        return
    link = handled
    while link.__context__ is not None:
        if link.__context__ is error:
            link.__context__ = None  # what the interpreter does to avoid a cycle
            break
        link = link.__context__
    error.__context__ = handled


def has_started(body: Any) -> bool:
    """Whether *body* has run past its start (and so may catch what is thrown in)."""
    if isinstance(body, types.CoroutineType):
        return inspect.getcoroutinestate(body) != inspect.CORO_CREATED
    if isinstance(body, types.GeneratorType):
        return inspect.getgeneratorstate(body) != inspect.GEN_CREATED
    # Another awaitable's iterator: we cannot tell, and a worker serves either way.
    return True
