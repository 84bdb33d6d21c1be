"""Regression tests for greenback-core fixes found while building the asyncio extras."""

from __future__ import annotations

import asyncio
import inspect

import greenback


def test_cancel_caught_at_first_portal_step(loop):
    # A portal given to a task that is suspended (ensure_portal) gets the
    # cancellation before its first step. The task catches it and goes on:
    # it must keep running in its portal, not have its coroutine closed.
    async def main():
        log = []

        async def victim():
            try:
                await greenback.ensure_portal()
            except asyncio.CancelledError:
                log.append("caught")
                await asyncio.sleep(0)
                return greenback.await_(asyncio.sleep(0, "await_ ok"))

        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0)
        task.cancel()
        return await task, log

    assert loop.run(main) == ("await_ ok", ["caught"])


def test_portal_task_reports_its_state(loop):
    # anyio asks inspect.getcoroutinestate() whether a task has started; a
    # task whose coroutine is a portal must answer like a native one.
    async def main():
        started = asyncio.Event()

        async def child():
            await greenback.ensure_portal()
            started.set()
            greenback.await_(asyncio.sleep(3600))

        task = asyncio.ensure_future(child())
        await asyncio.sleep(0)
        states = [inspect.getcoroutinestate(task.get_coro())]  # bestowed, not stepped
        await started.wait()
        states.append(inspect.getcoroutinestate(task.get_coro()))  # inside await_
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return states

    assert loop.run(main) == [inspect.CORO_SUSPENDED, inspect.CORO_SUSPENDED]
