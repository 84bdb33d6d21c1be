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
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import functools
import importlib.util
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple

import greenback
from greenback.lowlevel import current_portal

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
        f"task that has a greenback portal. {fix}"
    )


def _run_nested(api: str, aw: Any) -> Any:
    if current_portal() is None:
        _close(aw)
        raise _no_portal_error(api)
    return greenback.await_(aw)


def _make_run(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run(main: Any, **kwargs: Any) -> Any:
        if asyncio._get_running_loop() is None:
            return original(main, **kwargs)
        if not asyncio.iscoroutine(main):
            raise ValueError(f"a coroutine was expected, got {main!r}")
        return _run_nested("asyncio.run()", main)

    run._greenback_original = original  # type: ignore[attr-defined]
    return run


def _make_run_until_complete(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_until_complete(self: Any, future: Any) -> Any:
        if asyncio._get_running_loop() is not self:
            return original(self, future)
        return _run_nested("loop.run_until_complete()", future)

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


def enable_nested_run() -> None:
    """Let ``asyncio.run()`` and ``loop.run_until_complete()`` be called from sync code in a running loop.

    See the module documentation of :mod:`greenback_asyncio._nested`. Calling
    it again changes nothing; :func:`disable_nested_run` puts the original
    functions back.
    """
    global _saved
    with _lock:
        if _saved is not None:
            return
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


def disable_nested_run() -> None:
    """Undo :func:`enable_nested_run`, restoring exactly the functions it replaced."""
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
