"""bestow_portal() given something it cannot give a portal to says so clearly,
and leaves the task alone."""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any, Dict

import pytest

import greenback


async def test_bestow_on_a_finished_task_does_nothing() -> None:
    # As with greenback 1.3.0: no portal, no error (nothing runs in it again).
    async def quick() -> str:
        return "done"

    task = asyncio.ensure_future(quick())
    assert await task == "done"
    greenback.bestow_portal(task)
    assert task.result() == "done"
    assert not greenback.has_portal(task)

    failed = asyncio.ensure_future(asyncio.sleep(10))
    failed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await failed
    greenback.bestow_portal(failed)
    assert not greenback.has_portal(failed)


async def test_bestow_on_things_that_are_not_tasks() -> None:
    loop = asyncio.get_running_loop()
    coro = asyncio.sleep(0)
    try:
        for not_a_task in (None, object(), loop.create_future(), coro, "task", asyncio.Task):
            with pytest.raises(TypeError, match="task"):
                greenback.bestow_portal(not_a_task)
            assert not greenback.has_portal(not_a_task)
    finally:
        coro.close()


async def test_bestow_on_the_current_task_twice_and_ensure_portal_after() -> None:
    task = asyncio.current_task()
    greenback.bestow_portal(task)
    greenback.bestow_portal(task)
    await greenback.ensure_portal()
    assert greenback.has_portal()
    assert greenback.await_(asyncio.sleep(0, result=5)) == 5


def test_bestow_on_a_task_of_a_loop_running_in_another_thread() -> None:
    """Another thread's loop may be stepping that task at this very moment:
    swapping its coroutine from here would race with it. Refused, clearly."""
    ready = threading.Event()
    box: Dict[str, Any] = {}

    async def other_main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["task"] = asyncio.current_task()
        box["event"] = asyncio.Event()
        ready.set()
        await box["event"].wait()
        box["has_portal"] = greenback.has_portal()
        box["coro_type"] = type(asyncio.current_task().get_coro())  # type: ignore[union-attr]

    thread = threading.Thread(target=asyncio.run, args=(other_main(),))
    thread.start()
    try:
        assert ready.wait(10)

        async def main() -> None:
            with pytest.raises(RuntimeError, match="another event loop"):
                greenback.bestow_portal(box["task"])

        asyncio.run(main())
    finally:
        box["loop"].call_soon_threadsafe(box["event"].set)
        thread.join(10)
    assert box["has_portal"] is False
    assert box["coro_type"] is types.CoroutineType


def test_bestow_on_a_task_of_another_loop_in_this_thread() -> None:
    other = asyncio.new_event_loop()
    try:
        foreign = other.create_task(asyncio.sleep(0, result="other"))

        async def main() -> None:
            with pytest.raises(RuntimeError, match="another event loop"):
                greenback.bestow_portal(foreign)

        asyncio.run(main())
        # The task is untouched and runs normally on its own loop.
        assert other.run_until_complete(foreign) == "other"
    finally:
        other.close()


async def test_await_from_an_executor_thread_is_refused_cleanly() -> None:
    """No portal (nor loop) in a worker thread: a clear error, and the
    coroutine passed in is closed rather than left never awaited."""
    import gc
    import warnings

    await greenback.ensure_portal()

    def in_thread() -> str:
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="greenback"):
            greenback.await_(coro)
        assert coro.cr_frame is None  # closed
        return "refused"

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = await asyncio.get_running_loop().run_in_executor(None, in_thread)
        gc.collect()
    assert result == "refused"
    assert greenback.await_(asyncio.sleep(0, result="ours")) == "ours"
