"""Portals across loops: Trio running as a guest on an asyncio (or uvloop) host.

tractor runs Trio this way and, from a Trio task, gives an asyncio task a
portal (``greenback.bestow_portal(asyncio_task)``); the asyncio task's sync code
then calls ``await_``. The loop a portal belongs to is the task's, whatever
library the caller runs under (sniffio says "trio" in the Trio task that
bestows, "asyncio" in the asyncio task that awaits), so both directions work.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, List

import pytest

import greenback

trio = pytest.importorskip("trio")


# The host loops: asyncio's default loop and uvloop (see tests/conftest.py).
pytestmark = pytest.mark.loop_backends("asyncio", "uvloop")


@pytest.fixture
def host(loop: Any) -> Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]:
    """``host(trio_main)`` runs *trio_main* with Trio as a guest of a fresh host loop."""

    def run(trio_main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        async def host_main() -> Any:
            host_loop = asyncio.get_running_loop()
            done: asyncio.Future[Any] = host_loop.create_future()
            trio.lowlevel.start_guest_run(
                trio_main,
                run_sync_soon_threadsafe=host_loop.call_soon_threadsafe,
                done_callback=done.set_result,
                # uvloop owns the signal wakeup fd; asyncio does not mind either way.
                host_uses_signal_set_wakeup_fd=True,
            )
            return (await done).unwrap()

        return loop.run(host_main)

    return run


async def _trio_wait_for(aio_task: "asyncio.Task[Any]", ready: Callable[[], bool] = lambda: False) -> None:
    """In a Trio task: wait until *ready()* or until *aio_task* is done (then
    re-raise its error here), for 10 seconds at most: a broken portal fails
    the test instead of hanging it."""
    with trio.fail_after(10):
        while not ready():
            if aio_task.done():
                aio_task.result()
                return
            await trio.sleep(0.001)


async def _aio_value(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


async def _trio_value(value: Any) -> Any:
    await trio.sleep(0)
    return value


def test_a_trio_task_bestows_a_portal_on_an_asyncio_task(host: Any) -> None:
    seen: List[Any] = []

    def sync_part() -> int:
        seen.append(greenback.has_portal())
        return greenback.await_(_aio_value(20)) + greenback.await_(asyncio.sleep(0, 1))  # type: ignore[no-any-return]

    async def aio_side() -> int:
        await asyncio.sleep(0)  # the portal is in place from this step on
        return sync_part() * 2

    async def trio_main() -> Any:
        aio_task = asyncio.get_running_loop().create_task(aio_side())
        assert not greenback.has_portal(aio_task)
        greenback.bestow_portal(aio_task)  # sniffio says "trio" here
        assert greenback.has_portal(aio_task)
        greenback.bestow_portal(aio_task)  # a second time changes nothing
        await _trio_wait_for(aio_task)
        assert not greenback.has_portal(aio_task)  # finished
        return aio_task.result()

    assert host(trio_main) == 42
    assert seen == [True]


def test_an_asyncio_task_bestows_a_portal_on_a_trio_task(host: Any) -> None:
    found: List[Any] = []
    go: List[bool] = []
    aio_tasks: List["asyncio.Task[Any]"] = []

    def sync_part() -> int:
        assert greenback.await_(trio.sleep(0)) is None
        return greenback.await_(_trio_value(40)) + 2  # type: ignore[no-any-return]

    async def trio_child() -> int:
        found.append(trio.lowlevel.current_task())
        # The portal is in place from the step after go.
        await _trio_wait_for(aio_tasks[0], lambda: bool(go))
        assert greenback.has_portal()
        return sync_part()

    async def aio_side() -> None:
        while not found:
            await asyncio.sleep(0.001)
        (trio_task,) = found
        assert not greenback.has_portal(trio_task)
        greenback.bestow_portal(trio_task)  # sniffio says "asyncio" here
        assert greenback.has_portal(trio_task)
        go.append(True)

    async def trio_main() -> Any:
        aio_task = asyncio.get_running_loop().create_task(aio_side())
        aio_tasks.append(aio_task)
        results: List[int] = []

        async def child() -> None:
            results.append(await trio_child())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
        await _trio_wait_for(aio_task)
        return results

    assert host(trio_main) == [42]


def test_each_side_checks_its_own_tasks_portal(host: Any) -> None:
    """has_portal() of a task asks that task's loop, from either side."""

    async def aio_side(trio_task: Any) -> List[bool]:
        await greenback.ensure_portal()
        return [greenback.has_portal(), greenback.has_portal(trio_task)]

    async def trio_main() -> Any:
        await greenback.ensure_portal()
        me = trio.lowlevel.current_task()
        aio_task = asyncio.get_running_loop().create_task(aio_side(me))
        await _trio_wait_for(aio_task)
        return aio_task.result(), greenback.has_portal(aio_task), greenback.has_portal()

    assert host(trio_main) == ([True, True], False, True)


def test_what_no_integration_claims_is_not_a_task(host: Any) -> None:
    async def trio_main() -> None:
        coro = _aio_value(1)
        try:
            with pytest.raises(TypeError, match="expects a task"):
                greenback.bestow_portal(coro)
            assert greenback.has_portal(coro) is False
        finally:
            coro.close()

    host(trio_main)
