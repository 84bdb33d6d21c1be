"""Bad input and wrong places: the exact error a user sees, and nothing left behind.

Each test checks the full text of the error (docs/reliability.md has the same
table), and runs inside ``nothing_left_behind()``: no "coroutine ... was never
awaited" warning, no error nobody could report, no greenlet alive beyond the
idle pool, no portal object; and the event loop run returns (no stuck task).
Cases that involve interpreter shutdown or deep recursion run in a subprocess.
"""

from __future__ import annotations

import asyncio
import gc
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import greenback
import greenback_reliability_support as support
from greenback._exceptions import NoLoopError, NotATaskError

# Where no async library runs (no loop in the thread, a worker thread, an
# asyncio callback), the error is a NoLoopError: a RuntimeError that is also
# sniffio's AsyncLibraryNotFoundError, as greenback 1.3.0 raised there (see
# tests/clients/test_error_classes.py).

# Tests that take `loop` run under asyncio and under Trio (see tests/reliability/conftest.py).


async def checkpoint() -> None:
    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


Error = Tuple[type, str]


def seen(exc: BaseException) -> Error:
    """What the tests check of an exception. Only that is kept: an exception
    refers to the frames it passed, and through them to the portal and the
    worker greenlet they ran in, which would then look leaked."""
    return type(exc), str(exc)


def raised_by(fn: Callable[[], Any]) -> Error:
    try:
        fn()
    except BaseException as exc:  # noqa: B036 - returned for inspection
        return seen(exc)
    raise AssertionError("nothing was raised")


def error_of(loop: Any, sync_fn: Callable[[], Any]) -> Error:
    """The exception *sync_fn* raises when run in a task with a portal."""

    async def main() -> Error:
        await greenback.ensure_portal()
        error = raised_by(sync_fn)
        await checkpoint()  # the portal still works afterwards
        return error

    with support.nothing_left_behind():
        return loop.run(main)  # type: ignore[no-any-return]


async def one() -> int:
    await checkpoint()
    return 1


def sync_function() -> int:
    return 3


# -- await_ of bad awaitables ----------------------------------------------------------


def test_await_of_a_non_awaitable(loop: Any) -> None:
    exc = error_of(loop, lambda: greenback.await_(5))
    assert exc[0] is TypeError
    # As native await says (CPython 3.14 rephrased it).
    if sys.version_info >= (3, 14):
        assert exc[1] == "'int' object can't be awaited"
    else:
        assert exc[1] == "object int can't be used in 'await' expression"


def test_await_of_an_async_function_suggests_calling_it(loop: Any) -> None:
    # await_(one) where await_(one()) was meant: native await's error, and the fix.
    exc = error_of(loop, lambda: greenback.await_(one))  # type: ignore[arg-type]
    assert exc[0] is TypeError
    native = "'function' object can't be awaited" if sys.version_info >= (3, 14) else "object function can't be used in 'await' expression"
    assert exc[1] == (
        f"{native}; did you mean greenback.await_(one())? "
        "(one is an async function: calling it makes the coroutine to await)"
    )


def test_await_of_an_already_awaited_coroutine(loop: Any) -> None:
    def twice() -> None:
        coro = one()
        assert greenback.await_(coro) == 1
        greenback.await_(coro)

    exc = error_of(loop, twice)
    assert exc[0] is RuntimeError
    assert exc[1] == "cannot reuse already awaited coroutine"


class AwaitRaises:
    def __await__(self) -> Any:
        raise ValueError("boom in __await__")


class AwaitReturnsInt:
    def __await__(self) -> Any:
        return 5


def test_await_of_an_awaitable_whose___await___raises(loop: Any) -> None:
    exc = error_of(loop, lambda: greenback.await_(AwaitRaises()))
    assert exc[0] is ValueError
    assert exc[1] == "boom in __await__"


def test_await_of_an_awaitable_whose___await___returns_a_non_iterator(loop: Any) -> None:
    exc = error_of(loop, lambda: greenback.await_(AwaitReturnsInt()))
    assert exc[0] is TypeError
    # As native await says (CPython 3.15 rephrased it, naming both types).
    if sys.version_info >= (3, 15):
        assert exc[1] == f"{__name__}.AwaitReturnsInt.__await__() must return an iterator, not int"
    else:
        assert exc[1] == "__await__() returned non-iterator of type 'int'"


# -- with_portal_run / bestow_portal with the wrong thing ----------------------------


def api_error(loop: Any, call: Callable[[], Any]) -> Error:
    """The exception awaiting ``call()`` raises, in a task without a portal."""

    async def main() -> Error:
        try:
            await call()
        except BaseException as exc:  # noqa: B036 - returned for inspection
            return seen(exc)
        raise AssertionError("nothing was raised")

    with support.nothing_left_behind():
        return loop.run(main)  # type: ignore[no-any-return]


def test_with_portal_run_of_a_sync_function(loop: Any) -> None:
    exc = api_error(loop, lambda: greenback.with_portal_run(sync_function))  # type: ignore[arg-type]
    assert exc[0] is TypeError
    assert exc[1] == (
        "greenback expected sync_function() to return an awaitable, "
        "but it returned int; use greenback.with_portal_run_sync() to run a "
        "synchronous function"
    )


@pytest.mark.parametrize(
    "api, kind",
    [("with_portal_run", "an async function"), ("with_portal_run_sync", "a function"), ("with_portal_run_tree", "an async function")],
)
def test_with_portal_run_of_a_non_callable(loop: Any, api: str, kind: str) -> None:
    exc = api_error(loop, lambda: getattr(greenback, api)(5))
    assert exc[0] is TypeError
    assert exc[1] == f"greenback.{api}() expects {kind} as its first argument, got 5"


async def main_task() -> int:
    return 1


@pytest.mark.parametrize("api", ["with_portal_run", "with_portal_run_tree", "with_portal_run_sync"])
def test_with_portal_run_of_a_coroutine_object_names_the_function_called(loop: Any, api: str) -> None:
    # with_portal_run_tree(main()) for with_portal_run_tree(main): the error
    # names what was called and the fix, and the coroutine is closed (no
    # "never awaited" warning: nothing_left_behind() checks).
    kind = "a function" if api == "with_portal_run_sync" else "an async function"
    exc = api_error(loop, lambda: getattr(greenback, api)(main_task()))
    assert exc[0] is TypeError
    assert exc[1] == (
        f"greenback.{api}() expects {kind} and its arguments, and got a coroutine object "
        f"(main_task()); pass the function itself: greenback.{api}(main_task, *args)"
    )


def test_with_portal_run_sync_of_an_async_function_points_to_with_portal_run(loop: Any) -> None:
    # The reverse of test_with_portal_run_of_a_sync_function; the coroutine
    # the call made is closed, so no "never awaited" warning follows.
    exc = api_error(loop, lambda: greenback.with_portal_run_sync(main_task))  # type: ignore[arg-type]
    assert exc[0] is TypeError
    assert exc[1] == (
        "greenback.with_portal_run_sync() expects a synchronous function, and main_task is "
        "an async function; to run it in a portal, use 'await greenback.with_portal_run(main_task, *args)'"
    )


def test_with_portal_run_sync_may_still_return_a_coroutine_from_a_sync_function(loop: Any) -> None:
    # Only async functions are refused: a sync function that returns a
    # coroutine object (a factory) gets it back, as with greenback 1.3.0.
    def factory() -> Any:
        return main_task()

    async def main() -> int:
        coro = await greenback.with_portal_run_sync(factory)
        return await coro  # type: ignore[no-any-return]

    with support.nothing_left_behind():
        assert loop.run(main) == 1


NOT_A_TASK = (
    "greenback.bestow_portal() expects a task: an asyncio.Task, a trio.lowlevel.Task, "
    "or a task of another loop greenback has an integration for; got int (5). To give "
    "the current task a portal, use 'await greenback.ensure_portal()'."
)


def test_bestow_portal_of_a_non_task(loop: Any) -> None:
    async def main() -> None:
        greenback.bestow_portal(5)

    exc = api_error(loop, main)
    assert exc[0] is NotATaskError  # a TypeError (and, as in 1.3.0, an AssertionError)
    assert exc[1] == NOT_A_TASK


def test_bestow_portal_of_a_finished_task_does_nothing(loop: Any) -> None:
    # As with greenback 1.3.0: nothing will run in that task again. (An eager
    # asyncio task may finish inside create_task(), before bestow_portal().)
    async def main() -> Any:
        if loop.library == "trio":
            import trio

            tasks: List[Any] = []

            async def child() -> None:
                tasks.append(trio.lowlevel.current_task())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)
            task = tasks[0]
            coro = task.coro
        else:
            task = asyncio.ensure_future(one())
            await task
            coro = task.get_coro()
        greenback.bestow_portal(task)
        return task, coro, (task.coro if loop.library == "trio" else task.get_coro())

    with support.nothing_left_behind():
        task, before, after = loop.run(main)
    assert after is before  # not replaced by a portal
    assert greenback.has_portal(task) is False


def test_bestow_portal_of_a_task_of_another_running_loop(loop: Any) -> None:
    # The other loop runs in another thread, with a task waiting there.
    ready = threading.Event()
    release = threading.Event()
    box: dict = {}

    def other_thread() -> None:
        async def main() -> None:
            if loop.library == "trio":
                import trio

                box["task"] = trio.lowlevel.current_task()
                ready.set()
                await trio.to_thread.run_sync(release.wait)
            else:
                box["task"] = asyncio.current_task()
                ready.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait)

        loop.run(main)

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        ready.wait()

        async def main() -> None:
            greenback.bestow_portal(box["task"])

        exc = api_error(loop, main)
    finally:
        release.set()
        thread.join()
    assert exc[0] is RuntimeError
    if loop.library == "trio":
        expected = (
            r"greenback cannot give a portal to <Task .*>: it belongs to another Trio run "
            r"than the one going on here\. Call greenback\.bestow_portal\(\) from a task "
            r"of that run, in the thread running it\."
        )
    else:
        expected = (
            r"greenback cannot give a portal to <Task .*>: it belongs to another event loop "
            r"\(<.*>\) than the one running here\. Call greenback\.bestow_portal\(\) from "
            r"a task of that loop, in the thread running it\."
        )
    assert re.fullmatch(expected, exc[1]), exc[1]


# -- ensure_portal and await_ where no task can wait -------------------------------------

NO_LOOP_AWAIT = (
    "greenback.await_() was called where no async task is running (no event loop in "
    "this thread, or a callback outside any task). You must create a greenback portal "
    "in an async task and call await_() from sync code that task runs: 'await "
    "greenback.ensure_portal()' in the task, or 'await greenback.with_portal_run_sync(fn, *args)'."
)
NO_LOOP_ENSURE = (
    "greenback needs a running event loop here: call it from async code running under "
    "asyncio or Trio (no async library was detected in this thread)"
)


def in_new_thread(fn: Callable[[], Any]) -> Any:
    return support.run_in_thread(fn)


def step_ensure_portal() -> None:
    """Drive ensure_portal() by hand: what awaiting it somewhere odd does."""
    greenback.ensure_portal().send(None)


def test_await_in_a_thread_with_no_loop() -> None:
    with support.nothing_left_behind():
        exc = in_new_thread(lambda: raised_by(lambda: greenback.await_(one())))
    assert exc[0] is NoLoopError
    assert exc[1] == NO_LOOP_AWAIT


def test_ensure_portal_in_a_thread_with_no_loop() -> None:
    with support.nothing_left_behind():
        exc = in_new_thread(lambda: raised_by(step_ensure_portal))
    assert exc[0] is NoLoopError
    assert exc[1] == NO_LOOP_ENSURE


TO_THREAD = {
    "asyncio": (
        "{api} was called in a worker thread of an asyncio event loop "
        "(asyncio.to_thread() or loop.run_in_executor()); it only works in the thread "
        "that runs the loop, in a task. From a worker thread, run a coroutine on the "
        "loop with asyncio.run_coroutine_threadsafe(coro, loop).result()."
    ),
    "trio": (
        "{api} was called in a worker thread started by trio.to_thread.run_sync(); it "
        "only works in the thread that runs the Trio loop, in a task. From a worker "
        "thread, call back into Trio with trio.from_thread.run(async_fn, *args) (or "
        "trio.from_thread.run_sync(fn, *args))."
    ),
}


@pytest.mark.parametrize("api", ["await_", "ensure_portal"])
def test_in_a_worker_thread_of_the_loop(loop: Any, api: str) -> None:
    def in_worker() -> Error:
        if api == "await_":
            return raised_by(lambda: greenback.await_(one()))
        return raised_by(step_ensure_portal)

    async def main() -> Error:
        await greenback.ensure_portal()
        if loop.library == "trio":
            import trio

            return await trio.to_thread.run_sync(in_worker)
        if sys.version_info >= (3, 9):
            return await asyncio.to_thread(in_worker)

    with support.nothing_left_behind():
        exc = loop.run(main)
    assert exc[0] is NoLoopError
    assert exc[1] == TO_THREAD[loop.library].format(api=f"greenback.{api}()")


CALLBACK = (
    "{api} was called in a callback of the running asyncio event loop (call_soon, "
    "call_later, a future's done callback, a protocol method...), outside any task; "
    "only code that a task runs can wait. You must create a greenback portal in a task "
    "and call it from code that task runs: start one with loop.create_task(coro), and "
    "have it 'await greenback.ensure_portal()' (or call the sync code through 'await "
    "greenback.with_portal_run_sync(fn, *args)')."
)


@pytest.mark.parametrize("api", ["await_", "ensure_portal"])
def test_in_an_asyncio_callback(api: str) -> None:
    async def main() -> Error:
        await greenback.ensure_portal()  # the task has one; the callback is not the task
        loop = asyncio.get_running_loop()
        done: "asyncio.Future[Error]" = loop.create_future()

        def callback() -> None:
            if api == "await_":
                done.set_result(raised_by(lambda: greenback.await_(one())))
            else:
                done.set_result(raised_by(step_ensure_portal))

        loop.call_soon(callback)
        return await done

    with support.nothing_left_behind():
        exc = asyncio.run(main())
    assert exc[0] is NoLoopError
    assert exc[1] == CALLBACK.format(api=f"greenback.{api}()")


FINALIZER = (
    "greenback.await_() was called in a finalizer (Resource.__del__). Finalizers run "
    "wherever an object happens to be freed (in any task, in the event loop, in another "
    "thread, at exit) and cannot wait for anything. Release the resource explicitly (a "
    "close() method, 'async with'), or have the finalizer schedule the async cleanup "
    "instead of waiting for it: loop.call_soon_threadsafe(loop.create_task, coro) under "
    "asyncio, trio_token.run_sync_soon(...) under Trio."
)


class Resource:
    errors: List[Error] = []

    def __del__(self) -> None:
        Resource.errors.append(raised_by(lambda: greenback.await_(one())))


def test_in_a_finalizer(loop: Any) -> None:
    # The resource is part of a reference cycle, so the garbage collector frees
    # it, here in the event loop's own code, outside any portal.
    Resource.errors.clear()

    async def main() -> None:
        await greenback.ensure_portal()
        resource = Resource()
        resource.cycle = resource  # type: ignore[attr-defined]
        del resource

    with support.nothing_left_behind():
        loop.run(main)
        gc.collect()
    (exc,) = Resource.errors
    Resource.errors.clear()
    # A RuntimeError; a NoLoopError when the collector ran outside any task
    # (it usually runs at the gc.collect() above, after the loop).
    assert exc[0] in (RuntimeError, NoLoopError)
    assert exc[1] == FINALIZER


SIGNAL = (
    "greenback.await_() was called in a signal handler (handler), which Python runs "
    "between two bytecodes of whatever the main thread is doing, and which cannot wait "
    "for anything. Handle the signal in a task instead: loop.add_signal_handler() under "
    "asyncio, 'with trio.open_signal_receiver(...)' under Trio."
)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_in_a_signal_handler(loop: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread")
    errors: List[Error] = []

    def handler(signum: int, frame: Any) -> None:
        errors.append(raised_by(lambda: greenback.await_(one())))

    async def main() -> None:
        await greenback.ensure_portal()
        if loop.library == "trio":
            import trio

            # From a system task: in the loop's thread, outside this task's portal.
            trio.lowlevel.spawn_system_task(raise_signal)
            while not errors:
                await trio.lowlevel.checkpoint()
        else:
            asyncio.get_running_loop().call_soon(raise_signal_here)
            while not errors:
                await asyncio.sleep(0)

    def raise_signal_here() -> None:
        signal.raise_signal(signal.SIGUSR1)
        # CPython runs the handler inside raise_signal(); PyPy at its next
        # periodic check, which could come in the task, in its portal. Stay
        # here until it has run, so that it runs where the test means it to.
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            pass

    async def raise_signal() -> None:
        raise_signal_here()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with support.nothing_left_behind():
            loop.run(main)
    finally:
        signal.signal(signal.SIGUSR1, old)
    (exc,) = errors
    # asyncio runs the handler in a callback (no task, so no async library);
    # Trio in its system task.
    assert exc[0] is (NoLoopError if loop.library == "asyncio" else RuntimeError)
    assert exc[1] == SIGNAL


# -- in a subprocess: interpreter shutdown, recursion ---------------------------------------

SHUTDOWN = (
    "greenback._exceptions.NoLoopError: greenback.await_() was called during interpreter shutdown (in a "
    "finalizer, or the finally block of a generator or coroutine closed as the "
    "interpreter exits), when no event loop can run any more. Finish async cleanup "
    "while the loop runs: close generators that wait in their finally blocks (or "
    "'await agen.aclose()') in the task that uses them."
)


def run_python(source: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    sys.implementation.name == "pypy",
    reason="PyPy runs no finalizer at interpreter shutdown (its documented difference from "
    "CPython): a generator still suspended then never runs its finally block, so no await_ "
    "happens during shutdown",
)
def test_in_a_generators_finally_during_interpreter_shutdown(loop: Any) -> None:
    result = run_python(
        f"""
        import asyncio, greenback, trio

        async def checkpoint():
            if {loop.library!r} == "trio":
                await trio.lowlevel.checkpoint()
            else:
                await asyncio.sleep(0)

        def numbers():
            try:
                yield 1
            finally:
                print("finally runs", flush=True)
                greenback.await_(checkpoint())

        async def main():
            global left_open
            await greenback.ensure_portal()
            left_open = numbers()
            next(left_open)  # suspended in its try block until the interpreter exits

        if {loop.library!r} == "trio":
            trio.run(main)
        else:
            asyncio.run(main())
        print("main returned", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main returned\nfinally runs\n"
    if sys.version_info >= (3, 14):  # which rephrased the report
        assert "Exception ignored while closing generator <generator object numbers" in result.stderr
    else:
        assert "Exception ignored in: <generator object numbers" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == SHUTDOWN, result.stderr
    assert "never awaited" not in result.stderr
    assert "Fatal" not in result.stderr


@pytest.mark.parametrize("parks", [False, True], ids=["straight", "parking-at-every-level"])
def test_recursion_past_the_limit_through_await_(loop: Any, parks: bool) -> None:
    result = run_python(
        f"""
        import asyncio, gc, sys, greenback, greenlet, trio
        from greenback import _engine

        async def checkpoint():
            if {loop.library!r} == "trio":
                await trio.lowlevel.checkpoint()
            else:
                await asyncio.sleep(0)

        async def down(depth):
            if {parks!r}:
                await checkpoint()
            return sync_down(depth + 1)

        def sync_down(depth):
            return greenback.await_(down(depth))

        async def main():
            await greenback.ensure_portal()
            try:
                sync_down(0)
            except RecursionError as exc:
                print("RecursionError:", exc)
            await checkpoint()
            print("still works:", greenback.await_(value()))

        async def value():
            await checkpoint()
            return 42

        if {loop.library!r} == "trio":
            trio.run(main)
        else:
            asyncio.run(main())
        gc.collect()
        live = [g for g in gc.get_objects() if isinstance(g, greenlet.greenlet) and g and g.parent is not None]
        print("live greenlets beyond the pool:", len(live) - _engine.pool_size())
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("RecursionError: maximum recursion depth exceeded"), result.stdout
    assert lines[1:] == ["still works: 42", "live greenlets beyond the pool: 0"], result.stdout
    if sys.version_info >= (3, 11):
        assert "never awaited" not in result.stderr
    # Before 3.11, C calls count towards the limit too, and the RecursionError
    # may strike in await_ itself (its first call), before it could start the
    # coroutine it was given, which is then reported as never awaited.
    assert "Fatal" not in result.stderr
