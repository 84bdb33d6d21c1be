"""Error messages that name the mistake and the call that fixes it."""

from __future__ import annotations

from typing import Optional

from ._engine import Portal


def no_portal_error() -> RuntimeError:
    """The error for await_ where no portal is reachable, tailored to the case."""
    import sniffio

    from .loops import integration_for

    try:
        library: Optional[str] = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library is None:
        return RuntimeError(
            "greenback.await_() was called where no async task is running (no "
            "event loop in this thread, or a callback outside any task). You must "
            "create a greenback portal in an async task and call await_() from "
            "sync code that task runs: 'await greenback.ensure_portal()' in the "
            "task, or 'await greenback.with_portal_run_sync(fn, *args)'."
        )
    try:
        integration = integration_for(library)
        task = integration.current_task()
        coro = integration.get_coro(task) if task is not None else None
    except Exception:
        integration = None
        task = coro = None
    if task is None:
        return RuntimeError(
            f"greenback.await_() was called outside any {library} task (for "
            "example in a loop callback). You must create a greenback portal in "
            "a task and call await_() from code that task runs."
        )
    if isinstance(coro, Portal) and coro._resume is None and not coro._finished:
        hint = integration.sleep_hint() if integration is not None else "await a checkpoint"
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
        "'await greenback.with_portal_run(async_fn, *args)'."
    )
