"""Deep nesting of await_, and await_ from inside another library's greenlets."""

from __future__ import annotations

import sys

import greenlet
import pytest

import greenback

DEPTH = 100


class Bottom(Exception):
    pass


async def test_await_nests_100_levels_deep_and_returns_values(checkpoint):
    async def level_async(n):
        await checkpoint()
        if n == 0:
            return 0
        return level_sync(n - 1) + 1

    def level_sync(n):
        return greenback.await_(level_async(n))

    await greenback.ensure_portal()
    assert await level_async(DEPTH) == DEPTH
    # And starting from sync code, in a task with no portal of its own yet.
    assert await greenback.with_portal_run_sync(level_sync, DEPTH) == DEPTH


async def test_an_exception_at_the_bottom_of_100_levels_propagates_through_every_level(checkpoint):
    unwound = []

    async def level_async(n):
        try:
            await checkpoint()
            if n == 0:
                raise Bottom("at the bottom")
            level_sync(n - 1)
        finally:
            unwound.append(("async", n))

    def level_sync(n):
        try:
            greenback.await_(level_async(n))
        finally:
            unwound.append(("sync", n))

    error = None
    try:
        await greenback.with_portal_run_sync(level_sync, DEPTH)
    except Bottom as exc:
        error = exc
    assert error is not None and error.args == ("at the bottom",)
    expected = []
    for n in range(DEPTH + 1):
        expected += [("async", n), ("sync", n)]
    assert unwound == expected


async def test_nesting_through_with_portal_run_sync_at_every_level(checkpoint):
    # Inside a portal, with_portal_run_sync is a plain call: no new portal per level.
    portals = set()

    async def level_async(n):
        await checkpoint()
        if n == 0:
            return []
        return await greenback.with_portal_run_sync(level_sync, n - 1)

    def level_sync(n):
        portals.add(id(greenback._engine.current_portal()))
        return greenback.await_(level_async(n)) + [n]

    assert await level_async(DEPTH) == list(range(DEPTH))
    assert len(portals) == 1


# -- another library's greenlets below the portal ---------------------------------


class LibraryGreenlet(greenlet.greenlet):
    """A greenlet like SQLAlchemy's: sync code in it awaits by switching to its parent."""

    def __init__(self, fn, driver):
        super().__init__(fn, driver)
        self.driver = driver


def library_await(awaitable):
    """The library's own await: hand the awaitable to the greenlet that spawned us."""
    current = greenlet.getcurrent()
    assert isinstance(current, LibraryGreenlet), "library_await outside library_spawn"
    return current.driver.switch(awaitable)


async def library_spawn(fn, *args):
    """Run fn(*args) in a LibraryGreenlet, awaiting what it switches out (like greenlet_spawn)."""
    context = LibraryGreenlet(fn, greenlet.getcurrent())
    result = context.switch(*args)
    while not context.dead:
        try:
            value = await result
        except BaseException:
            result = context.throw(*sys.exc_info())
        else:
            result = context.switch(value)
    return result


async def test_await_works_in_another_librarys_greenlet_created_inside_the_portal(checkpoint):
    async def double_later(x):
        await checkpoint()
        await checkpoint()
        return 2 * x

    def sync_in_library_greenlet(start):
        here = greenlet.getcurrent()
        assert isinstance(here, LibraryGreenlet)
        trace = []
        total = start
        for i in range(5):
            total = greenback.await_(double_later(total))
            trace.append(("greenback", greenlet.getcurrent() is here, total))
            total = library_await(double_later(total)) + i
            trace.append(("library", greenlet.getcurrent() is here, total))
        return total, trace

    await greenback.ensure_portal()
    total, trace = await library_spawn(sync_in_library_greenlet, 1)
    expected_total = 1
    for i in range(5):
        expected_total = 2 * (2 * expected_total) + i
    assert total == expected_total
    assert all(resumed_here for _, resumed_here, _ in trace)
    assert len(trace) == 10


async def test_await_in_library_greenlets_of_concurrent_tasks_resumes_the_right_greenlet(loop):
    results = {}

    async def value_later(value, steps):
        for _ in range(steps):
            await loop.checkpoint()
        return value

    def sync(name):
        here = greenlet.getcurrent()
        got = []
        for i in range(10):
            got.append(greenback.await_(value_later((name, i), 1 + i % 3)))
            assert greenlet.getcurrent() is here
            got.append(library_await(value_later((name, -i), 1 + (i + 1) % 3)))
            assert greenlet.getcurrent() is here
        return got

    async def task(name):
        await greenback.ensure_portal()
        results[name] = await library_spawn(sync, name)

    async with loop.open_nursery() as nursery:
        for name in "abcd":
            nursery.start_soon(task, name)
    for name in "abcd":
        expected = []
        for i in range(10):
            expected += [(name, i), (name, -i)]
        assert results[name] == expected


async def test_await_in_a_library_greenlet_nested_in_another(checkpoint):
    async def value_later(value):
        await checkpoint()
        return value

    def innermost():
        return [greenback.await_(value_later(i)) for i in range(3)] + [library_await(value_later("lib"))]

    def middle():
        before = greenback.await_(value_later("before"))
        inner = greenback.await_(library_spawn(innermost))
        after = library_await(value_later("after"))
        return [before, inner, after]

    assert await greenback.with_portal_run(library_spawn, middle) == ["before", [0, 1, 2, "lib"], "after"]


async def test_an_exception_from_await_in_a_library_greenlet_reaches_its_sync_code(checkpoint):
    async def fail():
        await checkpoint()
        raise Bottom("in the library greenlet")

    def sync():
        try:
            greenback.await_(fail())
        except Bottom as exc:
            caught = exc
        else:  # pragma: no cover
            raise AssertionError("no exception")
        # The greenlet is still usable afterwards; an uncaught one goes up.
        assert greenback.await_(_value(checkpoint, 3)) == 3
        greenback.await_(fail())
        return caught  # pragma: no cover

    await greenback.ensure_portal()
    with pytest.raises(Bottom, match="in the library greenlet"):
        await library_spawn(sync)
    assert greenback.await_(_value(checkpoint, "portal still fine")) == "portal still fine"


async def _value(checkpoint, value):
    await checkpoint()
    return value


@pytest.mark.loop_backends("trio")
async def test_cancellation_reaches_await_in_a_library_greenlet():
    import trio

    log = []

    def sync():
        try:
            greenback.await_(trio.sleep_forever())
        finally:
            log.append("library greenlet unwound")

    await greenback.ensure_portal()
    with trio.move_on_after(0.01) as scope:
        await library_spawn(sync)
    assert scope.cancelled_caught
    assert log == ["library greenlet unwound"]
    assert greenback.await_(_value(trio.lowlevel.checkpoint, 1)) == 1
