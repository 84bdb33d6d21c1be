"""Context variables: one context per task, shared by its sync code and await_ed coroutines."""

from __future__ import annotations

import contextvars

import pytest

import greenback

var: contextvars.ContextVar[str] = contextvars.ContextVar("greenback_core_test_var", default="default")


async def test_a_variable_set_in_sync_code_is_seen_by_the_coroutines_it_awaits(checkpoint):
    async def read():
        await checkpoint()
        return var.get()

    def sync():
        var.set("from sync")
        return greenback.await_(read())

    await greenback.ensure_portal()
    assert sync() == "from sync"


async def test_a_variable_set_in_an_awaited_coroutine_is_seen_by_the_sync_code_after(checkpoint):
    async def write():
        await checkpoint()
        var.set("from coroutine")

    def sync():
        greenback.await_(write())
        return var.get()

    # As with native await: an awaited coroutine runs in the caller's context.
    await write()
    assert var.get() == "from coroutine"
    var.set("reset")
    assert await greenback.with_portal_run_sync(sync) == "from coroutine"


async def test_a_variable_set_in_sync_code_is_seen_by_the_task_after_with_portal_run_sync(checkpoint):
    def sync():
        assert var.get() == "set by the task"
        var.set("set in the portal")
        greenback.await_(checkpoint())
        return var.get()

    var.set("set by the task")
    assert await greenback.with_portal_run_sync(sync) == "set in the portal"
    assert var.get() == "set in the portal"
    await checkpoint()
    assert var.get() == "set in the portal"


async def test_a_variable_set_in_the_task_is_seen_by_its_sync_code_across_checkpoints(checkpoint):
    await greenback.ensure_portal()

    def sync():
        seen = [var.get()]
        greenback.await_(checkpoint())
        seen.append(var.get())
        return seen

    var.set("task value")
    assert sync() == ["task value", "task value"]
    var.set("changed")
    await checkpoint()
    assert sync() == ["changed", "changed"]


async def test_tasks_with_portals_do_not_see_each_others_variables(loop):
    results = {}

    async def task(name, delay_steps):
        await greenback.ensure_portal()

        def sync():
            var.set(name)
            for _ in range(delay_steps):
                greenback.await_(loop.checkpoint())
            return var.get()

        results[name] = sync()

    async with loop.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(task, f"task{i}", 5 - i)
    assert results == {f"task{i}": f"task{i}" for i in range(5)}
    assert var.get() == "default"


async def test_a_finished_portal_task_does_not_leak_its_variables_into_the_next_one(loop):
    # Workers are pooled: the next portal may reuse this one's worker greenlet.
    seen = []

    async def first():
        await greenback.with_portal_run_sync(var.set, "first")

    async def second():
        seen.append(await greenback.with_portal_run_sync(var.get))

    for _ in range(3):
        async with loop.open_nursery() as nursery:
            nursery.start_soon(first)
        async with loop.open_nursery() as nursery:
            nursery.start_soon(second)
    assert seen == ["default"] * 3


async def test_bestowing_a_portal_does_not_leak_the_bestowing_tasks_variables(loop):
    release = loop.Event()
    tasks = []
    seen = {}

    async def other():
        var.set("other's own")
        tasks.append(loop.current_task())
        await release.wait()
        seen["async"] = var.get()

        async def read():
            await loop.checkpoint()
            return var.get()

        seen["sync"] = (lambda: greenback.await_(read()))()

    async with loop.open_nursery() as nursery:
        nursery.start_soon(other)
        while not tasks:
            await loop.checkpoint()
        await greenback.ensure_portal()

        def bestow():
            var.set("bestower's")
            greenback.bestow_portal(tasks[0])

        bestow()  # from the sync code of a task that has a portal
        release.set()
    assert seen == {"async": "other's own", "sync": "other's own"}
    assert var.get() == "bestower's"


async def test_bestowing_a_portal_on_a_task_that_never_set_a_variable_leaks_nothing(loop):
    release = loop.Event()
    tasks = []
    seen = []

    async def other():
        tasks.append(loop.current_task())
        await release.wait()
        seen.append(var.get())
        seen.append(greenback.await_(_get_after_checkpoint(loop)))

    await greenback.ensure_portal()
    async with loop.open_nursery() as nursery:
        nursery.start_soon(other)
        while not tasks:
            await loop.checkpoint()
        # Set after the child was spawned (and its context copied): the child
        # must not see it, through its new portal or otherwise.
        var.set("bestower's")
        greenback.bestow_portal(tasks[0])
        release.set()
    assert seen == ["default", "default"]


async def _get_after_checkpoint(loop):
    await loop.checkpoint()
    return var.get()


@pytest.mark.loop_backends("trio")
async def test_replacing_the_trio_task_context_takes_effect_at_the_next_checkpoint_like_native_trio():
    import trio

    async def native():
        var.set("one")
        replacement = contextvars.copy_context()
        replacement.run(var.set, "two")
        trio.lowlevel.current_task().context = replacement
        before = var.get()
        await trio.sleep(0)
        return before, var.get()

    def sync():
        var.set("one")
        replacement = contextvars.copy_context()
        replacement.run(var.set, "two")
        trio.lowlevel.current_task().context = replacement
        before = var.get()
        greenback.await_(trio.sleep(0))
        after = var.get()
        var.set("three")  # lands in the replacement context
        return before, after, replacement.get(var)

    expected = await native()
    assert expected == ("one", "two")
    assert await greenback.with_portal_run_sync(sync) == expected + ("three",)
    assert var.get() == "three"
    await greenback.ensure_portal()
    assert sync() == expected + ("three",)
    await trio.sleep(0)
    assert var.get() == "three"
