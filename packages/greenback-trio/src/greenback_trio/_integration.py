"""greenback's loop integration for Trio."""

from __future__ import annotations

from typing import Any, Awaitable, ContextManager, Optional

import trio

from greenback.loops import LoopIntegration


class TrioIntegration(LoopIntegration):
    library = "trio"

    def current_task(self) -> Optional[object]:
        try:
            return trio.lowlevel.current_task()
        except RuntimeError:
            return None

    def is_task(self, obj: object) -> bool:
        return isinstance(obj, trio.lowlevel.Task)

    def task_is_done(self, task: Any) -> bool:
        runner = getattr(task, "_runner", None)
        tasks = getattr(runner, "tasks", None)
        if tasks is None:  # pragma: no cover - trio internals changed
            return getattr(task.coro, "cr_frame", True) is None
        return task not in tasks

    def get_coro(self, task: Any) -> Any:
        return task.coro

    def set_coro(self, task: Any, coro: Any) -> None:
        old = task.coro
        task.coro = coro
        # A task already rescheduled has its next step bound to the old
        # coroutine's send; point it at the new one so the switch is not
        # delayed by a step.
        pending = task._next_send_fn
        if pending is not None and getattr(pending, "__self__", None) is old:
            task._next_send_fn = coro.send

    def task_context(self, task: Any) -> Optional[Any]:
        return task.context

    def checkpoint(self) -> Awaitable[None]:
        return trio.lowlevel.checkpoint()

    def uncancellable_checkpoint(self) -> Awaitable[None]:
        return trio.lowlevel.cancel_shielded_checkpoint()

    def sleep_hint(self) -> str:
        return "await trio.sleep(0)"

    def portals_for_children(self) -> ContextManager[None]:
        from ._tree import portals_for_children

        return portals_for_children()


integration = TrioIntegration()
