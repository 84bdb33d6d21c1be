"""ensure_portal() is a checkpoint every time; with_portal_run*() add none."""

from __future__ import annotations

import pytest

import greenback


class Witness:
    """A task that counts its own steps, to see whether the current task yielded."""

    def __init__(self, loop):
        self.loop = loop
        self.steps = 0
        self.done = False

    async def run(self):
        while not self.done:
            self.steps += 1
            await self.loop.checkpoint()


async def noop_async():
    return "async result"


def noop_sync():
    return "sync result"


async def test_ensure_portal_is_idempotent(loop):
    assert not greenback.has_portal()
    await greenback.ensure_portal()
    portal = greenback._engine.current_portal()
    assert portal is not None
    for _ in range(5):
        await greenback.ensure_portal()
        assert greenback._engine.current_portal() is portal
    # The task still steps one portal, not a portal wrapped in another.
    coro = greenback.lowlevel.current_integration().get_coro(loop.current_task())
    assert coro is portal
    assert not isinstance(portal.wrapped, greenback._engine.Portal)


async def test_ensure_portal_lets_another_task_run_every_time(loop):
    calls = 10
    async with loop.open_nursery() as nursery:
        witness = Witness(loop)
        nursery.start_soon(witness.run)
        await loop.checkpoint()  # the witness is now running: it steps once per batch
        before = witness.steps
        for _ in range(calls):
            await greenback.ensure_portal()
        # Each call we resume from is a new pass of the scheduler, in which the
        # witness ran once too (before or after us); under Trio the order within
        # a pass is random, so only calls - 1 are certain.
        assert witness.steps - before >= calls - 1
        witness.done = True


@pytest.mark.loop_backends("asyncio")
async def test_ensure_portal_yields_once_per_call_under_asyncio(loop):
    # asyncio runs ready tasks in FIFO order, so each single call can be checked.
    async with loop.open_nursery() as nursery:
        witness = Witness(loop)
        nursery.start_soon(witness.run)
        await loop.checkpoint()
        for _ in range(3):
            before = witness.steps
            await greenback.ensure_portal()
            assert witness.steps == before + 1
        witness.done = True


@pytest.mark.loop_backends("trio")
async def test_ensure_portal_is_a_trio_checkpoint_every_time():
    import trio.testing

    with trio.testing.assert_checkpoints():
        await greenback.ensure_portal()  # creates the portal
    for _ in range(3):
        with trio.testing.assert_checkpoints():
            await greenback.ensure_portal()  # already there: still a checkpoint


@pytest.mark.loop_backends("trio")
async def test_ensure_portal_raises_cancelled_in_a_cancelled_scope():
    import trio

    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await greenback.ensure_portal()
    assert scope.cancelled_caught is False
    # The portal creation itself went through; later calls are cancellable too.
    assert greenback.has_portal()
    with trio.CancelScope() as scope:
        scope.cancel()
        await greenback.ensure_portal()
        raise AssertionError("ensure_portal() did not raise Cancelled")  # pragma: no cover
    assert scope.cancelled_caught


@pytest.mark.loop_backends("asyncio")
async def test_ensure_portal_raises_cancelled_error_when_the_task_is_cancelled():
    import asyncio

    await greenback.ensure_portal()
    task = asyncio.current_task()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await greenback.ensure_portal()
    if hasattr(task, "uncancel"):
        task.uncancel()


async def test_with_portal_run_sync_adds_no_checkpoint(loop):
    async with loop.open_nursery() as nursery:
        witness = Witness(loop)
        nursery.start_soon(witness.run)
        await loop.checkpoint()
        before = witness.steps
        assert await greenback.with_portal_run_sync(noop_sync) == "sync result"
        assert witness.steps == before
        # Nor inside a task that has a portal already.
        await greenback.ensure_portal()
        before = witness.steps
        assert await greenback.with_portal_run_sync(noop_sync) == "sync result"
        assert witness.steps == before
        witness.done = True


async def test_with_portal_run_adds_no_checkpoint(loop):
    async with loop.open_nursery() as nursery:
        witness = Witness(loop)
        nursery.start_soon(witness.run)
        await loop.checkpoint()
        before = witness.steps
        assert await greenback.with_portal_run(noop_async) == "async result"
        assert witness.steps == before
        await greenback.ensure_portal()
        before = witness.steps
        assert await greenback.with_portal_run(noop_async) == "async result"
        assert witness.steps == before
        witness.done = True


@pytest.mark.loop_backends("trio")
async def test_with_portal_run_functions_are_not_trio_checkpoints():
    import trio.testing

    for _ in range(2):  # without, then with, a portal on the task
        with trio.testing.assert_no_checkpoints():
            await greenback.with_portal_run_sync(noop_sync)
        with trio.testing.assert_no_checkpoints():
            await greenback.with_portal_run(noop_async)
        await greenback.ensure_portal()


async def test_await_of_a_checkpoint_through_the_portal_is_one_checkpoint(loop):
    # await_(checkpoint()) yields exactly as often as `await checkpoint()`.
    async with loop.open_nursery() as nursery:
        witness = Witness(loop)
        nursery.start_soon(witness.run)
        await greenback.ensure_portal()
        before = witness.steps
        for _ in range(10):
            greenback.await_(loop.checkpoint())
        assert 9 <= witness.steps - before <= 11
        witness.done = True
