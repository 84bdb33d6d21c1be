"""A minimal event loop, and what its author writes to give it greenback portals.

The loop is a FIFO of tasks with one trap (``toy_yield``); it tells sniffio
its name while it runs. ``ToyIntegration`` is all the greenback support it
needs, written against :mod:`greenback.lowlevel` alone; ``integration`` is
what its ``greenback.loops`` entry point names.
"""

from __future__ import annotations

import collections
import types
from typing import Any, Callable, Deque, Optional, Tuple

import sniffio

from greenback.lowlevel import LoopIntegration

__all__ = ["ToyLoop", "ToyTask", "ToyIntegration", "toy_yield", "integration"]


@types.coroutine
def toy_yield(value: Any = None) -> Any:
    """The toy loop's only trap: reschedule me, and send back what I was given."""
    return (yield ("toy-yield", value))


class ToyTask:
    def __init__(self, coro: Any) -> None:
        self.coro = coro
        self.done = False
        self.result: Any = None
        self.error: Optional[BaseException] = None


class ToyLoop:
    """Runs tasks in turn until all are done."""

    current: Optional["ToyLoop"] = None

    def __init__(self, library: str = "toyloop") -> None:
        self.library = library
        self.ready: Deque[Tuple[ToyTask, Any]] = collections.deque()
        self.current_task: Optional[ToyTask] = None
        self.steps = 0

    def spawn(self, coro: Any) -> ToyTask:
        task = ToyTask(coro)
        self.ready.append((task, None))
        return task

    def run(self, async_fn: Callable[..., Any], *args: Any) -> Any:
        main = self.spawn(async_fn(*args))
        token = sniffio.current_async_library_cvar.set(self.library)
        ToyLoop.current = self
        try:
            while self.ready:
                task, value = self.ready.popleft()
                self.current_task = task
                self.steps += 1
                try:
                    trap = task.coro.send(value)
                except StopIteration as stop:
                    task.done, task.result = True, stop.value
                except BaseException as exc:  # noqa: B036 - reported below
                    task.done, task.error = True, exc
                else:
                    kind, payload = trap
                    if kind != "toy-yield":
                        raise RuntimeError(f"unknown trap {trap!r}")
                    self.ready.append((task, payload))
                finally:
                    self.current_task = None
        finally:
            ToyLoop.current = None
            sniffio.current_async_library_cvar.reset(token)
        if main.error is not None:
            raise main.error
        return main.result


class ToyIntegration(LoopIntegration):
    """What a third party writes to support its loop: no change to greenback itself."""

    def __init__(self, library: str = "toyloop") -> None:
        self.library = library

    def current_task(self) -> Optional[ToyTask]:
        return ToyLoop.current.current_task if ToyLoop.current is not None else None

    def is_task(self, obj: object) -> bool:
        return isinstance(obj, ToyTask)

    def task_is_done(self, task: Any) -> bool:
        return bool(task.done)

    def get_coro(self, task: Any) -> Any:
        return task.coro

    def set_coro(self, task: Any, coro: Any) -> None:
        task.coro = coro

    def checkpoint(self) -> Any:
        return toy_yield()


integration = ToyIntegration()
