"""Creating portals: the public functions that put a Portal where it is needed."""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager, contextmanager
from inspect import isawaitable, iscoroutinefunction
from types import CoroutineType
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterator, Optional, TypeVar

from greenlet import getcurrent

from ._engine import (
    PARKED,
    Portal,
    await_steps,
    blank_portal,
    call_in_portal,
    current_portal,
    find_portal_in,
    make_awaitable_portal,
    make_task_portal,
)
from . import _errors
from ._exceptions import MissingIntegrationError, NoLoopError
from ._loops import LoopIntegration, current_integration, integration_for_task
from ._tracebacks import without_portal_frames

if sys.version_info >= (3, 10):
    from typing import ParamSpec
elif TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import ParamSpec

T = TypeVar("T")
if TYPE_CHECKING or sys.version_info >= (3, 10):
    P = ParamSpec("P")


def _checkpoint_integration() -> LoopIntegration:
    portal = current_portal()
    if portal is not None and portal.integration is not None:
        return portal.integration  # type: ignore[no-any-return]
    return current_integration()


def _bestow(integration: LoopIntegration, task: Any) -> None:
    if integration.task_is_done(task):
        # Nothing will run in it again, so there is nothing to do, as with
        # greenback 1.3.0. (An eager asyncio task may finish inside
        # create_task(), before the bestow_portal() that follows.)
        return
    coro = integration.get_coro(task)
    if isinstance(coro, Portal):
        return  # already has one (perhaps not stepped into yet)
    integration.set_coro(task, make_task_portal(coro, integration))


async def ensure_portal() -> None:
    """Make sure the current task can use :func:`greenback.await_`.

    The first call in a task wraps the task's coroutine in a greenback portal;
    later calls (and calls inside :func:`with_portal_run`) change nothing.
    Either way, this is a checkpoint: it yields to the event loop once and can
    be cancelled there, which is also what makes a new portal usable.
    """
    if current_portal() is None:
        try:
            integration = current_integration()
        except MissingIntegrationError:
            raise
        except RuntimeError as exc:  # no async library here: say where we are
            special = _errors.unusual_place("greenback.ensure_portal()", None)
            if special is None:
                raise
            raise NoLoopError(special) from exc
        task = integration.current_task()
        if task is None:
            raise RuntimeError(
                "greenback.ensure_portal() must be awaited inside a task, and "
                f"no {integration.library} task is running here"
            )
        _bestow(integration, task)
    else:
        integration = _checkpoint_integration()
    await integration.checkpoint()


def bestow_portal(task: Any) -> None:
    """Give *task* a portal, as if it had called :func:`ensure_portal`.

    *task* is an ``asyncio.Task`` or ``trio.lowlevel.Task`` of a loop running
    in this thread: not necessarily the loop of the caller (a Trio task in
    guest mode may give a portal to a task of its asyncio host, and the other
    way round). If it is the current task, the portal is usable only after
    the task next yields to the event loop; :func:`ensure_portal` does both
    steps. A task that already has a portal, or has finished, is left as it
    is.
    """
    integration = integration_for_task(task)
    if integration is None:
        raise _errors.not_a_task("greenback.bestow_portal()", task)
    _bestow(integration, task)


def has_portal(task: Optional[Any] = None) -> bool:
    """Return whether *task* (by default, the current task) can use :func:`await_` now.

    Never raises: outside any task, for an object that is not a task, or for
    a task that gave itself a portal with :func:`bestow_portal` and has not
    yet yielded, it returns False.
    """
    if task is None:
        return current_portal() is not None
    try:
        integration = integration_for_task(task)
    except Exception:
        return False
    if integration is None:
        return False
    if task is integration.current_task():
        return current_portal() is not None
    return portal_for_task(task) is not None


def portal_for_task(task: Any) -> Optional[Portal]:
    """Return the portal *task* is stepped through, or None.

    None if *task* has no portal, has finished, or is no task of a loop
    greenback has an integration for. A task given a portal that it has not
    stepped into yet (:func:`greenback.bestow_portal`) has one already.
    """
    integration = integration_for_task(task)
    if integration is None or integration.task_is_done(task):
        return None
    return find_portal_in(integration.get_coro(task))


def _check_callable(api: str, fn: object, kind: str) -> None:
    """Raise TypeError if *fn*, the first argument of greenback.<api>(), is not callable."""
    if callable(fn):
        return
    if isinstance(fn, CoroutineType):
        # A common slip: with_portal_run(main()) for with_portal_run(main).
        # Close it, so that no "never awaited" warning follows the error.
        name = fn.__qualname__
        fn.close()
        raise TypeError(
            f"greenback.{api}() expects {kind} and its arguments, and got a coroutine object "
            f"({name}()); pass the function itself: greenback.{api}({name}, *args)"
        )
    raise TypeError(f"greenback.{api}() expects {kind} as its first argument, got {fn!r}")


def _not_awaitable(async_fn: object, aw: object) -> TypeError:
    name = getattr(async_fn, "__qualname__", repr(async_fn))
    return TypeError(
        f"greenback expected {name}() to return an awaitable, "
        f"but it returned {type(aw).__name__}; use "
        "greenback.with_portal_run_sync() to run a synchronous function"
    )


def _async_fn_given_to_run_sync(sync_fn: object, coro: CoroutineType) -> TypeError:  # type: ignore[type-arg]
    coro.close()  # never run: no "never awaited" warning
    name = getattr(sync_fn, "__qualname__", repr(sync_fn))
    return TypeError(
        f"greenback.with_portal_run_sync() expects a synchronous function, and {name} is "
        f"an async function; to run it in a portal, use "
        f"'await greenback.with_portal_run({name}, *args)'"
    )


async def with_portal_run(async_fn: Callable[P, Awaitable[T]], *args: P.args, **kwds: P.kwargs) -> T:
    """Run ``await async_fn(*args, **kwds)`` where :func:`await_` can be used.

    Inside a task that already has a portal, this is just that await.
    Otherwise a portal is made for the duration of the call and removed when
    it returns. No checkpoint is added beyond those *async_fn* has.
    """
    # A thread's root greenlet (where event loops usually run) is never in a
    # portal: skip the search for one there, on this portal-creating path.
    if getcurrent().parent is not None and current_portal() is not None:
        _check_callable("with_portal_run", async_fn, "an async function")
        aw = async_fn(*args, **kwds)
        # Checked here too, so that a sync function gets the same advice
        # whether or not the task already has a portal.
        if type(aw) is not CoroutineType and not isawaitable(aw):
            raise _not_awaitable(async_fn, aw)
        return await aw
    _check_callable("with_portal_run", async_fn, "an async function")
    aw = async_fn(*args, **kwds)
    try:
        portal = make_awaitable_portal(aw)
    except TypeError:
        raise _not_awaitable(async_fn, aw) from None
    try:
        return await portal  # type: ignore[no-any-return]
    except BaseException as exc:
        # Show the caller, then the code that ran in the portal: not the
        # portal's own frames in between. (Re-raising the exception being
        # handled changes neither its __context__ nor its __cause__.)
        raise without_portal_frames(exc)  # noqa: B904


async def with_portal_run_sync(sync_fn: Callable[P, T], *args: P.args, **kwds: P.kwargs) -> T:
    """Run ``sync_fn(*args, **kwds)`` where :func:`await_` can be used.

    Inside a task that already has a portal, this is just that call.
    Otherwise a portal is made for the duration of the call. No checkpoint is
    added beyond the ``await_`` calls *sync_fn* makes.
    """
    _check_callable("with_portal_run_sync", sync_fn, "a function")
    portal = blank_portal(Portal)
    try:
        # Also just calls sync_fn if this task already has a portal.
        result = call_in_portal(portal, sync_fn, (args, kwds))
        if result is PARKED:  # it awaits something: step the rest
            result = await await_steps(portal, None)
        elif type(result) is CoroutineType and iscoroutinefunction(sync_fn):
            raise _async_fn_given_to_run_sync(sync_fn, result)
        return result  # type: ignore[no-any-return]
    except BaseException as exc:
        raise without_portal_frames(exc)  # noqa: B904 - as in with_portal_run()


# -- tree portals: every task started in a scope gets a portal ---------------


@contextmanager
def portals_for_children() -> Iterator[None]:
    """A sync context manager under which child tasks started in this task get portals.

    The task entering it gets no portal itself. It is the building block of
    :func:`portals_for_tree` and :func:`with_portal_run_tree`.
    """
    with current_integration().portals_for_children():
        yield


@asynccontextmanager
async def portals_for_tree() -> AsyncIterator[None]:
    """An async context manager giving this task and tasks started under it portals.

    Entering and exiting yield to the event loop but cannot be cancelled. If
    this task had no portal before, it has none again after the block.
    """
    integration = current_integration()
    had_portal = current_portal() is not None
    task = integration.current_task()
    if task is None:
        raise RuntimeError("greenback.portals_for_tree() must be used inside a task")
    if not had_portal:
        _bestow(integration, task)
    await integration.uncancellable_checkpoint()
    try:
        with integration.portals_for_children():
            yield
    finally:
        if not had_portal:
            portal = integration.get_coro(task)
            if isinstance(portal, Portal):
                await portal.detach_from(integration, task)
        else:
            await integration.uncancellable_checkpoint()


async def with_portal_run_tree(async_fn: Callable[P, Awaitable[T]], *args: P.args, **kwds: P.kwargs) -> T:
    """Run ``await async_fn(*args, **kwds)`` with portals for it and every task it starts.

    Tasks started in child scopes of *async_fn* (nurseries, task groups),
    recursively, start with a portal. No checkpoint is added.
    ``trio.run(greenback.with_portal_run_tree, main)`` gives a whole run
    portals (to include system tasks too, use
    :class:`greenback.AutoPortalInstrument`).
    """
    _check_callable("with_portal_run_tree", async_fn, "an async function")
    with current_integration().portals_for_children():
        return await with_portal_run(async_fn, *args, **kwds)
