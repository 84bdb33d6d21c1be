"""Eager tasks (Python 3.12+): their first step runs inside create_task, in the creating task.

The portal engine tracks the greenlet that steps a portal step by step because
of them: an eager task's first step is driven by whoever called create_task,
which may be a portal's worker greenlet (sync code that called await_, or
created the task directly), and later steps by the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import sys

import pytest

import greenback
import greenback_asyncio

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks arrived in Python 3.12")


def sync_echo(value):
    return greenback.await_(asyncio.sleep(0, value))


def eager(loop):
    loop.set_task_factory(asyncio.eager_task_factory)


@functools.lru_cache(maxsize=None)
def _uvloop_eager_factory_problem() -> "str | None":
    """Why ``asyncio.eager_task_factory`` does not start tasks eagerly on uvloop
    here, or None if it does. Checked without greenback, on a loop of its own."""
    import uvloop

    order = []

    async def child() -> None:
        order.append("child's first step")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # for child only
        coro = child()
        try:
            task = loop.create_task(coro)
        except TypeError:
            coro.close()
            raise
        order.append("create_task returned")
        await task

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    except TypeError as exc:
        return (
            f"uvloop {uvloop.__version__} passes eager_start= to task factories, which "
            f"asyncio.eager_task_factory does not accept before Python 3.14 ({exc}; fails without greenback too)"
        )
    finally:
        loop.close()
    if order != ["child's first step", "create_task returned"]:
        return (
            f"uvloop {uvloop.__version__}'s Loop.create_task() always passes eager_start (None unless given) "
            "to the task factory, which overrides asyncio.eager_task_factory's default eager_start=True on "
            "Python 3.14+: no task starts eagerly, with or without greenback (uvloop's eager_start support "
            "came with MagicStack/uvloop#748)"
        )
    return None


@pytest.fixture
def eager_loop(loop):
    """``loop``, for tests that install asyncio.eager_task_factory (skipped where uvloop cannot run it)."""
    if loop.name == "uvloop":
        problem = _uvloop_eager_factory_problem()
        if problem is not None:
            pytest.skip(problem)
    return loop


def test_ensure_portal_in_an_eager_tasks_first_step(eager_loop):
    async def child(log):
        log.append("first step")  # runs inside create_task
        await greenback.ensure_portal()
        log.append("after portal")
        return sync_echo("child")

    async def main():
        log = []
        task = asyncio.ensure_future(child(log))
        log.append("created")
        return await task, log

    assert eager_loop.run(main, setup=eager) == ("child", ["first step", "created", "after portal"])


def test_ensure_portal_in_an_eager_task_created_from_sync_code_in_a_portal(eager_loop):
    async def child():
        await greenback.ensure_portal()
        return sync_echo("child")

    def sync_spawn():
        # Sync code in a portal creates an eager task: its first step runs
        # here, in this portal's worker greenlet.
        task = asyncio.get_running_loop().create_task(child())
        return greenback.await_(task)

    async def main():
        await greenback.ensure_portal()
        return sync_spawn()

    assert eager_loop.run(main, setup=eager) == "child"


def test_eager_child_of_a_portal_task_has_no_portal_until_it_asks(eager_loop):
    # The child's first step runs in the creating task's worker greenlet; the
    # creator's portal must not count as the child's.
    async def child(log):
        log.append(("first step", greenback.has_portal()))
        await greenback.ensure_portal()
        log.append(("after ensure_portal", greenback.has_portal()))
        return sync_echo("child")

    async def main():
        await greenback.ensure_portal()
        log = []
        task = asyncio.ensure_future(child(log))
        result = await task
        return result, log, sync_echo("main")

    assert eager_loop.run(main, setup=eager) == (
        "child",
        [("first step", False), ("after ensure_portal", True)],
        "main",
    )


def test_bestow_portal_on_an_eager_task(eager_loop):
    async def child(started):
        started.append(True)
        await asyncio.sleep(0)
        return sync_echo("bestowed")

    async def main():
        started = []
        task = asyncio.ensure_future(child(started))
        assert started  # its first step already ran
        greenback.bestow_portal(task)
        return await task

    assert eager_loop.run(main, setup=eager) == "bestowed"


def test_bestow_portal_on_an_eager_task_that_finished_eagerly(eager_loop):
    async def quick():
        return "done"

    async def main():
        task = asyncio.ensure_future(quick())
        assert task.done()
        greenback.bestow_portal(task)  # nothing to do, as with greenback 1.3.0
        assert greenback.has_portal(task) is False
        return task.result()

    assert eager_loop.run(main, setup=eager) == "done"


def test_tree_portals_with_the_eager_task_factory(eager_loop):
    async def grandchild():
        return sync_echo("grandchild")  # awaits in its (eager) first step

    async def child(log):
        # The first step runs eagerly, already in a portal: await_ right away.
        log.append(sync_echo("child first step"))
        # A task created during the eager first step is a tree task too.
        log.append(await asyncio.ensure_future(grandchild()))
        return "child"

    async def main():
        log = []
        result = await asyncio.ensure_future(child(log))
        return result, log

    async def outer():
        loop = asyncio.get_running_loop()
        tree = await greenback.with_portal_run_tree(main)
        outside = asyncio.ensure_future(asyncio.sleep(0))
        has = greenback.has_portal(outside)
        await outside
        return tree, has, loop.get_task_factory() is asyncio.eager_task_factory

    assert eager_loop.run(outer, setup=eager) == (("child", ["child first step", "grandchild"]), False, True)


def test_eager_tree_task_created_from_sync_code_via_await_(eager_loop):
    async def child():
        first = sync_echo("first")  # eager step, driven by the creator's worker
        await asyncio.sleep(0)
        second = sync_echo("second")  # driven by the loop
        return first, second

    def sync_code():
        loop = asyncio.get_running_loop()
        direct = loop.create_task(child())  # created by sync code in a portal
        via_await = greenback.await_(asyncio.gather(child(), child()))
        return greenback.await_(direct), via_await

    async def main():
        return sync_code()

    async def outer():
        return await greenback.with_portal_run_tree(main)

    assert eager_loop.run(outer, setup=eager) == (
        ("first", "second"),
        [("first", "second"), ("first", "second")],
    )


def test_eager_task_finishing_in_its_first_step_in_a_portal(eager_loop):
    async def child():
        # Uses the portal but never suspends: done inside create_task.
        return greenback.await_(_no_suspend())

    async def _no_suspend():
        return "never suspended"

    async def main():
        task = asyncio.ensure_future(child())
        assert task.done()
        return task.result()

    def setup(loop):
        loop.set_task_factory(greenback_asyncio.PortalTaskFactory(asyncio.eager_task_factory))

    assert eager_loop.run(main, setup=setup) == "never suspended"


def test_portal_task_factory_over_the_eager_factory(eager_loop):
    async def child(tag):
        value = sync_echo(tag)
        await asyncio.sleep(0)
        return value, sync_echo(tag)

    async def main():
        order = []
        t = asyncio.ensure_future(child("a"))
        order.append("created")
        results = await asyncio.gather(t, child("b"))
        return results, order

    def setup(loop):
        greenback_asyncio.install_portal_task_factory(loop)
        loop.set_task_factory(greenback_asyncio.PortalTaskFactory(asyncio.eager_task_factory))

    assert eager_loop.run(main, setup=setup) == ([("a", "a"), ("b", "b")], ["created"])


def test_eager_start_keyword(loop):
    # Task(..., eager_start=True) bypasses task factories; a portal given by
    # wrapping the coroutine in the factory chain still works, and
    # ensure_portal in the eager step does too.
    async def child():
        await greenback.ensure_portal()
        return sync_echo("eager_start")

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.Task(child(), loop=loop, eager_start=True)
        return await task

    assert loop.run(main) == "eager_start"


def test_cancelling_an_eager_tree_task_suspended_in_await_(eager_loop):
    async def child(log):
        try:
            greenback.await_(asyncio.sleep(3600))
        except asyncio.CancelledError:
            log.append("cancelled in await_")
            raise

    async def main():
        log = []
        task = asyncio.ensure_future(child(log))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return log, task.cancelled()

    async def outer():
        return await greenback.with_portal_run_tree(main)

    assert eager_loop.run(outer, setup=eager) == (["cancelled in await_"], True)


needs_eager_start_keyword = pytest.mark.skipif(
    sys.version_info < (3, 14), reason="create_task(eager_start=...) is new in Python 3.14"
)


@needs_eager_start_keyword
def test_create_task_with_eager_start_in_a_tree(loop):
    # No eager factory: the keyword alone starts the child inside
    # create_task, already a tree task, so it can use its portal at once.
    async def child(log):
        log.append("first step")
        value = sync_echo("child")  # through the portal, from the first step
        await asyncio.sleep(0)
        return value + sync_echo("")

    async def main():
        log = []
        task = asyncio.create_task(child(log), eager_start=True)
        log.append("created")
        lazy = asyncio.create_task(child(log), eager_start=False)
        log.append("created lazy")
        return await task, await lazy, log

    async def outer():
        return await greenback.with_portal_run_tree(main)

    assert loop.run(outer) == ("child", "child", ["first step", "created", "created lazy", "first step"])


@needs_eager_start_keyword
@pytest.mark.parametrize("inner", ["default", "eager factory"])
def test_portal_task_factory_passes_eager_start_on(loop, inner):
    async def child(log, tag):
        log.append(tag)
        return sync_echo(tag)  # through its portal, from the first step

    async def main():
        log = []
        eager = asyncio.create_task(child(log, "eager"), eager_start=True)
        log.append("created eager")
        lazy = asyncio.create_task(child(log, "lazy"), eager_start=False)
        log.append("created lazy")
        return await eager, await lazy, log

    def setup(loop):
        if inner == "eager factory":
            loop.set_task_factory(asyncio.eager_task_factory)
        greenback_asyncio.install_portal_task_factory(loop)

    assert loop.run(main, setup=setup) == ("eager", "lazy", ["eager", "created eager", "created lazy", "lazy"])
