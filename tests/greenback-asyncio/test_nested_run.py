"""Re-entrant asyncio.run() and loop.run_until_complete(): greenback_asyncio.enable_nested_run()."""

from __future__ import annotations

import asyncio
import asyncio.runners
import contextvars
import sys

import pytest

import greenback
import greenback_asyncio


@pytest.fixture
def nested():
    """Nested runs enabled for the test, and disabled (and checked restored) after."""
    saved = _originals()
    greenback_asyncio.enable_nested_run()
    try:
        yield
    finally:
        greenback_asyncio.disable_nested_run()
        assert _originals() == saved


def _originals():
    found = {"asyncio.run": asyncio.run, "asyncio.runners.run": asyncio.runners.run}
    found["BaseEventLoop"] = vars(asyncio.BaseEventLoop).get("run_until_complete")
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        pass
    else:
        found["uvloop.Loop own"] = "run_until_complete" in vars(uvloop.Loop)
        found["uvloop.Loop"] = uvloop.Loop.run_until_complete
    return found


# -- a "sync library" that runs its own event loop, as many do ------------------


async def fetch(value, delay=0):
    await asyncio.sleep(delay)
    return value


def library_call(value):
    """Sync API of a library that is async inside."""
    return asyncio.run(fetch(value))


def library_run_until_complete(value):
    """The older idiom: run_until_complete on the current event loop."""
    return asyncio.get_event_loop().run_until_complete(fetch(value))


def test_sync_library_calling_asyncio_run_from_async_code(loop, nested):
    async def main():
        await greenback.ensure_portal()
        return library_call("lib")

    assert loop.run(main) == "lib"


def test_run_until_complete_on_the_running_loop(loop, nested):
    async def main():
        await greenback.ensure_portal()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        loop.call_later(0.001, future.set_result, "future")
        task = asyncio.ensure_future(fetch("task"))
        return library_run_until_complete("coro"), loop.run_until_complete(future), loop.run_until_complete(task)

    assert loop.run(main) == ("coro", "future", "task")


def test_nested_three_deep(loop, nested):
    def level(n):
        async def body():
            await asyncio.sleep(0)
            if n == 0:
                return [asyncio.current_task() is not None]
            return [n] + level(n - 1)

        if n % 2:
            return asyncio.run(body())
        return asyncio.get_event_loop().run_until_complete(body())

    async def main():
        await greenback.ensure_portal()
        return level(3)

    assert loop.run(main) == [3, 2, 1, True]


def test_other_tasks_keep_running_while_one_waits_in_a_nested_run(loop, nested):
    async def main():
        await greenback.ensure_portal()
        ticks = []

        async def ticker():
            for i in range(3):
                ticks.append(i)
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        result = asyncio.run(fetch("slow", 0.01))
        await t
        return result, ticks

    assert loop.run(main) == ("slow", [0, 1, 2])


def test_exceptions_propagate_as_with_await(loop, nested):
    class Boom(Exception):
        pass

    async def fails():
        await asyncio.sleep(0)
        raise Boom("inner")

    async def main():
        await greenback.ensure_portal()
        with pytest.raises(Boom, match="inner"):
            asyncio.run(fails())
        with pytest.raises(Boom, match="inner"):
            asyncio.get_running_loop().run_until_complete(fails())
        return "ok"

    assert loop.run(main) == "ok"


def test_cancellation_propagates_into_the_nested_run(loop, nested):
    async def main():
        log = []

        async def inner():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("inner cancelled")
                raise

        async def outer():
            await greenback.ensure_portal()
            try:
                asyncio.run(inner())
            except asyncio.CancelledError:
                log.append("outer saw CancelledError")
                raise

        task = asyncio.ensure_future(outer())
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return log, task.cancelled()

    assert loop.run(main) == (["inner cancelled", "outer saw CancelledError"], True)


def test_context_variables_are_the_calling_tasks(loop, nested):
    var = contextvars.ContextVar("var")

    async def reads():
        return var.get()

    async def main():
        await greenback.ensure_portal()
        var.set("caller")
        return asyncio.run(reads())

    assert loop.run(main) == "caller"


def test_in_a_task_without_a_portal_the_error_names_the_fix(loop, nested):
    async def main():
        coro = fetch(1)
        with pytest.raises(RuntimeError, match=r"ensure_portal\(\)") as info:
            asyncio.run(coro)
        # The coroutine was closed, so no "never awaited" warning.
        assert coro.cr_frame is None
        with pytest.raises(RuntimeError, match="loop.run_until_complete"):
            asyncio.get_running_loop().run_until_complete(fetch(2))
        return str(info.value)

    message = loop.run(main)
    assert "asyncio.run() was called from sync code while this thread's event loop is running" in message
    assert "with_portal_run_sync" in message


def test_from_a_loop_callback_the_error_says_so(loop, nested):
    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def callback():
            try:
                asyncio.run(fetch(1))
            except RuntimeError as exc:
                done.set_result(str(exc))

        loop.call_soon(callback)
        return await done

    assert "outside any task" in loop.run(main)


def test_with_no_running_loop_they_are_stock(loop, nested):
    assert asyncio.run(fetch("plain")) == "plain"
    new_loop = loop.new_loop()
    try:
        assert new_loop.run_until_complete(fetch("plain loop")) == "plain loop"
    finally:
        new_loop.close()


def test_run_until_complete_of_another_loop_is_stock(loop, nested):
    async def main():
        await greenback.ensure_portal()
        other = asyncio.new_event_loop()
        coro = fetch(1)
        try:
            with pytest.raises(RuntimeError, match="another loop is running"):
                other.run_until_complete(coro)
        finally:
            coro.close()
            other.close()
        return "ok"

    assert loop.run(main) == "ok"


def stock_run_error(main):
    """What the stock asyncio.run(main) raises, with no loop running."""
    with pytest.raises(Exception) as info:
        asyncio.runners.run._greenback_original(main)  # type: ignore[attr-defined]
    return info.value


def test_non_coroutine_is_rejected_like_asyncio_run(loop, nested):
    # A ValueError before Python 3.14, a TypeError since (when asyncio.run()
    # began to take any awaitable).
    stock = stock_run_error(42)
    assert isinstance(stock, ValueError if sys.version_info < (3, 14) else TypeError)

    async def main():
        await greenback.ensure_portal()
        with pytest.raises(type(stock)) as info:
            asyncio.run(42)  # type: ignore[arg-type]
        return str(info.value)

    assert loop.run(main) == str(stock)


class Awaitable:
    """An awaitable that is no coroutine: asyncio.run() takes it since 3.14."""

    def __await__(self):
        return asyncio.sleep(0, "awaited").__await__()


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="asyncio.run() takes any awaitable since Python 3.14")
def test_awaitable_that_is_no_coroutine_is_rejected_like_asyncio_run_before_314(loop, nested):
    stock = stock_run_error(Awaitable())

    async def main():
        await greenback.ensure_portal()
        with pytest.raises(ValueError) as info:
            asyncio.run(Awaitable())  # type: ignore[arg-type]
        return str(info.value).split(" got ")[0]

    assert loop.run(main) == str(stock).split(" got ")[0]


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio.run() takes any awaitable only since Python 3.14")
def test_awaitable_that_is_no_coroutine_runs_like_asyncio_run_since_314(loop, nested):
    assert asyncio.runners.run._greenback_original(Awaitable()) == "awaited"  # type: ignore[attr-defined]

    async def main():
        await greenback.ensure_portal()
        return asyncio.run(Awaitable())  # type: ignore[arg-type]

    assert loop.run(main) == "awaited"


def test_with_portals_everywhere(loop, nested):
    # greenback_asyncio.run gives every task a portal: nothing to add anywhere.
    async def main():
        first = library_call("a")
        second = await asyncio.ensure_future(asyncio.sleep(0, None))
        child = await asyncio.gather(*(asyncio.ensure_future(fetch_via_library(i)) for i in range(3)))
        return first, second, child

    async def fetch_via_library(i):
        return library_call(i)

    assert greenback_asyncio.run(main(), loop_factory=loop.new_loop) == ("a", None, [0, 1, 2])


def test_enable_is_idempotent_and_disable_restores_exactly(loop):
    saved = _originals()
    assert not greenback_asyncio.nested_run_enabled()
    greenback_asyncio.enable_nested_run()
    patched = _originals()
    greenback_asyncio.enable_nested_run()
    assert _originals() == patched
    assert greenback_asyncio.nested_run_enabled()
    assert patched["asyncio.run"] is not saved["asyncio.run"]
    greenback_asyncio.disable_nested_run()
    greenback_asyncio.disable_nested_run()
    assert not greenback_asyncio.nested_run_enabled()
    assert _originals() == saved

    async def main():
        await greenback.ensure_portal()
        coro = fetch(1)
        try:
            with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
                asyncio.run(coro)
        finally:
            coro.close()
        return "stock again"

    assert loop.run(main) == "stock again"
