"""greenback's loop integration for asyncio (and loops that reuse its Task: uvloop)."""

from __future__ import annotations

import asyncio
import types
from typing import Any, Awaitable, Optional

from greenback.loops import LoopIntegration

from ._task_coro import _PY_TASK, get_task_coro, set_task_coro

_TASK_TYPES: tuple[type, ...] = (asyncio.Task,) + ((_PY_TASK,) if _PY_TASK is not None else ())


@types.coroutine
def _yield_once() -> Any:
    # A bare yield is what asyncio.sleep(0) does: one trip through the loop.
    yield


class AsyncioIntegration(LoopIntegration):
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
        set_task_coro(task, coro)

    def checkpoint(self) -> Awaitable[None]:
        return _yield_once()

    def sleep_hint(self) -> str:
        return "await asyncio.sleep(0)"


integration = AsyncioIntegration()
