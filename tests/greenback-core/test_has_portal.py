"""has_portal(): where await_ can be used, and never an exception."""

from __future__ import annotations

import asyncio
import threading

import pytest

import greenback


def test_has_portal_is_false_in_plain_sync_code():
    assert greenback.has_portal() is False


def test_has_portal_is_false_in_a_thread_with_no_loop():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(greenback.has_portal()))
    thread.start()
    thread.join()
    assert seen == [False]


def test_has_portal_of_a_non_task_is_false_outside_any_loop():
    assert greenback.has_portal(object()) is False


def test_has_portal_is_false_in_an_asyncio_callback_with_no_task():
    async def main():
        loop = asyncio.get_running_loop()
        await greenback.ensure_portal()  # even while a task with a portal waits
        done = loop.create_future()
        loop.call_soon(lambda: done.set_result((asyncio.current_task(), greenback.has_portal())))
        return await done

    assert asyncio.run(main()) == (None, False)


async def test_has_portal_is_false_in_a_new_task(loop):
    assert greenback.has_portal() is False
    assert greenback.has_portal(loop.current_task()) is False


async def test_has_portal_is_true_after_ensure_portal(loop):
    await greenback.ensure_portal()
    assert greenback.has_portal() is True
    assert greenback.has_portal(loop.current_task()) is True
    await loop.checkpoint()
    assert greenback.has_portal() is True


async def test_has_portal_is_false_after_bestowing_on_self_until_the_next_checkpoint(loop):
    greenback.bestow_portal(loop.current_task())
    assert greenback.has_portal() is False
    assert greenback.has_portal(loop.current_task()) is False
    await loop.checkpoint()
    assert greenback.has_portal() is True
    assert greenback.has_portal(loop.current_task()) is True


async def test_has_portal_is_true_inside_with_portal_run_sync(loop):
    task = loop.current_task()

    def inside():
        return greenback.has_portal(), greenback.has_portal(task)

    assert await greenback.with_portal_run_sync(inside) == (True, True)
    # The portal was only for the duration of the call.
    assert greenback.has_portal() is False


async def test_has_portal_is_true_inside_with_portal_run(loop):
    async def inside():
        first = greenback.has_portal()
        await loop.checkpoint()
        return first, greenback.has_portal()

    assert await greenback.with_portal_run(inside) == (True, True)
    assert greenback.has_portal() is False


async def test_has_portal_of_another_task_is_true_after_bestowing_on_it(loop):
    release = loop.Event()
    tasks = []
    seen = []

    async def other():
        tasks.append(loop.current_task())
        await release.wait()
        seen.append(greenback.has_portal())
        seen.append(greenback.await_(noop_value(7)))

    async with loop.open_nursery() as nursery:
        nursery.start_soon(other)
        while not tasks:
            await loop.checkpoint()
        await loop.checkpoint()
        other_task = tasks[0]
        assert greenback.has_portal(other_task) is False
        await greenback.ensure_portal()  # bestowing from a task with a portal
        greenback.bestow_portal(other_task)
        assert greenback.has_portal(other_task) is True
        assert greenback.has_portal() is True  # ours is unaffected
        release.set()
    assert seen == [True, 7]
    # A task that has finished has no portal.
    assert greenback.has_portal(other_task) is False


async def noop_value(value):
    return value


async def test_has_portal_of_a_non_task_object_is_false(loop):
    await greenback.ensure_portal()
    assert greenback.has_portal(object()) is False
    assert greenback.has_portal("not a task") is False


@pytest.mark.loop_backends("asyncio")
async def test_has_portal_of_an_unstarted_asyncio_task_after_bestow_portal():
    started = []

    async def child():
        started.append(greenback.has_portal())
        return greenback.await_(noop_value("child"))

    task = asyncio.ensure_future(child())
    assert greenback.has_portal(task) is False
    greenback.bestow_portal(task)
    assert greenback.has_portal(task) is True
    assert await task == "child"
    assert started == [True]


@pytest.mark.loop_backends("trio")
async def test_has_portal_of_a_trio_task_from_another_run_is_false():
    import trio

    other_run_task = []

    async def record():
        other_run_task.append(trio.lowlevel.current_task())

    # A task of a finished run: nothing about it may raise.
    await trio.to_thread.run_sync(trio.run, record)
    assert greenback.has_portal(other_run_task[0]) is False


@pytest.mark.parametrize("api", ["with_portal_run", "with_portal_run_sync"])
async def test_has_portal_of_another_task_waiting_inside_with_portal_run(loop, api):
    # The task awaits the generator that steps its portal, not the portal
    # itself; seen from another task, it has a portal all the same (as with
    # greenback 1.3.0), and portal_for_task() finds that portal.
    import greenback.lowlevel

    release = loop.Event()
    seen = []

    def sync_part():
        seen.append(greenback.lowlevel.current_portal())
        greenback.await_(release.wait())

    async def async_part():
        sync_part()

    async def waiter():
        if api == "with_portal_run":
            await greenback.with_portal_run(async_part)
        else:
            await greenback.with_portal_run_sync(sync_part)

    async with loop.open_nursery() as nursery:
        task_box = []

        async def run_waiter():
            task_box.append(loop.current_task())
            await waiter()

        nursery.start_soon(run_waiter)
        while not seen:
            await loop.checkpoint()
        (task,) = task_box
        assert greenback.has_portal(task) is True
        assert greenback.lowlevel.portal_for_task(task) is seen[0]
        release.set()
    assert greenback.has_portal(task) is False  # finished
