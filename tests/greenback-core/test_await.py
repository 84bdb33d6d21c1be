"""await_(): what it accepts, and how it fails, like native await."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import types
import warnings

import pytest
import sniffio

import greenback


async def value_after_checkpoint(value, checkpoint):
    await checkpoint()
    return value


# -- without a portal -------------------------------------------------------------


def assert_names_the_fix(exc):
    message = str(exc)
    assert "must create a greenback portal" in message
    assert "ensure_portal" in message


def test_await_outside_any_loop_raises_runtime_error_naming_ensure_portal():
    async def coro():
        return 1

    with pytest.raises(RuntimeError) as info:
        greenback.await_(coro())
    assert_names_the_fix(info.value)


def test_await_in_a_thread_with_no_loop_raises_runtime_error():
    errors = []

    def thread_main():
        try:
            greenback.await_(asyncio.sleep(0))
        except BaseException as exc:  # noqa: B036 - reported to the test thread
            errors.append(exc)

    thread = threading.Thread(target=thread_main)
    thread.start()
    thread.join()
    # A RuntimeError, and sniffio's AsyncLibraryNotFoundError as with greenback 1.3.0.
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert isinstance(errors[0], sniffio.AsyncLibraryNotFoundError)
    assert_names_the_fix(errors[0])


async def test_await_in_a_task_without_a_portal_raises_runtime_error_naming_ensure_portal(checkpoint):
    with pytest.raises(RuntimeError) as info:
        greenback.await_(checkpoint())
    assert_names_the_fix(info.value)


def test_await_in_an_asyncio_callback_raises_runtime_error_naming_ensure_portal():
    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def callback():
            try:
                greenback.await_(asyncio.sleep(0))
            except BaseException as exc:  # noqa: B036 - checked below
                done.set_result(exc)
            else:  # pragma: no cover
                done.set_result(None)

        loop.call_soon(callback)
        return await done

    exc = asyncio.run(main())
    # No task, so no async library: as with no loop at all (see above).
    assert isinstance(exc, RuntimeError) and isinstance(exc, sniffio.AsyncLibraryNotFoundError)
    assert_names_the_fix(exc)


async def test_await_right_after_bestow_portal_on_self_says_to_yield_to_the_loop(loop, checkpoint):
    greenback.bestow_portal(loop.current_task())
    with pytest.raises(RuntimeError, match="must yield to the event loop") as info:
        greenback.await_(checkpoint())
    # ... and how: the loop's own sleep(0), or ensure_portal.
    assert f"{loop.library}.sleep(0)" in str(info.value)
    await checkpoint()
    assert greenback.await_(value_after_checkpoint("ok", checkpoint)) == "ok"


@pytest.mark.parametrize("state", ["no portal", "bestowed, not yet usable"])
async def test_a_coroutine_given_to_a_failing_await_is_closed_without_a_warning(loop, checkpoint, state):
    async def never_awaited():
        await checkpoint()  # pragma: no cover

    if state != "no portal":
        greenback.bestow_portal(loop.current_task())
    coro = never_awaited()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError):
            greenback.await_(coro)
        assert coro.cr_frame is None  # closed
        del coro
        gc.collect()
    assert [w for w in caught if "never awaited" in str(w.message)] == []


def test_a_coroutine_given_to_await_outside_any_loop_is_closed_without_a_warning():
    async def never_awaited():
        pass  # pragma: no cover

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError):
            greenback.await_(never_awaited())
        gc.collect()
    assert [w for w in caught if "never awaited" in str(w.message)] == []


def test_the_never_awaited_warning_check_can_fail():
    # The check above would notice an unclosed coroutine: this one is not closed.
    async def never_awaited():
        pass  # pragma: no cover

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        never_awaited()
        gc.collect()
    assert [w for w in caught if "never awaited" in str(w.message)] != []


# -- what can be awaited ------------------------------------------------------------


def native_await_error(obj):
    async def native():
        await obj

    coro = native()
    try:
        coro.send(None)
    except TypeError as exc:
        return exc
    finally:
        coro.close()
    raise AssertionError(f"native await accepted {obj!r}")  # pragma: no cover


@pytest.mark.parametrize("obj", [42, "text", None, [1]], ids=["int", "str", "None", "list"])
async def test_await_of_a_non_awaitable_raises_type_error_like_native_await(obj):
    await greenback.ensure_portal()
    native = native_await_error(obj)
    with pytest.raises(TypeError) as info:
        greenback.await_(obj)
    assert str(info.value) == str(native)


# CPython 3.14 rephrased native await's error.
INT_NOT_AWAITABLE = (
    "'int' object can't be awaited" if sys.version_info >= (3, 14) else "object int can't be used in 'await' expression"
)


async def test_await_42_says_int_cant_be_awaited_in_this_pythons_words():
    await greenback.ensure_portal()
    native = native_await_error(42)
    assert str(native) == INT_NOT_AWAITABLE
    with pytest.raises(TypeError) as info:
        greenback.await_(42)
    assert str(info.value) == INT_NOT_AWAITABLE


async def test_await_of_an_object_whose_await_returns_a_non_iterator_raises_type_error():
    class Bad:
        def __await__(self):
            return 5

    await greenback.ensure_portal()
    native = native_await_error(Bad())
    with pytest.raises(TypeError) as info:
        greenback.await_(Bad())
    assert str(info.value) == str(native)


async def test_await_of_an_object_whose_await_returns_a_coroutine_raises_type_error_like_native_await():
    async def inner():
        pass

    class Bad:
        def __await__(self):
            return inner()

    await greenback.ensure_portal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # native await drops inner() unawaited
        native = native_await_error(Bad())
        gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TypeError) as info:
            greenback.await_(Bad())
        gc.collect()
    assert str(info.value) == str(native)
    assert [str(w.message) for w in caught] == []  # greenback closes inner()


async def test_await_returns_the_value_of_a_coroutine(checkpoint):
    await greenback.ensure_portal()
    assert greenback.await_(value_after_checkpoint({"a": 1}, checkpoint)) == {"a": 1}


async def test_await_accepts_an_object_whose_await_is_a_generator(checkpoint):
    class Awaitable:
        def __await__(self):
            yield from checkpoint().__await__()
            return "from generator"

    await greenback.ensure_portal()
    assert greenback.await_(Awaitable()) == "from generator"
    assert await Awaitable() == "from generator"


async def test_await_accepts_an_object_whose_await_is_a_plain_iterator(loop):
    # An iterator with only __next__, yielding nothing: completes at once.
    class Iterator:
        def __iter__(self):
            return self

        def __next__(self):
            raise StopIteration("from iterator")

    class Awaitable:
        def __await__(self):
            return Iterator()

    await greenback.ensure_portal()
    assert await Awaitable() == "from iterator"
    assert greenback.await_(Awaitable()) == "from iterator"


async def test_await_accepts_a_types_coroutine_generator(checkpoint):
    @types.coroutine
    def legacy():
        yield from checkpoint().__await__()
        return "legacy"

    await greenback.ensure_portal()
    assert greenback.await_(legacy()) == "legacy"


@pytest.mark.loop_backends("asyncio")
async def test_await_accepts_an_object_whose_await_is_a_plain_iterator_that_yields():
    class Iterator:
        def __init__(self):
            self.steps = 0

        def __iter__(self):
            return self

        def __next__(self):
            self.steps += 1
            if self.steps <= 3:
                return None  # a bare yield: asyncio's sleep(0)
            raise StopIteration(self.steps)

    class Awaitable:
        def __await__(self):
            return Iterator()

    await greenback.ensure_portal()
    assert greenback.await_(Awaitable()) == 4


@pytest.mark.loop_backends("asyncio")
async def test_await_accepts_asyncio_futures_and_tasks():
    loop = asyncio.get_running_loop()
    await greenback.ensure_portal()
    future = loop.create_future()
    loop.call_later(0.001, future.set_result, "future")
    assert greenback.await_(future) == "future"
    task = asyncio.ensure_future(value_after_checkpoint("task", lambda: asyncio.sleep(0)))
    assert greenback.await_(task) == "task"
    assert greenback.await_(asyncio.sleep(0.001, result="sleep")) == "sleep"
    assert greenback.await_(asyncio.gather(asyncio.sleep(0, 1), asyncio.sleep(0, 2))) == [1, 2]
    assert greenback.await_(asyncio.wait_for(asyncio.sleep(0, "wait_for"), 1)) == "wait_for"


@pytest.mark.loop_backends("trio")
async def test_await_accepts_trio_awaitables():
    import trio

    await greenback.ensure_portal()
    assert greenback.await_(trio.sleep(0.001)) is None
    event = trio.Event()
    results = []

    async def setter():
        results.append(greenback.await_(trio.lowlevel.checkpoint()))
        event.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(greenback.with_portal_run, setter)
        greenback.await_(event.wait())
    assert results == [None]
    send, receive = trio.open_memory_channel(1)
    greenback.await_(send.send("channel"))
    assert greenback.await_(receive.receive()) == "channel"
    with trio.move_on_after(0.001) as scope:
        greenback.await_(trio.sleep_forever())
    assert scope.cancelled_caught


async def test_await_of_an_already_awaited_coroutine_raises_runtime_error_like_native(checkpoint):
    async def once():
        return 1

    await greenback.ensure_portal()
    coro = once()
    assert greenback.await_(coro) == 1
    with pytest.raises(RuntimeError, match="cannot reuse already awaited coroutine"):
        greenback.await_(coro)
