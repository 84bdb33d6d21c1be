"""Eager tasks (Python 3.12+) started by a task that has a portal.

An eager task takes its first step inside ``create_task()``: when the creating
task has a portal, that first step runs inside the creating task's portal
(its worker greenlet), even though asyncio's current task is the new one. That
step must not see, or use, the creating task's portal.
"""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest

import greenback

# Eager tasks, C and pure-Python (Python 3.12+; skipped before).
pytestmark = pytest.mark.loop_backends("asyncio-eager", "asyncio-py-eager")


def sync_await(aw: Any) -> Any:
    return greenback.await_(aw)


@pytest.mark.parametrize("where", ["async", "sync"])
def test_eager_child_of_a_portal_task_is_on_its_own(loop: Any, where: str) -> None:
    log: List[Any] = []

    async def child() -> str:
        # First step: runs inside the parent's portal, but is not the parent.
        log.append(("child first step has_portal", greenback.has_portal()))
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="greenback"):
            sync_await(coro)
        log.append(("child is still the current task", asyncio.current_task() not in parents))
        await greenback.ensure_portal()
        log.append(("child after ensure_portal", greenback.has_portal()))
        sync_await(asyncio.sleep(0))
        return "child done"

    parents: List[Any] = []

    async def parent() -> Any:
        parents.append(asyncio.current_task())
        await greenback.ensure_portal()
        if where == "async":
            task = asyncio.create_task(child(), name="child")
        else:
            task = (lambda: asyncio.create_task(child(), name="child"))()
        log.append(("parent", asyncio.current_task() is parents[0], greenback.has_portal()))
        sync_await(asyncio.sleep(0))
        return await task

    assert loop.run(parent) == "child done"
    assert log == [
        ("child first step has_portal", False),
        ("child is still the current task", True),
        ("parent", True, True),
        ("child after ensure_portal", True),
    ]


def test_eager_child_that_finishes_in_its_first_step(loop: Any) -> None:
    async def child(x: int) -> int:
        assert not greenback.has_portal()
        return await greenback.with_portal_run_sync(lambda: x * 2)

    async def parent() -> Any:
        await greenback.ensure_portal()
        tasks = [asyncio.create_task(child(i)) for i in range(3)]
        assert all(t.done() for t in tasks)
        return sync_await(asyncio.gather(*tasks))

    assert loop.run(parent) == [0, 2, 4]


def test_eager_children_with_portals_started_from_sync_code(loop: Any) -> None:
    async def worker(i: int) -> int:
        await greenback.ensure_portal()
        return sync_await(asyncio.sleep(0.001, result=i)) + sync_await(asyncio.sleep(0, result=i))

    async def parent() -> Any:
        await greenback.ensure_portal()
        return sync_await(asyncio.gather(*(worker(i) for i in range(10))))

    assert loop.run(parent) == [2 * i for i in range(10)]
