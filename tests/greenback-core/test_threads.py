"""Event loops in separate threads, each with portals, at the same time."""

from __future__ import annotations

import asyncio
import threading

import greenlet
import sniffio

import greenback

TASKS_PER_LOOP = 3
STEPS = 50


def run_loop_in_thread(kind, index, barrier, results, errors):
    async def checkpoint():
        if kind == "trio":
            import trio

            await trio.lowlevel.checkpoint()
        else:
            await asyncio.sleep(0)

    async def value_later(value):
        await checkpoint()
        return value

    def sync_work(task_index, meet):
        thread = threading.current_thread()
        here = greenlet.getcurrent()
        if meet:
            # Every thread is now inside a portal, with tasks suspended in others.
            barrier.wait(timeout=30)
        total = 0
        for step in range(STEPS):
            total += greenback.await_(value_later(step * (task_index + 1)))
            assert threading.current_thread() is thread
            assert greenlet.getcurrent() is here
        if meet:
            barrier.wait(timeout=30)
        return total

    async def task(task_index, out):
        await greenback.ensure_portal()
        await checkpoint()
        out[task_index] = sync_work(task_index, meet=task_index == 0)

    async def main():
        out = {}
        if kind == "trio":
            import trio

            async with trio.open_nursery() as nursery:
                for i in range(TASKS_PER_LOOP):
                    nursery.start_soon(task, i, out)
        else:
            await asyncio.gather(*(task(i, out) for i in range(TASKS_PER_LOOP)))
        return out

    try:
        if kind == "trio":
            import trio

            results[(kind, index)] = trio.run(main)
        else:
            results[(kind, index)] = asyncio.run(main())
    except BaseException as exc:  # noqa: B036 - reported by the test thread
        errors.append((kind, index, exc))
        barrier.abort()


def test_loops_in_four_threads_use_portals_at_the_same_time():
    kinds = ["asyncio", "trio", "asyncio", "trio"]
    barrier = threading.Barrier(len(kinds))
    results = {}
    errors = []
    threads = [
        threading.Thread(target=run_loop_in_thread, args=(kind, i, barrier, results, errors), daemon=True)
        for i, kind in enumerate(kinds)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    expected = {i: sum(step * (i + 1) for step in range(STEPS)) for i in range(TASKS_PER_LOOP)}
    assert results == {(kind, i): expected for i, kind in enumerate(kinds)}


def test_a_portal_in_one_thread_is_not_visible_from_another():
    # has_portal() and await_ in a plain thread started from inside a portal.
    seen = []

    def in_thread():
        seen.append(greenback.has_portal())
        try:
            greenback.await_(asyncio.sleep(0))
        except RuntimeError as exc:
            seen.append(isinstance(exc, sniffio.AsyncLibraryNotFoundError))  # no loop in this thread

    async def main():
        await greenback.ensure_portal()
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        return greenback.has_portal()

    assert asyncio.run(main()) is True
    assert seen == [False, True]
