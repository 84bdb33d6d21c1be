"""greenback's loop integration for Trio."""

from __future__ import annotations

from typing import Any, Awaitable, ContextManager, Iterator, Mapping, Optional

import trio

from greenback.lowlevel import LoopIntegration

# greenback-trio does not require Trio (a plain `pip install greenback` brings
# this integration without it), so its oldest supported Trio is checked here:
# the registry reports an ImportError raised while loading an integration as
# a MissingIntegrationError that names the install command.
OLDEST_TRIO = (0, 23)
if tuple(int(part) for part in trio.__version__.split(".")[:2]) < OLDEST_TRIO:
    raise ImportError(
        f"greenback's Trio integration needs trio>=0.23, and trio {trio.__version__} is installed"
    )



class _TreeExports(Mapping[str, Any]):
    """The names this integration adds to greenback (``greenback.AutoPortalInstrument``).

    They live in ._tree, which is imported only when one is asked for: a
    program that never uses tree portals does not load them (greenback's
    cold start, which imports this module, stays as small as 1.3.0's).
    """

    _NAMES = ("AutoPortalInstrument",)

    def __getitem__(self, name: str) -> Any:
        if name not in self._NAMES:
            raise KeyError(name)
        from . import _tree

        return getattr(_tree, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)


class TrioIntegration(LoopIntegration):
    """greenback's integration for Trio (registered as ``trio``)."""

    library = "trio"
    exports: Mapping[str, Any] = _TreeExports()

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
        # Only a task of the run going on here: another thread's run may be
        # stepping that task right now. (While the run's first task is being
        # spawned there is no root task yet; that task is ours.)
        root = trio.lowlevel.current_root_task()
        if root is not None and getattr(task, "_runner", None) is not getattr(root, "_runner", None):
            raise RuntimeError(
                f"greenback cannot give a portal to {task!r}: it belongs to another Trio "
                "run than the one going on here. Call greenback.bestow_portal() from a "
                "task of that run, in the thread running it."
            )
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
