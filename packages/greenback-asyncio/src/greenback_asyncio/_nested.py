"""Re-entrant ``asyncio.run()`` and ``loop.run_until_complete()``: a nest_asyncio replacement.

After :func:`enable_nested_run`, a call to ``asyncio.run(coro)`` or
``loop.run_until_complete(coro)`` made from sync code while this thread's
event loop is running no longer fails with "cannot be called from a running
event loop": if the calling task has a greenback portal, *coro* is awaited
right there, on the running loop, through :func:`greenback.await_`. It
returns what ``await coro`` returns and raises what it raises; cancelling the
calling task cancels *coro*. Nothing else changes: with no running loop in
this thread (or for ``run_until_complete`` on a loop that is not this thread's
running loop) the stock functions run.

Unlike nest_asyncio, nothing of the loop is re-entered: the running loop keeps
scheduling every task, and only the calling task waits (other tasks, timers
and I/O go on while it does). *coro* runs in the calling task, so it shares
that task's context variables and ``asyncio.current_task()``; the ``debug``
and ``loop_factory`` arguments of a nested ``asyncio.run()`` are ignored.

In IPython (a notebook, or the terminal), :func:`enable_nested_run` also
loads the ``greenback_asyncio`` extension into the running shell, so that
every later cell has a portal: it is the one line that replaces
``nest_asyncio.apply()``. A cell that has no portal (the very cell that
called it, or cells run with ``%autoawait off``) still gets a working
``asyncio.run(coro)``: it runs *coro* to completion on a new event loop, as a
script would, while the shell's loop waits.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import contextlib
import functools
import importlib.util
import inspect
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import greenback
from greenback.lowlevel import current_portal

from ._interrupt import claim_interrupt
from ._shell import no_portal_hint, running_shell

_lock = threading.Lock()
# While enabled: (owner, attribute name, whether owner had its own value, that value).
_saved: Optional[List[Tuple[Any, str, bool, Any]]] = None


def _close(aw: Any) -> None:
    close = getattr(aw, "close", None)
    if close is not None and asyncio.iscoroutine(aw):
        close()


def _no_portal_error(api: str) -> RuntimeError:
    task = asyncio.current_task()
    if task is None:
        where = "outside any task (in a loop callback)"
        fix = (
            "Call it from a task that has a portal, e.g. one started with "
            "'await greenback.with_portal_run_sync(fn, *args)'."
        )
    else:
        where = f"in a task without a greenback portal ({task.get_name()})"
        fix = (
            "Add 'await greenback.ensure_portal()' to that task before the sync call, "
            "or call the sync code through 'await greenback.with_portal_run_sync(fn, *args)'; "
            "'await greenback.with_portal_run_tree(main)' or 'greenback_asyncio.run(main())' "
            "give portals to a whole tree of tasks."
        )
    return RuntimeError(
        f"{api} was called from sync code while this thread's event loop is running, {where}. "
        f"greenback_asyncio.enable_nested_run() can only run it on the running loop from a "
        f"task that has a greenback portal. {fix}{no_portal_hint()}"
    )


def _run_nested(api: str, aw: Any, elsewhere: Optional[Callable[[], Any]] = None) -> Any:
    """Await *aw* through the calling task's portal; *elsewhere* runs it without one."""
    __tracebackhide__ = True  # IPython and pytest show the caller, as for stock asyncio.run()
    if current_portal() is None:
        if elsewhere is not None and asyncio.iscoroutine(aw):
            if running_shell() is not None:
                # A notebook cell without a portal (the cell that loaded the
                # extension, or %autoawait off): its code is top-level code,
                # like a script's, and runs the coroutine the way one would.
                return elsewhere()
        _close(aw)
        raise _no_portal_error(api)
    try:
        return greenback.await_(aw)
    except asyncio.CancelledError:
        if claim_interrupt():
            # The cell was interrupted while it waited here: what a stock
            # asyncio.run() raises on Ctrl-C.
            raise KeyboardInterrupt from None
        raise


@contextlib.contextmanager
def _running_loop_hidden() -> Iterator[None]:
    """Let this thread start another event loop, as if none were running.

    The running loop is not touched: it simply does not run (nor does any of
    its tasks) until the block is over, as during any long sync call.
    """
    running = asyncio._get_running_loop()
    # The task running now is unregistered for the block, and registered
    # again after: since Python 3.14, asyncio keeps the current task per
    # thread, not per loop, so the other loop's tasks would overwrite it, and
    # this loop would then fail (or hang) when the task leaves its step.
    # (_swap_current_task exists since 3.12; it checks that *running* is the
    # running loop, hence the order.)
    swap = getattr(asyncio.tasks, "_swap_current_task", None) if running is not None else None
    task = swap(running, None) if swap is not None else None
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(running)
        if swap is not None:
            swap(running, task)


def _run_on_new_loop(main: Any, kwargs: Dict[str, Any]) -> Any:
    """``asyncio.run(main, **kwargs)`` on a new loop, while this thread's loop waits."""
    with _running_loop_hidden():
        if sys.version_info >= (3, 11):
            # A Runner given a loop factory leaves the thread's current event
            # loop alone (stock asyncio.run() would reset it to None), and
            # handles Ctrl-C as asyncio.run() does.
            factory = kwargs.get("loop_factory") or asyncio.new_event_loop
            with asyncio.Runner(debug=kwargs.get("debug"), loop_factory=factory) as runner:
                return runner.run(main)
        loop = asyncio.new_event_loop()  # pragma: no cover - 3.9/3.10
        try:  # pragma: no cover
            if kwargs.get("debug") is not None:
                loop.set_debug(kwargs["debug"])
            return loop.run_until_complete(main)
        finally:  # pragma: no cover
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()


def _cancel_all_tasks(loop: Any) -> None:  # pragma: no cover - 3.9/3.10
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _check_runnable(main: Any) -> None:
    """Reject what the stock ``asyncio.run()`` rejects, with its error."""
    if asyncio.iscoroutine(main):
        return
    if sys.version_info >= (3, 14):  # asyncio.run() takes any awaitable since 3.14
        if inspect.isawaitable(main):
            return
        raise TypeError("An asyncio.Future, a coroutine or an awaitable is required")
    raise ValueError(f"a coroutine was expected, got {main!r}")


def _make_run(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run(main: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # see _run_nested
        if asyncio._get_running_loop() is None:
            return original(main, **kwargs)
        _check_runnable(main)
        return _run_nested("asyncio.run()", main, lambda: _run_on_new_loop(main, kwargs))

    run._greenback_original = original  # type: ignore[attr-defined]
    return run


def _make_run_until_complete(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_until_complete(self: Any, future: Any) -> Any:
        __tracebackhide__ = True  # see _run_nested
        if asyncio._get_running_loop() is not self:
            return original(self, future)
        return _run_nested(
            "loop.run_until_complete()", future, lambda: _run_on_new_loop(future, {})
        )

    run_until_complete._greenback_original = original  # type: ignore[attr-defined]
    return run_until_complete


def _loop_classes() -> List[type]:
    classes: List[type] = [asyncio.BaseEventLoop]
    # uvloop.Loop is a Python subclass of a compiled base, so its methods can
    # be overridden there. Import it (if installed) now rather than miss it.
    if "uvloop" in sys.modules or importlib.util.find_spec("uvloop") is not None:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - broken install
            pass
        else:
            classes.append(uvloop.Loop)
    return classes


def patch_nested_run() -> bool:
    """Replace ``asyncio.run`` and ``run_until_complete``; return False if they already were."""
    global _saved
    with _lock:
        if _saved is not None:
            return False
        patches: List[Tuple[Any, str, Callable[..., Any]]] = []
        run = _make_run(asyncio.runners.run)
        patches.append((asyncio.runners, "run", run))
        patches.append((asyncio, "run", run))
        for cls in _loop_classes():
            patches.append((cls, "run_until_complete", _make_run_until_complete(getattr(cls, "run_until_complete"))))
        saved = []
        for owner, name, replacement in patches:
            own = name in vars(owner)
            saved.append((owner, name, own, vars(owner).get(name)))
            setattr(owner, name, replacement)
        _saved = saved
        return True


def unpatch_nested_run() -> None:
    """Put back the functions :func:`patch_nested_run` replaced."""
    global _saved
    with _lock:
        if _saved is None:
            return
        for owner, name, own, value in reversed(_saved):
            if own:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
        _saved = None


def nested_run_enabled() -> bool:
    """Whether :func:`enable_nested_run` is in effect."""
    return _saved is not None
