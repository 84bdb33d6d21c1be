"""Sync faces for async objects, built on :func:`await_`."""

from __future__ import annotations

import functools
import sys
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncContextManager,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generic,
    Iterator,
    Optional,
    Protocol,
    Type,
    TypeVar,
)

from ._api import with_portal_run_sync
from ._engine import await_
from ._exceptions import NOT_AN_ASYNC_CONTEXT_MANAGER, ExitWithoutEnterError
from ._native import as_exception

if sys.version_info >= (3, 10):
    from typing import ParamSpec
elif TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import ParamSpec

T = TypeVar("T")
if TYPE_CHECKING or sys.version_info >= (3, 10):
    P = ParamSpec("P")


def autoawait(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Turn an async function into a sync one that awaits it with :func:`await_`.

    The result can be called without ``await`` wherever ``await_`` works, which
    makes it usable as a property getter or setter, a magic method, or a
    callback that must be synchronous.
    """

    @functools.wraps(fn)
    def call_and_await(*args: P.args, **kwds: P.kwargs) -> T:
        return await_(fn(*args, **kwds))

    return call_and_await


class SyncDecoratorForAsync(Protocol):
    """What :func:`decorate_as_sync` returns: it decorates an async function,
    which keeps its signature."""

    def __call__(self, async_fn: Callable[P, Awaitable[T]], /) -> Callable[P, Awaitable[T]]: ...


def decorate_as_sync(decorator: Callable[[Callable[..., Any]], Callable[..., Any]]) -> SyncDecoratorForAsync:
    """Let a decorator written for sync functions decorate an async function.

    ``decorate_as_sync(functools.lru_cache())(async_fn)`` caches results, not
    coroutine objects: the decorator wraps a sync function that runs
    *async_fn* with :func:`await_`, and the returned async function calls that
    through :func:`with_portal_run_sync`. Calling it is equivalent to::

        await greenback.with_portal_run_sync(decorator(greenback.autoawait(async_fn)), *args)
    """

    def apply(async_fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        decorated_sync = decorator(autoawait(async_fn))

        @functools.wraps(async_fn)
        async def run_decorated(*args: Any, **kwds: Any) -> Any:
            return await with_portal_run_sync(decorated_sync, *args, **kwds)

        return run_decorated

    return apply


class async_context(Generic[T]):
    """Use an async context manager in a sync ``with`` statement, via :func:`await_`."""

    __slots__ = ("_cm", "_aexit")

    def __init__(self, cm: AsyncContextManager[T]) -> None:
        self._cm = cm
        self._aexit: Any = None

    def __enter__(self) -> T:
        cm_type = type(self._cm)
        try:
            aenter = cm_type.__aenter__
        except AttributeError:
            raise NOT_AN_ASYNC_CONTEXT_MANAGER(
                f"greenback.async_context() needs an asynchronous context manager, "
                f"but {cm_type.__name__!r} has no __aenter__ method"
            ) from None
        try:
            self._aexit = cm_type.__aexit__
        except AttributeError:
            raise NOT_AN_ASYNC_CONTEXT_MANAGER(
                f"greenback.async_context() needs an asynchronous context manager, "
                f"but {cm_type.__name__!r} has no __aexit__ method"
            ) from None
        return await_(aenter(self._cm))

    def __exit__(
        self,
        typ: Optional[Type[BaseException]],
        value: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> Optional[bool]:
        aexit, self._aexit = self._aexit, None
        if aexit is None:
            raise ExitWithoutEnterError("greenback.async_context.__exit__() called without __enter__()")
        return await_(aexit(self._cm, typ, value, tb))  # type: ignore[no-any-return]


class async_iter(Generic[T]):
    """Use an async iterable in a sync ``for`` loop or ``yield from``, via :func:`await_`.

    When the async iterator is an async generator (it has ``asend``,
    ``athrow`` and ``aclose``), the wrapper is a generator-like object too:
    ``send``, ``throw`` and ``close`` reach the async generator.
    """

    __slots__ = ("_it",)
    _it: AsyncIterator[T]

    def __new__(cls, iterable: AsyncIterable[T]) -> "async_iter[T]":
        try:
            aiter = type(iterable).__aiter__
        except AttributeError:
            raise TypeError(
                "greenback.async_iter() requires an object with an __aiter__ "
                f"method, got {type(iterable).__name__}"
            ) from None
        it = aiter(iterable)
        if not hasattr(type(it), "__anext__"):
            raise TypeError(
                "greenback.async_iter() got an object from __aiter__ without an "
                f"__anext__ method: {type(it).__name__}"
            )
        if cls is async_iter and all(hasattr(it, name) for name in ("asend", "athrow", "aclose")):
            cls = _async_generator_iter
        self = object.__new__(cls)
        self._it = it
        return self

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        try:
            return await_(self._it.__anext__())
        except StopAsyncIteration as exc:
            raise StopIteration(*exc.args) from None


class _async_generator_iter(async_iter[T]):
    __slots__ = ()

    def send(self, value: Any) -> T:
        try:
            return await_(self._it.asend(value))  # type: ignore[attr-defined,no-any-return]
        except StopAsyncIteration as exc:
            raise StopIteration(*exc.args) from None

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> T:
        try:
            return await_(self._it.athrow(as_exception(typ, val, tb)))  # type: ignore[attr-defined,no-any-return]
        except StopAsyncIteration as stop:
            raise StopIteration(*stop.args) from None

    def close(self) -> None:
        await_(self._it.aclose())  # type: ignore[attr-defined]


# For readers and type checkers: an async_iter is a sync iterator.
_: Callable[[AsyncIterator[int]], Iterator[int]] = async_iter
