"""greenback's loop integration for asyncio (and loops that reuse its Task: uvloop)."""

from __future__ import annotations

import asyncio
import types
from typing import Any, Awaitable, ContextManager, Optional

from greenback.lowlevel import LoopIntegration

from ._task_coro import _PY_TASK, get_task_coro, set_task_coro
from ._tree import portals_for_children

_TASK_TYPES: tuple[type, ...] = (asyncio.Task,) + ((_PY_TASK,) if _PY_TASK is not None else ())


@types.coroutine
def _yield_once() -> Any:
    # A bare yield is what asyncio.sleep(0) does: one trip through the loop.
    yield


@types.coroutine
def _yield_once_uncancellable() -> Any:
    """One trip through the loop that a ``Task.cancel()`` does not interrupt.

    asyncio has no shield for the current task, so a cancellation that
    arrives while we are suspended here (or was already pending when we
    yielded) is caught and requested again on the same task, with the same
    message: it is deferred, never lost, and is delivered at the task's next
    suspension, as the cancellation of a Trio shielded checkpoint would be.
    On 3.11+ the task's ``cancelling()`` count is left as it was.
    """
    try:
        yield
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - only tasks are cancelled
            raise
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None:
            uncancel()  # cancel() below counts this request again
        message = exc.args[0] if exc.args else None
        if message is None:
            task.cancel()
        else:
            task.cancel(message)


class AsyncioIntegration(LoopIntegration):
    """greenback's integration for asyncio (registered as ``asyncio``; uvloop too)."""

    library = "asyncio"

    def current_task(self) -> Optional[object]:
        try:
            return asyncio.current_task()
        except RuntimeError:
            return None

    def is_task(self, obj: object) -> bool:
        return isinstance(obj, _TASK_TYPES)

    def task_is_done(self, task: Any) -> bool:
        return bool(task.done())

    def get_coro(self, task: Any) -> Any:
        return get_task_coro(task)

    def set_coro(self, task: Any, coro: Any) -> None:
        # Only a task of the loop running here: another thread's loop may be
        # stepping that task right now, and swapping its coroutine would race
        # with it (set_task_coro() reads, checks and writes a C field).
        loop = task.get_loop()
        if loop is not asyncio._get_running_loop():
            raise RuntimeError(
                f"greenback cannot give a portal to {task!r}: it belongs to another event "
                f"loop ({loop!r}) than the one running here. Call greenback.bestow_portal() "
                "from a task of that loop, in the thread running it."
            )
        set_task_coro(task, coro)

    def task_context(self, task: Any) -> Optional[Any]:
        get_context = getattr(task, "get_context", None)  # 3.12+, when eager tasks arrived
        if get_context is not None:
            return get_context()
        return getattr(task, "_context", None)

    def checkpoint(self) -> Awaitable[None]:
        return _yield_once()

    def uncancellable_checkpoint(self) -> Awaitable[None]:
        return _yield_once_uncancellable()

    def sleep_hint(self) -> str:
        return "await asyncio.sleep(0)"

    def portals_for_children(self) -> ContextManager[None]:
        return portals_for_children(self)


integration = AsyncioIntegration()
