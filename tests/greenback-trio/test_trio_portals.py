"""Portals on Trio tasks: ensure_portal, bestow_portal, await_, and what Trio
sees of a task that has one (Task.coro, iter_await_frames, the task tree)."""

from __future__ import annotations

import asyncio
import threading
import traceback
import types
from typing import Any, List

import pytest
import trio
import trio.testing

import greenback


def sync_await(aw: Any) -> Any:
    return greenback.await_(aw)


async def test_ensure_portal_and_await_from_nested_sync_code() -> None:
    assert not greenback.has_portal()
    await greenback.ensure_portal()
    assert greenback.has_portal()
    assert greenback.has_portal(trio.lowlevel.current_task())

    async def add(a: int, b: int) -> int:
        await trio.sleep(0)
        return a + b

    def level2() -> int:
        return sync_await(add(1, 2))

    def level1() -> int:
        return level2() * 10

    assert level1() == 30
    await greenback.ensure_portal()  # idempotent
    assert level1() == 30


async def test_ensure_portal_is_a_checkpoint() -> None:
    with trio.testing.assert_checkpoints():
        await greenback.ensure_portal()
    with trio.testing.assert_checkpoints():
        await greenback.ensure_portal()  # already has one: still a checkpoint
    with trio.CancelScope() as scope:
        scope.cancel()
        await greenback.ensure_portal()
    assert scope.cancelled_caught


async def test_task_coro_is_the_portal_and_introspection_works() -> None:
    task_box: List[trio.lowlevel.Task] = []
    reached = trio.Event()

    async def deep_async() -> None:
        reached.set()
        await trio.sleep_forever()

    def sync_part() -> None:
        sync_await(deep_async())

    async def child() -> None:
        task_box.append(trio.lowlevel.current_task())
        await greenback.ensure_portal()
        sync_part()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child, name="the-child")
        await reached.wait()
        await trio.testing.wait_all_tasks_blocked()
        task = task_box[0]
        coro = task.coro
        # Trio now steps a greenback portal in place of the task's coroutine.
        assert type(coro) is not types.CoroutineType
        assert greenback.has_portal(task)
        assert hasattr(coro, "send") and hasattr(coro, "throw") and hasattr(coro, "close")
        repr(coro)
        repr(task)
        frames = list(task.iter_await_frames())
        names = [frame.f_code.co_name for frame, _ in frames]
        assert "child" in names, names
        traceback.StackSummary.extract(iter(frames)).format()
        # The task tree is intact.
        assert task in nursery.child_tasks
        assert task.parent_nursery is nursery
        assert task.name == "the-child"
        nursery.cancel_scope.cancel()


async def test_bestow_on_a_sleeping_task() -> None:
    results: List[Any] = []
    event = trio.Event()

    async def sleeper() -> None:
        await event.wait()
        results.append(greenback.has_portal())
        results.append(sync_await(trio.sleep(0)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        (task,) = nursery.child_tasks
        assert not greenback.has_portal(task)
        greenback.bestow_portal(task)
        assert greenback.has_portal(task)
        greenback.bestow_portal(task)  # idempotent
        event.set()
    assert results == [True, None]


async def test_bestow_on_an_already_rescheduled_task_takes_effect_on_its_next_step() -> None:
    """The task is already in the run queue (its wakeup is bound to its
    coroutine) when it gets the portal: the portal is still usable as soon as
    the task runs again."""
    results: List[Any] = []
    event = trio.Event()

    async def waiter() -> None:
        await event.wait()
        results.append(greenback.has_portal())
        results.append(sync_await(trio.sleep(0)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        (task,) = nursery.child_tasks
        event.set()  # reschedules the task...
        greenback.bestow_portal(task)  # ...before it gets its portal
    assert results == [True, None]


async def test_bestow_on_a_task_not_yet_started() -> None:
    results: List[Any] = []

    async def child() -> None:
        results.append(greenback.has_portal())
        results.append(sync_await(trio.sleep(0)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
        (task,) = nursery.child_tasks
        greenback.bestow_portal(task)
    assert results == [True, None]


async def test_bestow_on_the_current_task_needs_a_yield() -> None:
    greenback.bestow_portal(trio.lowlevel.current_task())
    assert not greenback.has_portal()
    with pytest.raises(RuntimeError, match="yield"):
        sync_await(trio.sleep(0))
    await trio.sleep(0)
    assert greenback.has_portal()
    sync_await(trio.sleep(0))


async def test_bestow_errors() -> None:
    async def quick() -> None:
        pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(quick)
        (task,) = nursery.child_tasks
    greenback.bestow_portal(task)  # finished: nothing to do, as with greenback 1.3.0
    assert not greenback.has_portal(task)
    for not_a_task in (None, object(), quick, asyncio.Future):
        with pytest.raises(TypeError):
            greenback.bestow_portal(not_a_task)
        assert not greenback.has_portal(not_a_task)


def test_bestow_on_a_task_of_another_trio_run() -> None:
    """A task of a run in another thread cannot be given a portal from here."""
    ready = threading.Event()
    release = threading.Event()
    box: dict = {}

    async def other_main() -> None:
        box["task"] = trio.lowlevel.current_task()
        ready.set()
        await trio.to_thread.run_sync(release.wait)
        box["has_portal"] = greenback.has_portal()

    thread = threading.Thread(target=trio.run, args=(other_main,))
    thread.start()
    try:
        assert ready.wait(10)

        async def main() -> None:
            with pytest.raises(RuntimeError, match="another"):
                greenback.bestow_portal(box["task"])

        trio.run(main)
    finally:
        release.set()
        thread.join(10)
    assert box["has_portal"] is False


async def test_cancellation_reaches_code_suspended_in_await() -> None:
    log: List[str] = []

    async def inner() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            log.append("inner saw Cancelled")
            raise

    def sync_part() -> None:
        try:
            sync_await(inner())
        finally:
            log.append("sync finally")

    async def child() -> None:
        await greenback.ensure_portal()
        try:
            sync_part()
        finally:
            log.append("child finally")

    with trio.move_on_after(0.01) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
    assert scope.cancelled_caught
    assert log == ["inner saw Cancelled", "sync finally", "child finally"]


async def test_errors_propagate_through_await() -> None:
    await greenback.ensure_portal()

    async def fails() -> None:
        await trio.sleep(0)
        raise KeyError("inner")

    def sync_part() -> None:
        try:
            sync_await(fails())
        except KeyError as exc:
            raise ValueError("outer") from exc

    with pytest.raises(ValueError, match="outer") as info:
        sync_part()
    cause = info.value.__cause__
    assert isinstance(cause, KeyError)
    names = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    # The awaited coroutine's frames sit below the sync code that awaited it.
    assert names.index("sync_part") < names.index("sync_await") < names.index("fails"), names


async def test_with_portal_run_sync_and_run() -> None:
    async def sleep_and_return(x: int) -> int:
        await trio.sleep(0)
        return x

    def sync_fn(x: int) -> int:
        return sync_await(sleep_and_return(x)) + 1

    assert await greenback.with_portal_run_sync(sync_fn, 1) == 2

    async def async_fn() -> int:
        return sync_fn(10)

    assert await greenback.with_portal_run(async_fn) == 11
    assert not greenback.has_portal()


async def test_many_tasks_with_portals() -> None:
    total: List[int] = []

    async def worker(i: int) -> None:
        await greenback.ensure_portal()
        for _ in range(5):
            sync_await(trio.sleep(0))
        total.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(worker, i)
    assert sorted(total) == list(range(200))


async def test_await_from_a_worker_thread_is_refused() -> None:
    await greenback.ensure_portal()

    def in_thread() -> None:
        coro = trio.sleep(0)
        with pytest.raises(RuntimeError, match="greenback"):
            greenback.await_(coro)

    await trio.to_thread.run_sync(in_thread)
    sync_await(trio.sleep(0))  # our own portal is unaffected


async def test_from_thread_run_inside_a_portal() -> None:
    """Sync code in a portal hands work to a thread, which calls back into Trio.

    Since Trio 0.23, trio.from_thread.run() runs its function as part of the
    task that started the thread, so that function is in the task's portal.
    """
    await greenback.ensure_portal()

    async def in_trio(x: int) -> int:
        assert greenback.has_portal()
        return sync_await(trio.sleep(0)) or x

    def in_thread() -> int:
        return trio.from_thread.run(in_trio, 1) + trio.from_thread.run(in_trio, 2)

    def sync_part() -> int:
        return sync_await(trio.to_thread.run_sync(in_thread))  # type: ignore[no-any-return]

    assert sync_part() == 3


def test_guest_mode_on_asyncio() -> None:
    """Trio running as a guest inside asyncio: Trio tasks' portals are stepped
    from asyncio callbacks."""

    async def trio_main() -> int:
        await greenback.ensure_portal()

        async def child(i: int) -> int:
            await greenback.ensure_portal()
            return sync_await(trio.sleep(0.001)) or i

        results: List[int] = []

        async def collect(i: int) -> None:
            results.append(await child(i))

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(collect, i)
        sync_await(trio.sleep(0))
        return sum(results)

    async def asyncio_main() -> int:
        loop = asyncio.get_running_loop()
        done: "asyncio.Future[Any]" = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        # The host loop keeps running its own tasks, with their own portals.
        await greenback.ensure_portal()
        for _ in range(10):
            sync_await(asyncio.sleep(0.001))
        outcome = await done
        return outcome.unwrap()  # type: ignore[no-any-return]

    assert asyncio.run(asyncio_main()) == 10


def test_keyboard_interrupt_in_sync_code_of_a_portal_task() -> None:
    """Trio delivers Ctrl-C right away to code that is not KI-protected: sync
    code running in a portal is user code like any other."""
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a custom handler here, so Trio does not install its own")
    log: List[str] = []

    def sync_part() -> None:
        try:
            signal.raise_signal(signal.SIGINT)
            for _ in range(10**6):
                pass
            log.append("not interrupted")  # pragma: no cover
        except KeyboardInterrupt:
            log.append("interrupted in sync code")
            raise

    async def main() -> None:
        await greenback.ensure_portal()
        sync_part()

    with pytest.raises(KeyboardInterrupt):
        trio.run(main)
    assert log == ["interrupted in sync code"]
