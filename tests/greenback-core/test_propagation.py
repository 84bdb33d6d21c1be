"""Exceptions, cancellation and KeyboardInterrupt cross await_ exactly as they cross await."""

from __future__ import annotations

import asyncio
import os
import traceback

import pytest

import greenback

ENGINE_DIR = os.path.dirname(greenback.__file__)


class Boom(Exception):
    pass


async def raise_after_checkpoint(exc, checkpoint, log=None):
    try:
        await checkpoint()
        raise exc
    finally:
        if log is not None:
            log.append("coroutine finally")


def frames(exc):
    return [(os.path.basename(f.filename), f.name) for f in traceback.extract_tb(exc.__traceback__)]


def engine_frames(exc):
    return [
        f.name
        for f in traceback.extract_tb(exc.__traceback__)
        if os.path.dirname(f.filename) == ENGINE_DIR and os.path.basename(f.filename) == "_engine.py"
    ]


# -- plain exceptions ----------------------------------------------------------------


async def test_an_exception_crosses_await_as_the_same_object(checkpoint):
    await greenback.ensure_portal()
    error = Boom("original")
    with pytest.raises(Boom) as info:
        greenback.await_(raise_after_checkpoint(error, checkpoint))
    assert info.value is error


async def test_an_exception_crosses_with_portal_run_sync_as_the_same_object(checkpoint):
    error = Boom("original")

    def sync():
        greenback.await_(raise_after_checkpoint(error, checkpoint))

    with pytest.raises(Boom) as info:
        await greenback.with_portal_run_sync(sync)
    assert info.value is error


async def test_an_exception_crosses_with_portal_run_as_the_same_object(checkpoint):
    error = Boom("original")
    with pytest.raises(Boom) as info:
        await greenback.with_portal_run(raise_after_checkpoint, error, checkpoint)
    assert info.value is error


async def test_finally_blocks_run_innermost_first_as_with_native_await(checkpoint):
    # The same three layers twice: async -> async -> coroutine, natively, and
    # async -> sync -> coroutine, through with_portal_run_sync and await_.
    async def native_middle(log):
        try:
            await raise_after_checkpoint(Boom(), checkpoint, log)
        finally:
            log.append("middle finally")

    def sync_middle(log):
        try:
            greenback.await_(raise_after_checkpoint(Boom(), checkpoint, log))
        finally:
            log.append("middle finally")

    async def outer(log, via_greenback):
        try:
            if via_greenback:
                await greenback.with_portal_run_sync(sync_middle, log)
            else:
                await native_middle(log)
        finally:
            log.append("outer finally")

    native_log, greenback_log = [], []
    with pytest.raises(Boom):
        await outer(native_log, False)
    with pytest.raises(Boom):
        await outer(greenback_log, True)
    assert greenback_log == native_log == ["coroutine finally", "middle finally", "outer finally"]


async def test_an_exception_raised_while_handling_another_is_chained_as_with_native_await(checkpoint):
    async def fail():
        await checkpoint()
        raise Boom("inner")

    def sync():
        greenback.await_(fail())

    async def native():
        await fail()

    results = {}
    for name, call in [("native", native), ("greenback", lambda: greenback.with_portal_run_sync(sync))]:
        try:
            try:
                raise KeyError("handled")
            except KeyError:
                await call()
        except Boom as exc:
            results[name] = (type(exc.__context__), exc.__context__.args, exc.__suppress_context__)
    assert results["greenback"] == results["native"] == (KeyError, ("handled",), False)


async def test_an_exception_that_already_has_a_context_keeps_it(checkpoint):
    async def fail():
        await checkpoint()
        try:
            raise OSError("first")
        except OSError:
            raise Boom("second")  # noqa: B904 - the implicit chaining is the point

    def sync():
        greenback.await_(fail())

    try:
        raise KeyError("handled by the caller")
    except KeyError:
        with pytest.raises(Boom) as info:
            await greenback.with_portal_run_sync(sync)
    assert type(info.value.__context__) is OSError


async def test_an_exception_inside_the_portal_leaves_the_portal_usable(checkpoint):
    await greenback.ensure_portal()
    for _ in range(3):
        with pytest.raises(Boom):
            greenback.await_(raise_after_checkpoint(Boom(), checkpoint))
        assert greenback.await_(_value(checkpoint, 5)) == 5


async def _value(checkpoint, value):
    await checkpoint()
    return value


# -- tracebacks --------------------------------------------------------------------------


async def user_inner(checkpoint):
    await checkpoint()
    raise Boom("deep")


async def user_outer(checkpoint):
    await user_inner(checkpoint)


def user_sync(checkpoint):
    greenback.await_(user_outer(checkpoint))


USER_FRAMES = [
    ("test_propagation.py", "user_sync"),
    ("_engine.py", "await_"),
    ("test_propagation.py", "user_outer"),
    ("test_propagation.py", "user_inner"),
]


async def test_a_traceback_caught_in_sync_code_shows_the_sync_function_await_and_the_coroutines(checkpoint):
    await greenback.ensure_portal()
    try:
        user_sync(checkpoint)
    except Boom as exc:
        got = frames(exc)
        assert got == [("test_propagation.py", got[0][1])] + USER_FRAMES
        assert engine_frames(exc) == ["await_"]
    else:  # pragma: no cover
        raise AssertionError("no exception")


async def test_a_traceback_through_with_portal_run_sync_has_no_engine_frames_but_await(checkpoint):
    try:
        await greenback.with_portal_run_sync(user_sync, checkpoint)
    except Boom as exc:
        got = frames(exc)
        assert got[0][1] == "test_a_traceback_through_with_portal_run_sync_has_no_engine_frames_but_await"
        assert got[-len(USER_FRAMES) :] == USER_FRAMES, got
        assert engine_frames(exc) == ["await_"], got
    else:  # pragma: no cover
        raise AssertionError("no exception")


async def test_a_traceback_through_with_portal_run_has_no_engine_frames(checkpoint):
    try:
        await greenback.with_portal_run(user_outer, checkpoint)
    except Boom as exc:
        got = frames(exc)
        assert got[0][1] == "test_a_traceback_through_with_portal_run_has_no_engine_frames"
        assert got[-2:] == USER_FRAMES[-2:], got
        assert engine_frames(exc) == [], got
    else:  # pragma: no cover
        raise AssertionError("no exception")


async def test_a_traceback_out_of_a_portal_task_keeps_the_user_frames(loop, checkpoint):
    # The error escapes the task (the loop steps the task through its portal):
    # every user frame is still there, in order, with no engine frame among them.
    async def task_body():
        await greenback.ensure_portal()
        user_sync(checkpoint)

    with pytest.raises(BaseException) as info:
        async with loop.open_nursery() as nursery:
            nursery.start_soon(task_body)
    exc = info.value
    while not isinstance(exc, Boom):  # trio wraps it in an ExceptionGroup
        assert len(exc.exceptions) == 1
        exc = exc.exceptions[0]
    got = frames(exc)
    start = got.index(("test_propagation.py", "task_body"))
    assert got[start + 1 :] == USER_FRAMES, got
    assert [name for name in engine_frames(exc) if name in ("_serve", "_step")] == [], got


# -- cancellation ---------------------------------------------------------------------------


@pytest.mark.loop_backends("trio")
async def test_trio_cancelled_crosses_await_and_finally_blocks_run_in_order():
    import trio
    import trio.testing

    log = []
    seen = []

    async def sleeper():
        try:
            await trio.sleep_forever()
        finally:
            log.append("coroutine finally")

    def sync():
        try:
            greenback.await_(sleeper())
        except trio.Cancelled as exc:
            seen.append(exc)
            raise
        finally:
            log.append("sync finally")

    async def task():
        try:
            await greenback.with_portal_run_sync(sync)
        except trio.Cancelled as exc:
            seen.append(exc)
            raise
        finally:
            log.append("async finally")

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert log == ["coroutine finally", "sync finally", "async finally"]
    assert len(seen) == 2 and seen[0] is seen[1]


@pytest.mark.loop_backends("trio")
async def test_trio_cancel_scope_inside_sync_code_catches_its_cancellation():
    import trio

    await greenback.ensure_portal()
    with trio.move_on_after(0.01) as scope:
        greenback.await_(trio.sleep_forever())
    assert scope.cancelled_caught
    # A deadline set in async code applies to await_ in sync code below it.
    with trio.move_on_after(0.01) as scope:
        (lambda: greenback.await_(trio.sleep_forever()))()
    assert scope.cancelled_caught


@pytest.mark.loop_backends("asyncio")
async def test_asyncio_cancellation_crosses_await_and_finally_blocks_run_in_order():
    log = []
    seen = []
    started = asyncio.Event()

    async def sleeper():
        try:
            started.set()
            await asyncio.sleep(10)
        finally:
            log.append("coroutine finally")

    def sync():
        try:
            greenback.await_(sleeper())
        except asyncio.CancelledError as exc:
            seen.append(exc)
            raise
        finally:
            log.append("sync finally")

    async def body():
        await greenback.ensure_portal()
        try:
            sync()
        except asyncio.CancelledError as exc:
            seen.append(exc)
            raise
        finally:
            log.append("async finally")

    task = asyncio.ensure_future(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert log == ["coroutine finally", "sync finally", "async finally"]
    assert len(seen) == 2 and seen[0] is seen[1]


@pytest.mark.loop_backends("asyncio")
@pytest.mark.parametrize("through", ["await_", "with_portal_run"])
async def test_a_cancellation_thrown_in_ends_its_traceback_where_it_lands(through):
    # As with native await: the last frame is the awaitable's (inside
    # asyncio.sleep here), not the engine's switch where the worker received
    # it. (IPython always shows a traceback's last frame, whatever it is.)
    async def last_frame_of_cancellation(mode):
        started = asyncio.Event()
        seen = []

        async def sleeper():
            started.set()
            await asyncio.sleep(10)

        async def body():
            # The cancellation as it passes through the task's code (before
            # Python 3.11, `await task` raises a new CancelledError instead).
            try:
                if mode == "native":
                    await sleeper()
                elif through == "await_":
                    await greenback.ensure_portal()
                    greenback.await_(sleeper())
                else:
                    await greenback.with_portal_run(sleeper)
            except asyncio.CancelledError as exc:
                seen.append(exc)
                raise

        task = asyncio.ensure_future(body())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        last = traceback.extract_tb(seen[0].__traceback__)[-1]
        return os.path.basename(last.filename), last.name

    native = await last_frame_of_cancellation("native")
    assert native[0] in ("tasks.py", "futures.py")  # asyncio's, whichever Python
    assert await last_frame_of_cancellation("bridged") == native


@pytest.mark.loop_backends("asyncio")
async def test_asyncio_cancellation_of_a_with_portal_run_sync_task_cancels_the_task():
    started = asyncio.Event()

    def sync():
        started.set()
        greenback.await_(asyncio.sleep(10))

    task = asyncio.ensure_future(greenback.with_portal_run_sync(sync))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.loop_backends("asyncio")
async def test_asyncio_cancellation_caught_in_sync_code_can_be_suppressed():
    started = asyncio.Event()

    def sync():
        started.set()
        try:
            greenback.await_(asyncio.sleep(10))
        except asyncio.CancelledError:
            return "suppressed"

    async def body():
        result = await greenback.with_portal_run_sync(sync)
        return result, greenback.await_(asyncio.sleep(0, "still usable")) if greenback.has_portal() else None

    task = asyncio.ensure_future(body())
    await started.wait()
    task.cancel()
    assert await task == ("suppressed", None)


# -- KeyboardInterrupt and SystemExit -----------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_and_system_exit_cross_await_as_the_same_object(exc_type, checkpoint):
    log = []
    error = exc_type("interrupt")

    def sync():
        try:
            greenback.await_(raise_after_checkpoint(error, checkpoint, log))
        finally:
            log.append("sync finally")

    with pytest.raises(exc_type) as info:
        try:
            await greenback.with_portal_run_sync(sync)
        finally:
            log.append("async finally")
    assert info.value is error
    assert log == ["coroutine finally", "sync finally", "async finally"]
    # ... and the same through a task's own portal.
    await greenback.ensure_portal()
    with pytest.raises(exc_type) as info:
        sync()
    assert info.value is error
    assert greenback.await_(_value(checkpoint, "usable")) == "usable"


@pytest.mark.parametrize("with_portal", [False, True], ids=["plain", "portal"])
def test_keyboard_interrupt_escaping_a_task_ends_the_run_the_same_with_a_portal(run, checkpoint, with_portal):
    error = KeyboardInterrupt("escape")

    async def main():
        if with_portal:
            await greenback.ensure_portal()
            greenback.await_(raise_after_checkpoint(error, checkpoint))
        else:
            await raise_after_checkpoint(error, checkpoint)

    with pytest.raises(KeyboardInterrupt) as info:
        run(main)
    assert info.value is error

