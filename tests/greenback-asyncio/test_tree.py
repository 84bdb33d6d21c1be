"""Tree portals on asyncio: greenback.with_portal_run_tree, portals_for_tree, portals_for_children."""

from __future__ import annotations

import asyncio
import sys

import pytest

import greenback
from greenback._engine import Portal

needs_311 = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup and asyncio.timeout arrived in 3.11")


def sync_echo(value):
    """Sync code that awaits: works only in a task with a portal."""
    return greenback.await_(asyncio.sleep(0, value))


async def portal_here():
    await asyncio.sleep(0)
    return greenback.has_portal()


async def spawn(coro):
    """Create a task and return it (not its result)."""
    return asyncio.ensure_future(coro)


def test_with_portal_run_tree_every_way_of_creating_tasks(loop):
    async def leaf(tag):
        await asyncio.sleep(0)
        return sync_echo(tag)

    async def branch(tag):
        # A grandchild: created by a tree task.
        return sync_echo(tag), await asyncio.ensure_future(leaf(tag + ".leaf"))

    async def main():
        loop = asyncio.get_running_loop()
        results = [sync_echo("main")]
        results.append(await asyncio.create_task(branch("create_task")))
        results.append(await asyncio.ensure_future(branch("ensure_future")))
        results.append(await loop.create_task(branch("loop.create_task")))
        results.append(await asyncio.gather(branch("gather1"), leaf("gather2")))
        done, _ = await asyncio.wait([asyncio.ensure_future(leaf("wait"))])
        results.append(done.pop().result())
        return results

    async def outer():
        return await greenback.with_portal_run_tree(main)

    assert loop.run(outer) == [
        "main",
        ("create_task", "create_task.leaf"),
        ("ensure_future", "ensure_future.leaf"),
        ("loop.create_task", "loop.create_task.leaf"),
        [("gather1", "gather1.leaf"), "gather2"],
        "wait",
    ]


@needs_311
def test_tree_taskgroup(loop):
    async def child(i):
        async with asyncio.TaskGroup() as tg:
            grandchild = tg.create_task(portal_here())
        return sync_echo(i), grandchild.result()

    async def main():
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(i)) for i in range(3)]
        return [t.result() for t in tasks]

    async def outer():
        return await greenback.with_portal_run_tree(main)

    assert loop.run(outer) == [(0, True), (1, True), (2, True)]


def test_tasks_created_outside_the_scope_get_no_portal(loop):
    async def main():
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        release = asyncio.Event()

        async def bystander():
            # Created before the scope, creates a task while the scope is open.
            await started.wait()
            child = asyncio.ensure_future(portal_here())
            release.set()
            return await child

        by = asyncio.ensure_future(bystander())
        callback_tasks = []

        async def inside():
            started.set()
            # A task created from a loop callback has no creating task.
            loop.call_soon(lambda: callback_tasks.append(asyncio.ensure_future(portal_here())))
            await release.wait()
            await asyncio.sleep(0)
            return await asyncio.ensure_future(portal_here())

        in_tree = await greenback.with_portal_run_tree(inside)
        after = await asyncio.ensure_future(portal_here())
        return in_tree, await by, await callback_tasks[0], after

    assert loop.run(main) == (True, False, False, False)


def test_portals_for_children_gives_none_to_the_current_task(loop):
    async def main():
        with greenback.portals_for_children():
            mine = greenback.has_portal()
            child = await asyncio.ensure_future(portal_here())
        return mine, child

    assert loop.run(main) == (False, True)


def test_portals_for_tree_gives_the_task_a_portal_for_the_block_only(loop):
    async def main():
        before = greenback.has_portal()
        async with greenback.portals_for_tree():
            inside = sync_echo("inside")
            child = await asyncio.ensure_future(portal_here())
        after = greenback.has_portal()
        later = await asyncio.ensure_future(portal_here())
        return before, inside, child, after, later

    assert loop.run(main) == (False, "inside", True, False, False)


def test_portals_for_tree_in_a_task_that_has_a_portal_keeps_it(loop):
    async def main():
        await greenback.ensure_portal()
        async with greenback.portals_for_tree():
            child = await asyncio.ensure_future(portal_here())
        return child, greenback.has_portal(), sync_echo("still")

    assert loop.run(main) == (True, True, "still")


def test_the_loop_task_factory_is_restored_exactly(loop):
    async def main():
        loop = asyncio.get_running_loop()
        before = loop.get_task_factory()
        seen = []
        async with greenback.portals_for_tree():
            seen.append(loop.get_task_factory() is not before)
            with greenback.portals_for_children():  # nested scopes share one factory
                inner = loop.get_task_factory()
            seen.append(loop.get_task_factory() is inner)
        seen.append(loop.get_task_factory() is before)
        await greenback.with_portal_run_tree(asyncio.sleep, 0)
        seen.append(loop.get_task_factory() is before)
        return seen

    assert loop.run(main) == [True, True, True, True]


def test_composes_with_the_users_task_factory(loop):
    made = []

    def user_factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(user_factory)
        inside = await greenback.with_portal_run_tree(spawn, portal_here())
        outside = await asyncio.ensure_future(portal_here())
        return await inside, outside, len(made), loop.get_task_factory() is user_factory

    assert loop.run(main) == (True, False, 2, True)


def test_tree_tasks_outliving_the_scope_still_give_portals_then_release(loop):
    async def main():
        loop = asyncio.get_running_loop()
        before = loop.get_task_factory()
        go = asyncio.Event()

        async def lingering():
            await go.wait()
            # The scope has exited; this task is still a tree task.
            return await asyncio.ensure_future(portal_here())

        task = await greenback.with_portal_run_tree(spawn, lingering())
        kept = loop.get_task_factory() is not before
        go.set()
        grandchild = await task
        await asyncio.sleep(0)  # let the task's done callback run
        return kept, grandchild, loop.get_task_factory() is before

    assert loop.run(main) == (True, True, True)


def test_a_foreign_factory_installed_over_ours_is_left_alone(loop):
    async def main():
        loop = asyncio.get_running_loop()
        foreign = []

        def wrapping_factory(loop, coro, **kwargs):
            foreign.append(coro)
            return inner(loop, coro, **kwargs)

        with greenback.portals_for_children():
            inner = loop.get_task_factory()
            loop.set_task_factory(wrapping_factory)
        # We could not take ours out: the user's stays, ours passes tasks through.
        still = loop.get_task_factory() is wrapping_factory
        outside = await asyncio.ensure_future(portal_here())
        # A new scope works on top of it.
        inside = await greenback.with_portal_run_tree(spawn, portal_here())
        inside = await inside
        return still, outside, inside, loop.get_task_factory() is wrapping_factory

    assert loop.run(main) == (True, False, True, True)


def test_tree_portals_are_per_loop(loop):
    # A scope on one loop does not reach tasks of a loop in another thread.
    import threading

    async def main():
        result = {}

        def other_thread():
            async def other():
                return await asyncio.ensure_future(portal_here())

            result["other"] = asyncio.run(other())

        async def inside():
            thread = threading.Thread(target=other_thread)
            thread.start()
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            return await asyncio.ensure_future(portal_here())

        result["here"] = await greenback.with_portal_run_tree(inside)
        return result

    assert loop.run(main) == {"other": False, "here": True}


def test_tree_tasks_run_their_coroutine_in_a_portal(loop):
    async def main():
        task = await greenback.with_portal_run_tree(spawn, asyncio.sleep(0))
        coro = task.get_coro()
        await task
        return isinstance(coro, Portal)

    assert loop.run(main)


def test_errors_and_cancellation_in_tree_tasks(loop):
    class Boom(Exception):
        pass

    async def fails():
        sync_echo(None)
        raise Boom("child")

    async def hangs():
        greenback.await_(asyncio.sleep(3600))

    async def main():
        async def inside():
            failing = asyncio.ensure_future(fails())
            hanging = asyncio.ensure_future(hangs())
            await asyncio.sleep(0.01)
            hanging.cancel()
            results = await asyncio.gather(failing, hanging, return_exceptions=True)
            return [type(r).__name__ for r in results]

        return await greenback.with_portal_run_tree(inside)

    assert loop.run(main) == ["Boom", "CancelledError"]


# -- the uncancellable checkpoint around portals_for_tree ------------------------


def test_cancel_while_entering_portals_for_tree_is_deferred_to_the_block(loop):
    async def main():
        log = []
        entered = asyncio.Event()

        async def victim():
            try:
                async with greenback.portals_for_tree():
                    log.append("in block")
                    entered.set()
                    log.append(sync_echo("sync ok"))  # the deferred cancel lands on this await
                    log.append("not reached")
            except asyncio.CancelledError as exc:
                log.append(f"cancelled: {exc.args}")
                raise
            finally:
                log.append(("portal after", greenback.has_portal()))

        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0)  # victim is now in the uncancellable checkpoint
        task.cancel("stop")
        await asyncio.gather(task, return_exceptions=True)
        counts = task.cancelling() if hasattr(task, "cancelling") else None
        return log, task.cancelled(), counts

    log, cancelled, counts = loop.run(main)
    assert log == ["in block", "cancelled: ('stop',)", ("portal after", False)]
    assert cancelled
    if counts is not None:
        assert counts == 1  # deferring did not count the request twice


def test_cancel_while_leaving_portals_for_tree_is_deferred_to_the_next_await(loop):
    async def main():
        log = []
        cancel_now = asyncio.Event()

        async def victim():
            async with greenback.portals_for_tree():
                cancel_now.set()
            # Exiting took one (uncancellable) trip through the loop.
            log.append(("left", greenback.has_portal()))
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                log.append("cancelled at next await")
                raise

        task = asyncio.ensure_future(victim())
        await cancel_now.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return log, task.cancelled()

    assert loop.run(main) == ([("left", False), "cancelled at next await"], True)


def test_uncancellable_checkpoint_directly(loop):
    from greenback_asyncio import integration

    async def main():
        log = []

        async def victim():
            await integration.uncancellable_checkpoint()
            log.append("survived")
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("cancelled later")
                raise

        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0)  # victim now suspended in the checkpoint
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return log

    assert loop.run(main) == ["survived", "cancelled later"]


@needs_311
def test_timeout_around_portals_for_tree_still_works(loop):
    # asyncio.timeout relies on cancelling()/uncancel() bookkeeping: deferring
    # a cancellation must keep it right.
    async def main():
        try:
            async with asyncio.timeout(0.01):
                async with greenback.portals_for_tree():
                    sync_echo(None)
                    greenback.await_(asyncio.sleep(3600))
        except TimeoutError:
            return "timed out", asyncio.current_task().cancelling()

    assert loop.run(main) == ("timed out", 0)
