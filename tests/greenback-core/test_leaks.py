"""Short-lived portals leave nothing behind but a bounded pool of idle workers."""

from __future__ import annotations

import gc
import weakref

import pytest

import greenback
from greenback import _engine

TASKS = 1000
WAVE = 100
SLACK = 5  # greenlets the loop itself may create or cache


@pytest.fixture
def live_portals(full_collect):
    """The Portal objects still in memory after a full collection."""

    def live_portals():
        full_collect()
        return [obj for obj in gc.get_objects() if isinstance(obj, _engine.Portal)]

    return live_portals


@pytest.fixture
def clean_pool(only_new_objects):
    _engine.drain_pool()
    yield
    _engine.drain_pool()


def test_the_worker_pool_is_bounded():
    assert 1 <= _engine.POOL_LIMIT <= 1024


def test_1000_short_lived_portal_tasks_leave_no_portals_and_few_greenlets(
    run, loop, live_greenlets, clean_pool, live_portals
):
    portal_refs = []

    async def short_lived(i):
        await greenback.ensure_portal()
        portal_refs.append(weakref.ref(_engine.current_portal()))
        total = 0
        for step in range(3):
            total += greenback.await_(value_after_checkpoint(loop, step))
        assert total == 3

    async def main():
        for wave in range(TASKS // WAVE):
            async with loop.open_nursery() as nursery:
                for i in range(WAVE):
                    nursery.start_soon(short_lived, wave * WAVE + i)

    baseline = live_greenlets()
    run(main)
    assert len(portal_refs) == TASKS
    assert live_portals() == []
    assert [ref for ref in portal_refs if ref() is not None] == []
    after = live_greenlets()
    assert after - baseline <= _engine.POOL_LIMIT + SLACK
    assert _engine.pool_size() <= _engine.POOL_LIMIT
    # What remains is the idle pool: letting it go frees the greenlets.
    _engine.drain_pool()
    assert live_greenlets() - baseline <= SLACK


def test_1000_with_portal_run_sync_calls_leave_no_portals_and_few_greenlets(
    run, loop, live_greenlets, clean_pool, live_portals
):
    def sync(i):
        return greenback.await_(value_after_checkpoint(loop, i))

    async def main():
        total = 0
        for i in range(TASKS):
            total += await greenback.with_portal_run_sync(sync, i)
        return total

    baseline = live_greenlets()
    assert run(main) == sum(range(TASKS))
    assert live_portals() == []
    # One call at a time: one worker, reused every time.
    assert live_greenlets() - baseline <= 1 + SLACK


def test_portal_tasks_that_fail_leave_no_portals_or_extra_greenlets(run, loop, live_greenlets, clean_pool, live_portals):
    class Failure(Exception):
        pass

    async def fail():
        await loop.checkpoint()
        raise Failure

    errors = []

    async def failing_task():
        await greenback.ensure_portal()
        try:
            greenback.await_(fail())
        except Failure as exc:
            errors.append(exc)  # keeps the traceback, and with it the frames
        greenback.await_(fail())

    async def main():
        for _ in range(TASKS // WAVE):
            for _ in range(WAVE):
                try:
                    async with loop.open_nursery() as nursery:
                        nursery.start_soon(failing_task)
                except BaseException as exc:  # noqa: B036 - an ExceptionGroup under trio
                    errors.append(exc)

    baseline = live_greenlets()
    run(main)
    assert len(errors) == 2 * TASKS
    del errors[:]
    assert live_portals() == []
    assert live_greenlets() - baseline <= _engine.POOL_LIMIT + SLACK


def test_a_portal_task_abandoned_while_suspended_is_cleaned_up(run, loop, live_greenlets, clean_pool, live_portals):
    # A task cancelled in sync code: its finally blocks run, and nothing stays alive.
    log = []

    def sync():
        try:
            greenback.await_(loop.sleep(3600))
        finally:
            log.append("finally")

    async def main():
        started = []

        async def sleeper():
            await greenback.ensure_portal()
            started.append(1)
            sync()

        if loop.library == "trio":
            import trio

            async with trio.open_nursery() as nursery:
                for _ in range(WAVE):
                    nursery.start_soon(sleeper)
                while len(started) < WAVE:
                    await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()
        else:
            import asyncio

            tasks = [asyncio.ensure_future(sleeper()) for _ in range(WAVE)]
            while len(started) < WAVE:
                await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    baseline = live_greenlets()
    run(main)
    assert log == ["finally"] * WAVE
    assert live_portals() == []
    assert live_greenlets() - baseline <= _engine.POOL_LIMIT + SLACK


async def value_after_checkpoint(loop, value):
    await loop.checkpoint()
    return value


class Payload:
    """Something a task stores in a context variable, to see whether it is freed."""


payload_var = __import__("contextvars").ContextVar("greenback_leak_payload")


def test_pooled_workers_do_not_keep_a_finished_tasks_context_variables_alive(run, loop, clean_pool, full_collect):
    refs = []

    def set_in_sync_code():
        payload = Payload()
        refs.append(weakref.ref(payload))
        payload_var.set(payload)
        greenback.await_(loop.checkpoint())

    async def task():
        await greenback.ensure_portal()
        set_in_sync_code()

    async def main():
        async with loop.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(task)
            nursery.start_soon(greenback.with_portal_run_sync, set_in_sync_code)

    run(main)
    assert _engine.pool_size() > 0  # the workers are still there, idle ...
    full_collect()
    assert len(refs) == 11
    assert [ref for ref in refs if ref() is not None] == []  # ... but hold no context


def test_pooled_workers_have_no_context_after_calls_that_finish_at_once_or_after_awaiting(run, loop, clean_pool):
    # with_portal_run_sync finishes a call in two ways (returning right away,
    # or after it awaited something): both must clear the worker's context.
    def at_once():
        payload_var.set(Payload())

    def after_awaiting():
        payload_var.set(Payload())
        greenback.await_(loop.checkpoint())

    def pooled_contexts():
        idle = list(_engine._pools.idle)
        assert idle, "the worker should be back in the pool"
        return [worker.gr_context for worker in idle]

    async def main():
        contexts = []
        for fn in (at_once, after_awaiting):
            await greenback.with_portal_run_sync(fn)
            contexts.append(pooled_contexts())
        return contexts

    assert run(main) == [[None], [None]]


def test_more_concurrent_calls_than_the_pool_holds_leave_only_a_full_pool(run, loop, live_greenlets, clean_pool, live_portals):
    # 3 x POOL_LIMIT with_portal_run_sync calls are parked at once, so as many
    # workers exist; when they finish, the pool keeps POOL_LIMIT of them and
    # the rest end (greenlet throws GreenletExit into each as it is freed).
    count = 3 * _engine.POOL_LIMIT
    log = []

    def parked(release):
        try:
            greenback.await_(release.wait())
        finally:
            log.append("finally")
        return "done"

    async def main():
        release = loop.Event()
        results = []

        async def call():
            results.append(await greenback.with_portal_run_sync(parked, release))

        async with loop.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(call)
            for _ in range(10):
                await loop.checkpoint()
            assert log == []
            release.set()
        return results

    baseline = live_greenlets()
    assert run(main) == ["done"] * count
    assert log == ["finally"] * count
    assert live_portals() == []
    assert _engine.pool_size() == _engine.POOL_LIMIT
    assert live_greenlets() - baseline <= _engine.POOL_LIMIT + SLACK
    _engine.drain_pool()
    assert live_greenlets() - baseline <= SLACK


@pytest.mark.parametrize("awaits", [False, True], ids=["at-once", "after-awaiting"])
def test_a_worker_interrupted_by_keyboard_interrupt_never_returns_to_the_pool(run, loop, clean_pool, awaits):
    import greenlet

    workers = {}

    def body(kind, error):
        workers[kind] = greenlet.getcurrent()
        if awaits:
            greenback.await_(loop.checkpoint())
        if error is not None:
            raise error

    async def main():
        await greenback.with_portal_run_sync(body, "fine", None)
        with pytest.raises(ValueError):
            await greenback.with_portal_run_sync(body, "failed", ValueError())
        with pytest.raises(KeyboardInterrupt):
            await greenback.with_portal_run_sync(body, "interrupted", KeyboardInterrupt())
        await greenback.with_portal_run_sync(body, "after", None)

    run(main)
    # An ordinary error leaves the worker reusable; an interrupt does not:
    # it ends, and the next call gets a fresh one.
    assert workers["fine"] is workers["failed"] is workers["interrupted"]
    assert workers["interrupted"].dead
    assert workers["after"] is not workers["interrupted"]
    assert all(worker is not workers["interrupted"] for worker in _engine._pools.idle)
