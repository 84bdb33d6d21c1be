"""Cleanup of portal tasks that never finish on their own.

A task suspended inside ``greenback.await_`` (in a sync frame, awaiting a
coroutine) that is cancelled, whose coroutine is closed, or that is dropped and
garbage-collected must run every ``finally`` block, in its sync frames and in
the coroutines it awaits, exactly as the same task written with native
``await`` would, and leave no greenlet alive.

Every test runs the same program twice, once written with native ``await`` at
every level and once with a sync layer bridged by ``greenback.await_``, and
compares the two logs. A log line names the block and the exception passing
through it.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from typing import Any, Callable, List

import pytest

import greenback
import greenback_reliability_support as support

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

APIS = ["ensure_portal", "with_portal_run", "with_portal_run_sync", "bestow_portal"]

# PyPy (7.3.11 at least) never closes a native coroutine that is collected
# while suspended: no GeneratorExit, its finally blocks do not run. (It does
# close generators.) A portal's body is closed there all the same, by the
# portal's own finalizer; so on PyPy the bridged runs log the cleanup that
# the native runs miss.
PYPY = sys.implementation.name == "pypy"
NOT_CLOSED_ON_PYPY = ["leaf:waiting", "collected"]
CLOSED = ["leaf:waiting", "leaf:GeneratorExit", "layer:GeneratorExit", "body:GeneratorExit", "collected"]


def closed_when_bridged(api: str) -> List[str]:
    """What a bridged run logs when its dropped task is collected."""
    if PYPY and api in ("with_portal_run", "with_portal_run_sync"):
        # There body() is a native coroutine awaiting the portal (which is
        # closed, with everything in it): PyPy leaves body() itself unclosed.
        return [entry for entry in CLOSED if not entry.startswith("body:")]
    return CLOSED


def note(log: List[str], where: str) -> None:
    exc = sys.exc_info()[1]
    log.append(f"{where}:{type(exc).__name__ if exc is not None else '-'}")


def make_body(mode: str, api: str, log: List[str], wait: Callable[[], Any]) -> Callable[[], Any]:
    """The task body: body -> layer (sync+await_, or async) -> leaf -> wait()."""

    async def leaf() -> None:
        try:
            log.append("leaf:waiting")
            await wait()
        finally:
            note(log, "leaf")

    def sync_layer() -> None:
        try:
            greenback.await_(leaf())
        finally:
            note(log, "layer")

    async def async_layer() -> None:
        try:
            await leaf()
        finally:
            note(log, "layer")

    async def body() -> None:
        try:
            if mode == "native":
                await async_layer()
            elif api == "ensure_portal" or api == "bestow_portal":
                if api == "ensure_portal":
                    await greenback.ensure_portal()
                sync_layer()
            elif api == "with_portal_run":

                async def run_layer() -> None:
                    sync_layer()

                await greenback.with_portal_run(run_layer)
            else:
                await greenback.with_portal_run_sync(sync_layer)
        finally:
            note(log, "body")

    return body


def spawn_asyncio(mode: str, api: str, body: Callable[[], Any]) -> "asyncio.Task[Any]":
    task = asyncio.get_running_loop().create_task(body())
    if mode == "bridged" and api == "bestow_portal":
        greenback.bestow_portal(task)
    return task


# -- asyncio ---------------------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_asyncio_cancel_while_suspended_in_await_(api: str) -> None:
    logs = {}
    for mode in ("native", "bridged"):
        log: List[str] = []
        with support.nothing_left_behind():

            async def main() -> None:
                task = spawn_asyncio(mode, api, make_body(mode, api, log, lambda: asyncio.sleep(3600)))
                while "leaf:waiting" not in log:
                    await asyncio.sleep(0)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    log.append("task:cancelled")

            asyncio.run(main())
        logs[mode] = log
    assert logs["bridged"] == logs["native"]
    assert logs["native"] == [
        "leaf:waiting",
        "leaf:CancelledError",
        "layer:CancelledError",
        "body:CancelledError",
        "task:cancelled",
    ]


@pytest.mark.parametrize("api", APIS)
def test_asyncio_coroutine_closed_while_suspended_in_await_(api: str) -> None:
    # The task's coroutine is closed under it; then the task is cancelled, so
    # that it finishes (throwing into a closed coroutine re-raises at once).
    logs = {}
    for mode in ("native", "bridged"):
        log: List[str] = []
        with support.nothing_left_behind():

            async def main() -> None:
                task = spawn_asyncio(mode, api, make_body(mode, api, log, lambda: asyncio.sleep(3600)))
                while "leaf:waiting" not in log:
                    await asyncio.sleep(0)
                task.get_coro().close()
                log.append("closed")
                # Wake the task: asyncio steps the closed coroutine again.
                task.cancel()
                await asyncio.wait([task])
                if task.cancelled():
                    log.append("task:cancelled")
                else:
                    exc = task.exception()
                    log.append(f"task:{type(exc).__name__}: {exc}")

            asyncio.run(main())
        logs[mode] = log
    assert logs["bridged"] == logs["native"]
    assert logs["native"] == [
        "leaf:waiting",
        "leaf:GeneratorExit",
        "layer:GeneratorExit",
        "body:GeneratorExit",
        "closed",
        "task:RuntimeError: cannot reuse already awaited coroutine",
    ]


@pytest.mark.parametrize("api", APIS)
def test_asyncio_task_collected_after_its_loop_closed(api: str, caplog: pytest.LogCaptureFixture) -> None:
    # The loop is closed while the task waits; dropping the task lets the
    # garbage collector find it, and (as for any coroutine) close it.
    if sys.version_info < (3, 11) and not PYPY:
        pytest.xfail(
            "before Python 3.11 a caller's frame keeps the arguments of the call "
            "in progress, so `await_(leaf())` keeps leaf() alive from inside the "
            "suspended greenlet, where the garbage collector cannot see it"
        )
    logs = {}
    for mode in ("native", "bridged"):
        log: List[str] = []
        with support.nothing_left_behind(collects_running_portals=mode == "bridged"):
            loop = asyncio.new_event_loop()
            body = make_body(mode, api, log, lambda: asyncio.sleep(3600))

            async def main() -> None:
                spawn_asyncio(mode, api, body)
                while "leaf:waiting" not in log:
                    await asyncio.sleep(0)

            loop.run_until_complete(main())
            loop.close()
            del loop, body
            support.collect()
            log.append("collected")
        logs[mode] = log
    assert logs["bridged"] == closed_when_bridged(api)
    assert logs["native"] == (NOT_CLOSED_ON_PYPY if PYPY else CLOSED)
    # asyncio's complaint about a pending task destroyed, once per run.
    destroyed = [r for r in caplog.records if "Task was destroyed but it is pending" in r.getMessage()]
    assert len(destroyed) == 2


# -- Trio ------------------------------------------------------------------------


def spawn_trio(nursery: Any, mode: str, api: str, body: Callable[[], Any]) -> Any:
    before = set(nursery.child_tasks)
    nursery.start_soon(body)
    (task,) = set(nursery.child_tasks) - before
    if mode == "bridged" and api == "bestow_portal":
        greenback.bestow_portal(task)
    return task


@pytest.mark.parametrize("api", APIS)
def test_trio_cancel_while_suspended_in_await_(api: str) -> None:
    import trio

    logs = {}
    for mode in ("native", "bridged"):
        log: List[str] = []
        with support.nothing_left_behind():

            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    spawn_trio(nursery, mode, api, make_body(mode, api, log, trio.sleep_forever))
                    while "leaf:waiting" not in log:
                        await trio.lowlevel.checkpoint()
                    nursery.cancel_scope.cancel()
                log.append(f"cancelled:{nursery.cancel_scope.cancelled_caught}")

            trio.run(main)
        logs[mode] = log
    assert logs["bridged"] == logs["native"]
    assert logs["native"] == ["leaf:waiting", "leaf:Cancelled", "layer:Cancelled", "body:Cancelled", "cancelled:True"]


@pytest.mark.parametrize("api", APIS)
def test_trio_coroutine_closed_while_suspended_in_await_(api: str) -> None:
    import trio

    logs = {}
    for mode in ("native", "bridged"):
        log: List[str] = []
        with support.nothing_left_behind():

            async def main() -> None:
                try:
                    async with trio.open_nursery() as nursery:
                        task = spawn_trio(nursery, mode, api, make_body(mode, api, log, trio.sleep_forever))
                        while "leaf:waiting" not in log:
                            await trio.lowlevel.checkpoint()
                        task.coro.close()
                        log.append("closed")
                        nursery.cancel_scope.cancel()  # steps the closed coroutine again
                except BaseException as exc:  # noqa: B036 - recorded and compared
                    leaves = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
                    log.extend(f"task:{type(e).__name__}: {e}" for e in leaves)

            trio.run(main)
        logs[mode] = log
    assert logs["bridged"] == logs["native"]
    assert logs["native"] == [
        "leaf:waiting",
        "leaf:GeneratorExit",
        "layer:GeneratorExit",
        "body:GeneratorExit",
        "closed",
        "task:RuntimeError: cannot reuse already awaited coroutine",
    ]


def run_abandoned_trio_guest(main: Callable[[], Any], ready: Callable[[], bool]) -> None:
    """Start *main* as a Trio guest run on an asyncio loop, run it until
    ``ready()``, then abandon it: close the host loop and let go of every
    reference Trio keeps outside the run, so that the garbage collector can
    find the run's tasks, as it finds an asyncio loop's tasks once the loop is
    closed and dropped."""
    import signal

    import trio
    import trio._core._run as trio_run

    loop = asyncio.new_event_loop()
    abandoned = []
    tokens = []

    def run_sync_soon_threadsafe(fn: Callable[[], Any]) -> None:
        if not abandoned:
            loop.call_soon_threadsafe(fn)

    async def guest() -> None:
        tokens.append(trio.lowlevel.current_trio_token())
        await main()

    # No automatic collection until we collect, below, in this thread: the
    # run's tasks must be finalized here, as they would be if the loop had
    # been abandoned on its own thread. (A portal cannot run its finally
    # blocks from another thread; see docs/reliability.md.)
    gc.disable()
    old_sigint = signal.getsignal(signal.SIGINT)
    old_hooks = sys.get_asyncgen_hooks()
    trio.lowlevel.start_guest_run(
        guest,
        run_sync_soon_threadsafe=run_sync_soon_threadsafe,
        done_callback=lambda outcome: None,
        host_uses_signal_set_wakeup_fd=True,
    )

    async def until_ready() -> None:
        while not ready():
            await asyncio.sleep(0.001)

    loop.run_until_complete(until_ready())
    abandoned.append(True)
    # Let the host run what it has queued: from now on the guest run gets no
    # more ticks, and at most one job of Trio's I/O thread is outstanding.
    loop.run_until_complete(asyncio.sleep(0.01))
    # That job waits in epoll with the run's references: wake it (its callback
    # into the host is dropped above) and wait until its thread is idle again.
    token = tokens.pop()
    token.run_sync_soon(lambda: None)
    deadline = time.monotonic() + 30
    while any(_busy(t) for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.005)
    loop.close()
    # The references to the run that Trio leaves in the thread and interpreter.
    vars(trio_run.GLOBAL_RUN_CONTEXT).clear()
    sys.set_asyncgen_hooks(*old_hooks)
    signal.signal(signal.SIGINT, old_sigint)
    del loop, token
    support.collect()
    gc.enable()


def _busy(thread: threading.Thread) -> bool:
    """Whether *thread* is one of Trio's cached worker threads running, or
    about to run, a job."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "_handle_job":
            return True
        if frame.f_code.co_name == "_work" and "_thread_cache" in frame.f_code.co_filename:
            return getattr(frame.f_locals.get("self"), "_job", None) is not None
        frame = frame.f_back
    return False


# Where Trio's own errors about an abandoned run come from (they vary with timing).
TRIO_COMPLAINTS = ("Nursery.__del__", "Runner.init", "unrolled_run")


@pytest.mark.parametrize("api", APIS)
def test_trio_task_collected_after_its_guest_run_abandoned(api: str) -> None:
    import trio

    if sys.version_info < (3, 11) and not PYPY:
        pytest.xfail("see test_asyncio_task_collected_after_its_loop_closed")
    logs = {}
    complaints = {}
    for mode in ("native", "bridged"):
        log: List[str] = []
        # Trio complains, in warnings and in errors nobody can catch, about
        # the run being abandoned: the same complaints with and without
        # greenback are fine.
        with support.nothing_left_behind(
            allow_warnings=True, allow_unraisable=True, collects_running_portals=mode == "bridged"
        ) as found:

            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    spawn_trio(nursery, mode, api, make_body(mode, api, log, trio.sleep_forever))

            try:
                run_abandoned_trio_guest(main, lambda: "leaf:waiting" in log)
            finally:
                gc.enable()
            log.append("collected")
        logs[mode] = log
        complaints[mode] = (
            sorted(set(str(w.message) for w in found.warnings)),
            [u for u in found.unraisable if not any(t in u for t in TRIO_COMPLAINTS)],
        )
    assert complaints["bridged"] == complaints["native"]
    assert complaints["native"] == (
        ["Trio guest run got abandoned without properly finishing... weird stuff might happen"],
        [],
    )
    assert logs["bridged"] == closed_when_bridged(api)
    assert logs["native"] == (NOT_CLOSED_ON_PYPY if PYPY else CLOSED)


# -- threads -------------------------------------------------------------------------


def test_idle_workers_of_a_thread_that_exited_are_freed(loop: Any) -> None:
    # Each thread has its own pool of idle workers; when the thread exits,
    # they must go with it (a thread per asyncio.run() is a common pattern).
    from greenback import _engine

    def portals_in_a_thread() -> None:
        async def task() -> int:
            await greenback.ensure_portal()
            return greenback.await_(value(loop, 1))  # type: ignore[no-any-return]

        async def main() -> int:
            total = 0
            for _ in range(3):
                total += await greenback.with_portal_run_sync(lambda: greenback.await_(value(loop, 1)))
            if loop.library == "trio":
                import trio

                async with trio.open_nursery() as nursery:
                    for _ in range(10):
                        nursery.start_soon(task)
            else:
                total += sum(await asyncio.gather(*(task() for _ in range(10))))
            return total

        loop.run(main)
        assert _engine.pool_size() >= 1  # workers went back to this thread's pool

    def workers() -> int:
        support.collect()
        return sum(1 for obj in gc.get_objects() if isinstance(obj, _engine._Worker))

    before = workers()
    for _ in range(3):
        support.run_in_thread(portals_in_a_thread)
    assert workers() == before


async def value(loop: Any, result: int) -> int:
    await loop.checkpoint()
    return result
