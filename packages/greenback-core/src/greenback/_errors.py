"""Error messages that name the mistake and the call that fixes it.

The classes below keep code written for greenback 1.3.0 working: for each
mistake, what we raise is an instance of the class 1.3.0 raised for it (as
well as of the class that describes it best), so its ``except`` clauses
still catch it. tests/clients/test_error_classes.py checks each case.

What these messages need is imported with greenback, not when an error is
raised: an error raised as the interpreter shuts down (in a finalizer, or a
generator's finally block) can no longer import anything. (The few imports
below are of modules already loaded, or happen only before shutdown.)
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from types import FrameType
from typing import Any, Callable, Optional

import sniffio
from greenlet import getcurrent

from ._exceptions import MissingIntegrationError, NoLoopError, NotATaskError
from ._loops import integration_for


def no_portal_error(bestowed_unstarted: Callable[[Any], bool]) -> RuntimeError:
    """The error for await_ where no portal is reachable, tailored to the case.

    *bestowed_unstarted* tells whether a task's coroutine is a portal it was
    given and has not stepped yet (the engine's knowledge, handed in).
    """
    if sys.is_finalizing():
        return NoLoopError(_shutdown_message("greenback.await_()"))
    try:
        library: Optional[str] = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    special = unusual_place("greenback.await_()", library)
    if special is not None:
        return RuntimeError(special) if library is not None else NoLoopError(special)
    special = _in_a_library_greenlet(getcurrent())
    if special is not None:
        return RuntimeError(special)
    if library is None:
        return NoLoopError(
            "greenback.await_() was called where no async task is running (no "
            "event loop in this thread, or a callback outside any task). You must "
            "create a greenback portal in an async task and call await_() from "
            "sync code that task runs: 'await greenback.ensure_portal()' in the "
            "task, or 'await greenback.with_portal_run_sync(fn, *args)'." + ipython_hint()
        )
    try:
        integration = integration_for(library)
    except MissingIntegrationError as exc:
        return MissingIntegrationError(str(exc))  # a loop greenback cannot serve
    try:
        task = integration.current_task()
        coro = integration.get_coro(task) if task is not None else None
    except Exception:
        task = coro = None
    if task is None:
        return RuntimeError(
            f"greenback.await_() was called outside any {library} task (for "
            "example in a loop callback). You must create a greenback portal in "
            "a task and call await_() from code that task runs."
        )
    if bestowed_unstarted(coro):
        hint = integration.sleep_hint()
        return RuntimeError(
            "You must yield to the event loop (try "
            f"'{hint}') after calling 'greenback.bestow_portal()' on the current "
            "task before greenback.await_() can use the portal; "
            "'await greenback.ensure_portal()' does both."
        )
    return RuntimeError(
        "You must create a greenback portal for this task before calling "
        "greenback.await_(): add 'await greenback.ensure_portal()' to the task, "
        "or call the sync code through "
        "'await greenback.with_portal_run_sync(fn, *args)' or "
        "'await greenback.with_portal_run(async_fn, *args)'." + ipython_hint()
    )


# Libraries that run sync code in greenlets of their own, in which that code
# can wait, and what lets greenback.await_() wait there too (it then defers to
# the library: see greenback.lowlevel.GreenletBridge). By the top-level package
# of the greenlet's class.
_GREENLET_LIBRARIES = {
    "sqlalchemy": (
        "SQLAlchemy",
        "an event hook or other sync code its asyncio extension runs",
        "Call greenback_sqlalchemy.install() once at startup (it comes with "
        'pip install "greenback[sqlalchemy]"): then await_() works in SQLAlchemy\'s '
        "greenlets, and sync ORM code (lazy loads, hooks) works in any task with a "
        "greenback portal.",
    ),
}


def _in_a_library_greenlet(here: Any) -> Optional[str]:
    """Why await_ cannot wait in *here*, a greenlet of a library we know, if it is one."""
    cls = type(here)
    known = _GREENLET_LIBRARIES.get(cls.__module__.partition(".")[0])
    if known is None:
        return None
    name, what, fix = known
    return (
        f"greenback.await_() was called in a greenlet of {name} "
        f"({cls.__module__}.{cls.__qualname__}: {what}), with no greenback portal "
        f"above it. {fix}"
    )


def not_a_task(api: str, obj: object) -> NotATaskError:
    """The error for a task argument that no loop integration claims."""
    return NotATaskError(
        f"{api} expects a task: an asyncio.Task, a trio.lowlevel.Task, or a task "
        f"of another loop greenback has an integration for; got "
        f"{type(obj).__name__} ({obj!r}). To give the current task a portal, "
        "use 'await greenback.ensure_portal()'."
    )


def ipython_hint() -> str:
    """A sentence for the no-portal error in IPython or Jupyter ('' elsewhere).

    A notebook user writes cells, not tasks: the fix there is the
    greenback_asyncio extension, and when it is loaded, the extension says why
    this code still has no portal. It keeps itself on the shell as
    ``_greenback_asyncio_extension`` (see greenback_asyncio._ipython).
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    try:
        shell = get_ipython() if get_ipython is not None else None
    except Exception:  # pragma: no cover - a half-imported IPython
        shell = None
    if shell is None:
        return ""
    extension = getattr(shell, "_greenback_asyncio_extension", None)
    if extension is not None:
        return str(extension.no_portal_hint())
    hint = (
        " In IPython or Jupyter, run '%load_ext greenback_asyncio' (or call "
        "greenback_asyncio.enable_nested_run()) in a cell: every cell after it has a "
        "portal. To load it in every session, add c.InteractiveShellApp.extensions = "
        "['greenback_asyncio'] to ipython_config.py."
    )
    if importlib.util.find_spec("greenback_asyncio") is None:
        hint += " (It comes with greenback-asyncio: pip install greenback-asyncio.)"
    return hint


def unusual_place(api: str, library: Optional[str]) -> Optional[str]:
    """Why *api* cannot wait here, when it is called somewhere no task can be:
    a finalizer, a signal handler, interpreter shutdown, a loop's worker
    thread, an asyncio callback. None if it is none of these.

    Only ever called to build an error message, so it may take its time.
    """
    if sys.is_finalizing():
        return _shutdown_message(api)
    frame: Optional[FrameType] = sys._getframe(1)
    handlers = _signal_handler_codes()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__":
            owner = frame.f_locals.get("self")
            where = f"{type(owner).__qualname__}.__del__" if owner is not None else "__del__"
            return (
                f"{api} was called in a finalizer ({where}). Finalizers run "
                "wherever an object happens to be freed (in any task, in the "
                "event loop, in another thread, at exit) and cannot wait for "
                "anything. Release the resource explicitly (a close() method, "
                "'async with'), or have the finalizer schedule the async cleanup "
                "instead of waiting for it: loop.call_soon_threadsafe("
                "loop.create_task, coro) under asyncio, "
                "trio_token.run_sync_soon(...) under Trio."
            )
        if code in handlers:
            return (
                f"{api} was called in a signal handler ({code.co_name}), which "
                "Python runs between two bytecodes of whatever the main thread "
                "is doing, and which cannot wait for anything. Handle the signal "
                "in a task instead: loop.add_signal_handler() under asyncio, "
                "'with trio.open_signal_receiver(...)' under Trio."
            )
        frame = frame.f_back
    if library is not None:
        return None
    if "trio" in sys.modules and _in_trio_worker_thread():
        return (
            f"{api} was called in a worker thread started by "
            "trio.to_thread.run_sync(); it only works in the thread that runs "
            "the Trio loop, in a task. From a worker thread, call back into Trio "
            "with trio.from_thread.run(async_fn, *args) (or "
            "trio.from_thread.run_sync(fn, *args))."
        )
    if "asyncio" in sys.modules:
        import asyncio

        if asyncio._get_running_loop() is not None:
            hidden = _task_unseen_by_asyncio(asyncio)
            if hidden is not None:
                return (
                    f"{api} was called in {hidden!r}, a pure-Python asyncio Task "
                    "(asyncio.tasks._PyTask or a subclass), which the C-accelerated "
                    "asyncio.current_task() does not report since Python 3.14, so "
                    "nothing (greenback, sniffio, anyio, asyncio.timeout()) can tell "
                    "that a task is running; CPython does not support mixing the two "
                    "(https://github.com/python/cpython/issues/131709). Use "
                    "asyncio.Task (the default) or a subclass of it, or give asyncio "
                    "the pure-Python functions too: asyncio.current_task = "
                    "asyncio.tasks.current_task = asyncio.tasks._py_current_task "
                    "(and the same for all_tasks, with _py_all_tasks)."
                )
            return (
                f"{api} was called in a callback of the running asyncio event "
                "loop (call_soon, call_later, a future's done callback, a "
                "protocol method...), outside any task; only code that a task "
                "runs can wait. You must create a greenback portal in a task "
                "and call it from code that task runs: start one with "
                "loop.create_task(coro), and have it 'await "
                "greenback.ensure_portal()' (or call the sync code through "
                "'await greenback.with_portal_run_sync(fn, *args)')."
            )
        if threading.current_thread().name.startswith("asyncio_"):
            return (
                f"{api} was called in a worker thread of an asyncio event loop "
                "(asyncio.to_thread() or loop.run_in_executor()); it only works "
                "in the thread that runs the loop, in a task. From a worker "
                "thread, run a coroutine on the loop with "
                "asyncio.run_coroutine_threadsafe(coro, loop).result()."
            )
    return None


def _task_unseen_by_asyncio(asyncio: Any) -> Optional[object]:
    """The pure-Python Task running now, if asyncio.current_task() misses it.

    Up to Python 3.13 the C and the pure-Python current_task() share their
    books; from 3.14 on a pure-Python Task only writes to the pure-Python ones.
    """
    py_current = getattr(asyncio.tasks, "_py_current_task", None)
    if py_current is None or py_current is asyncio.current_task:
        return None
    try:
        if asyncio.current_task() is not None:
            return None
        return py_current()  # type: ignore[no-any-return]
    except RuntimeError:
        return None


def _shutdown_message(api: str) -> str:
    return (
        f"{api} was called during interpreter shutdown (in a finalizer, or "
        "the finally block of a generator or coroutine closed as the "
        "interpreter exits), when no event loop can run any more. Finish "
        "async cleanup while the loop runs: close generators that wait in "
        "their finally blocks (or 'await agen.aclose()') in the task that "
        "uses them."
    )


def _signal_handler_codes() -> "set[object]":
    try:
        import signal

        handlers = [signal.getsignal(sig) for sig in signal.valid_signals()]
    except Exception:  # pragma: no cover - no signal support
        return set()
    codes: set[object] = {getattr(h, "__code__", None) for h in handlers if callable(h)}
    return codes - {None}


def _in_trio_worker_thread() -> bool:
    import trio

    check = getattr(trio.from_thread, "check_cancelled", None)
    if check is None:  # pragma: no cover - trio < 0.23
        return False
    try:
        check()
    except RuntimeError:
        return False  # "this thread wasn't created by Trio"
    except BaseException:  # noqa: B036 - trio.Cancelled: a Trio worker thread indeed
        return True
    return True
