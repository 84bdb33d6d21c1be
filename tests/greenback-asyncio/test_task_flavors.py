"""ensure_portal / bestow_portal / await_ on every kind of asyncio task and loop.

Each test runs once per asyncio backend (see tests/conftest.py): the C Task
of the default loop, the pure-Python Task, user subclasses of both,
asyncio.Runner, eager tasks (C and pure-Python), and uvloop.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import sys
import types
from typing import Any, List

import pytest

import greenback

# Every asyncio backend of tests/conftest.py: every kind of asyncio task and loop.
pytestmark = pytest.mark.loop_backends(
    "asyncio",
    "asyncio-py-task",
    "asyncio-task-subclass",
    "asyncio-py-task-subclass",
    "asyncio-runner",
    "asyncio-eager",
    "asyncio-py-eager",
    "uvloop",
)

var: "contextvars.ContextVar[str]" = contextvars.ContextVar("var", default="unset")


def sync_await(aw: Any) -> Any:
    return greenback.await_(aw)


async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0.001)
    return a + b


def test_ensure_portal_and_await(loop: Any) -> None:
    async def main() -> List[Any]:
        task = asyncio.current_task()
        loop.check_task(task)
        assert not greenback.has_portal()
        await greenback.ensure_portal()
        assert greenback.has_portal()
        assert greenback.has_portal(task)
        assert asyncio.current_task() is task

        def nested() -> int:
            return sync_await(add_later(1, 2)) + sync_await(asyncio.sleep(0, result=10))

        results = [nested(), nested()]
        await greenback.ensure_portal()  # a second call changes nothing
        results.append(nested())
        # Futures and other awaitables work too.
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.001, fut.set_result, "future")
        results.append(sync_await(fut))
        return results

    assert loop.run(main) == [13, 13, 13, "future"]


def test_get_coro_repr_and_stack_after_bestow(loop: Any) -> None:
    async def main() -> None:
        reached = asyncio.Event()

        async def deep() -> None:
            reached.set()
            await asyncio.sleep(10)

        def sync_part() -> None:
            sync_await(deep())

        async def child() -> None:
            await greenback.ensure_portal()
            sync_part()

        task = asyncio.ensure_future(child())
        loop.check_task(task)
        if not loop.eager:  # an eager task has run up to sync_part() already
            assert type(task.get_coro()) is types.CoroutineType
        await reached.wait()
        coro = task.get_coro()
        assert type(coro) is not types.CoroutineType
        assert greenback.has_portal(task)
        # What asyncio (and debuggers) show of the task does not crash, and
        # still points at the user's code (named greenback_shim() as in
        # greenback 1.3.0; see tests/clients/test_task_repr.py).
        assert f"coro=<greenback_shim() running at {child.__code__.co_filename}:" in repr(task)
        stack = task.get_stack()
        assert any(frame.f_code.co_name == "child" for frame in stack)
        out = io.StringIO()
        task.print_stack(file=out)
        assert "child" in out.getvalue()
        # 3.14's call graphs walk task.get_coro() too; they take only tasks
        # that are C Futures (a _PyTask is refused with a TypeError, without
        # greenback too).
        if sys.version_info >= (3, 14) and isinstance(task, asyncio.Future):
            graph = asyncio.format_call_graph(task)  # type: ignore[attr-defined]
            assert ".child()" in graph.splitlines()[-1]
        assert task in asyncio.all_tasks()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # And once it is done.
        repr(task)
        task.get_stack()
        task.print_stack(file=io.StringIO())

    loop.run(main)


def test_bestow_on_other_tasks(loop: Any) -> None:
    async def main() -> List[Any]:
        results: List[Any] = []
        event = asyncio.Event()

        async def waiter(tag: str) -> None:
            await event.wait()
            results.append((tag, greenback.has_portal(), sync_await(add_later(tag, "!"))))

        async def not_started(tag: str) -> None:
            results.append((tag, greenback.has_portal(), sync_await(add_later(tag, "!"))))

        sleeping = asyncio.ensure_future(waiter("sleeping"))
        rescheduled = asyncio.ensure_future(waiter("rescheduled"))
        await asyncio.sleep(0.001)
        assert not greenback.has_portal(sleeping)
        greenback.bestow_portal(sleeping)
        greenback.bestow_portal(sleeping)  # idempotent
        assert greenback.has_portal(sleeping)
        event.set()  # both are scheduled to wake up now...
        greenback.bestow_portal(rescheduled)  # ...one already was
        fresh = asyncio.ensure_future(not_started("fresh"))
        if not loop.eager:  # an eager task has run its first step already
            greenback.bestow_portal(fresh)
            await asyncio.gather(sleeping, rescheduled, fresh)
        else:
            await asyncio.gather(sleeping, rescheduled, return_exceptions=True)
            with pytest.raises(RuntimeError):
                await fresh
        return sorted(results)

    expected = [("fresh", True, "fresh!"), ("rescheduled", True, "rescheduled!"), ("sleeping", True, "sleeping!")]
    if loop.eager:
        expected = expected[1:]
    assert loop.run(main) == expected


def test_bestow_on_current_task_needs_a_yield(loop: Any) -> None:
    async def main() -> None:
        greenback.bestow_portal(asyncio.current_task())
        assert not greenback.has_portal()
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="yield"):
            sync_await(coro)
        await asyncio.sleep(0)
        assert greenback.has_portal()
        sync_await(asyncio.sleep(0))

    loop.run(main)


def test_gather_of_portal_tasks(loop: Any) -> None:
    async def worker(i: int) -> int:
        await greenback.ensure_portal()
        total = 0
        for _ in range(3):
            total += sync_await(add_later(i, 0))
        return total

    async def main() -> Any:
        # gather() makes a task per coroutine; each gets its own portal.
        first = await asyncio.gather(*(worker(i) for i in range(20)))
        # gather() awaited from sync code, in a portal.
        await greenback.ensure_portal()
        second = sync_await(asyncio.gather(*(worker(i) for i in range(20))))
        return first, second

    first, second = loop.run(main)
    assert first == second == [3 * i for i in range(20)]


def test_errors_from_portal_tasks(loop: Any) -> None:
    async def fails() -> None:
        await greenback.ensure_portal()
        sync_await(asyncio.sleep(0))
        raise KeyError("inside")

    async def main() -> None:
        task = asyncio.ensure_future(fails())
        with pytest.raises(KeyError, match="inside"):
            await task
        assert isinstance(task.exception(), KeyError)
        results = await asyncio.gather(fails(), add_later(1, 1), return_exceptions=True)
        assert isinstance(results[0], KeyError) and results[1] == 2

    loop.run(main)


def test_with_portal_run_and_run_sync(loop: Any) -> None:
    async def main() -> Any:
        def sync_fn(x: int) -> int:
            return sync_await(add_later(x, 1))

        async def async_fn(x: int) -> int:
            return sync_fn(x) * 2

        a = await greenback.with_portal_run_sync(sync_fn, 1)
        b = await greenback.with_portal_run(async_fn, 1)
        assert not greenback.has_portal()
        return a, b

    assert loop.run(main) == (2, 4)


def test_contextvars_follow_the_task(loop: Any) -> None:
    async def child(value: str) -> str:
        var.set(value)
        await greenback.ensure_portal()

        def sync_part() -> str:
            sync_await(asyncio.sleep(0.001))
            seen = var.get()
            var.set(seen + "+sync")
            return seen

        assert sync_part() == value
        await asyncio.sleep(0)
        return var.get()

    async def main() -> Any:
        var.set("main")
        results = await asyncio.gather(child("a"), child("b"))
        assert var.get() == "main"
        return results

    assert loop.run(main) == ["a+sync", "b+sync"]


def test_many_awaits_in_one_task(loop: Any) -> None:
    async def main() -> int:
        await greenback.ensure_portal()
        total = 0
        for i in range(2000):
            total += sync_await(asyncio.sleep(0, result=i))
        return total

    assert loop.run(main) == sum(range(2000))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is new in Python 3.11")
def test_task_group(loop: Any) -> None:
    async def child(i: int) -> int:
        await greenback.ensure_portal()
        return sync_await(add_later(i, 100))  # type: ignore[no-any-return]

    async def main() -> Any:
        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            tasks = [tg.create_task(child(i)) for i in range(5)]
        first = [t.result() for t in tasks]

        # A TaskGroup entered and exited from sync code, through the portal.
        await greenback.ensure_portal()

        def sync_part() -> List[int]:
            with greenback.async_context(asyncio.TaskGroup()) as tg:  # type: ignore[attr-defined]
                inner = [tg.create_task(child(i)) for i in range(3)]
            return [t.result() for t in inner]

        second = sync_part()

        # A failing child cancels its siblings, which are suspended in await_.
        cleaned: List[int] = []

        async def stuck(i: int) -> None:
            await greenback.ensure_portal()
            try:
                sync_await(asyncio.sleep(10))
            finally:
                cleaned.append(i)

        async def boom() -> None:
            await asyncio.sleep(0.01)
            raise ValueError("boom")

        with pytest.raises(BaseException) as info:
            async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
                for i in range(3):
                    tg.create_task(stuck(i))
                tg.create_task(boom())
        assert info.group_contains(ValueError) if hasattr(info, "group_contains") else True
        assert sorted(cleaned) == [0, 1, 2]
        return first, second

    assert loop.run(main) == ([100, 101, 102, 103, 104], [100, 101, 102])


# -- cancellation -------------------------------------------------------------------


def test_cancel_a_task_suspended_in_await(loop: Any) -> None:
    async def main() -> List[str]:
        log: List[str] = []
        reached = asyncio.Event()

        async def awaited() -> None:
            reached.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError as exc:
                log.append(f"awaited coroutine got CancelledError{exc.args}")
                raise

        def sync_part() -> None:
            try:
                sync_await(awaited())
            finally:
                log.append("sync finally")

        async def victim() -> None:
            await greenback.ensure_portal()
            try:
                sync_part()
            finally:
                log.append("task finally")

        task = asyncio.ensure_future(victim())
        await reached.wait()
        task.cancel("stop")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        return log

    log = loop.run(main)
    assert log == ["awaited coroutine got CancelledError('stop',)", "sync finally", "task finally"]


def test_cancellation_caught_in_sync_code(loop: Any) -> None:
    async def main() -> Any:
        reached = asyncio.Event()

        def sync_part() -> str:
            try:
                reached.set()
                sync_await(asyncio.sleep(10))
            except asyncio.CancelledError:
                return "swallowed"
            return "not cancelled"  # pragma: no cover

        async def victim() -> str:
            await greenback.ensure_portal()
            result = sync_part()
            sync_await(asyncio.sleep(0))  # the portal still works afterwards
            return result

        task = asyncio.ensure_future(victim())
        await reached.wait()
        task.cancel()
        return await task

    assert loop.run(main) == "swallowed"


def test_cancel_a_bestowed_task(loop: Any) -> None:
    """A task given a portal by another task and cancelled before it runs
    again gets the CancelledError where it is suspended; one cancelled before
    it ever started never runs."""

    async def main() -> Any:
        log: List[str] = []
        event = asyncio.Event()

        async def sleeper() -> None:
            try:
                await event.wait()
            finally:
                log.append("sleeper finally")

        async def never_runs() -> None:
            log.append("never_runs ran")  # pragma: no cover

        sleeping = asyncio.ensure_future(sleeper())
        await asyncio.sleep(0)
        greenback.bestow_portal(sleeping)
        sleeping.cancel()
        if not loop.eager:
            fresh = asyncio.ensure_future(never_runs())
            greenback.bestow_portal(fresh)
            fresh.cancel()
            results = await asyncio.gather(sleeping, fresh, return_exceptions=True)
            assert fresh.cancelled()
        else:
            results = await asyncio.gather(sleeping, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert sleeping.cancelled()
        return log

    assert loop.run(main) == ["sleeper finally"]


def test_wait_for_timeout_inside_await(loop: Any) -> None:
    async def main() -> Any:
        await greenback.ensure_portal()

        def sync_part() -> str:
            try:
                sync_await(asyncio.wait_for(asyncio.sleep(10), 0.01))
            except asyncio.TimeoutError:
                return "timed out"
            return "no timeout"  # pragma: no cover

        async def with_timeout() -> str:
            await greenback.ensure_portal()
            return sync_await(asyncio.wait_for(asyncio.sleep(10, result="x"), 0.01))

        first = sync_part()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(with_timeout(), 0.01)
        return first

    assert loop.run(main) == "timed out"


def test_debug_mode(loop: Any) -> None:
    """asyncio's debug mode inspects task coroutines (creation tracebacks,
    reprs, slow-callback reports): a portal in their place is fine."""
    if loop.name == "asyncio-runner":
        pytest.skip("covered by the other backends")

    async def child() -> str:
        await greenback.ensure_portal()
        return sync_await(asyncio.sleep(0.001, result="ok"))  # type: ignore[no-any-return]

    async def main() -> Any:
        asyncio.get_running_loop().set_debug(True)
        await greenback.ensure_portal()
        task = asyncio.ensure_future(child())
        result = await task
        repr(task)
        return result, sync_await(asyncio.sleep(0, result=1))

    assert loop.run(main) == ("ok", 1)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout() is new in Python 3.11")
def test_asyncio_timeout_around_and_inside_sync_code(loop: Any) -> None:
    """asyncio.timeout() cancels the current task and turns that into
    TimeoutError: it works entered from async code around sync code that
    awaits, and entered from the sync code itself."""

    async def main() -> List[str]:
        await greenback.ensure_portal()
        log: List[str] = []

        def sync_awaits_long() -> None:
            try:
                sync_await(asyncio.sleep(10))
            finally:
                log.append("sync finally")

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):  # type: ignore[attr-defined]
                sync_awaits_long()

        def sync_with_timeout() -> str:
            try:
                with greenback.async_context(asyncio.timeout(0.01)):  # type: ignore[attr-defined]
                    sync_awaits_long()
            except TimeoutError:
                return "timed out"
            return "no timeout"  # pragma: no cover

        log.append(sync_with_timeout())
        # The task is not left cancelled: it goes on normally.
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        log.append(sync_await(asyncio.sleep(0, result="still fine")))
        return log

    assert loop.run(main) == ["sync finally", "sync finally", "timed out", "still fine"]


def test_cancelled_right_after_giving_itself_a_portal(loop: Any) -> None:
    """bestow_portal() on the current task, then a cancellation at the very
    yield that starts the portal: delivered inside the portal, where the task
    can handle it and go on using the portal."""

    async def main() -> List[str]:
        log: List[str] = []
        task = asyncio.current_task()
        greenback.bestow_portal(task)
        task.cancel()  # type: ignore[union-attr]
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            log.append(f"cancelled, has_portal={greenback.has_portal()}")
            if sys.version_info >= (3, 11):
                task.uncancel()  # type: ignore[union-attr]
        log.append(sync_await(asyncio.sleep(0, result="portal works")))
        return log

    assert loop.run(main) == ["cancelled, has_portal=True", "portal works"]


@pytest.mark.skipif(
    sys.version_info < (3, 14), reason="up to Python 3.13 asyncio.current_task() reports pure-Python tasks too"
)
@pytest.mark.parametrize("api", ["ensure_portal", "await_"])
def test_pure_python_task_that_asyncio_cannot_see_gets_an_error_naming_the_cause(api: str) -> None:
    # Without pure_python_bookkeeping (tests/conftest.py): the C current_task() reports
    # no task inside a _PyTask (python/cpython#131709), so greenback cannot
    # find one either; the error says why instead of "outside any task".
    py_task: Any = asyncio.tasks._PyTask  # type: ignore[attr-defined]

    async def main() -> None:
        assert asyncio.current_task() is None
        if api == "ensure_portal":
            await greenback.ensure_portal()
        else:
            sync_await(asyncio.sleep(0))

    loop = asyncio.new_event_loop()
    loop.set_task_factory(lambda loop, coro, **kwargs: py_task(coro, loop=loop, **kwargs))
    try:
        with pytest.raises(RuntimeError) as info:
            loop.run_until_complete(main())
    finally:
        loop.close()
    message = str(info.value)
    assert f"greenback.{api}() was called in <Task" in message
    assert "a pure-Python asyncio Task" in message
    assert "https://github.com/python/cpython/issues/131709" in message
    assert "asyncio.current_task = asyncio.tasks.current_task = asyncio.tasks._py_current_task" in message
