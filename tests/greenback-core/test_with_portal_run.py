"""with_portal_run() and with_portal_run_sync(): a portal for the duration of one call."""

from __future__ import annotations

import functools

import pytest

import greenback
from greenback import _engine


class Failure(Exception):
    pass


async def async_add(a, b, *, scale=1, checkpoint=None):
    if checkpoint is not None:
        await checkpoint()
    return (a + b) * scale


def sync_add(a, b, *, scale=1, checkpoint=None):
    if checkpoint is not None:
        greenback.await_(checkpoint())
    return (a + b) * scale


@pytest.fixture(params=["no portal", "portal"])
def portal_state(request):
    """Each test below runs in a task without a portal, and in one with a portal."""
    return request.param


async def setup_portal(portal_state):
    if portal_state == "portal":
        await greenback.ensure_portal()
    assert greenback.has_portal() is (portal_state == "portal")


async def test_with_portal_run_returns_the_value_and_passes_args_and_kwargs(portal_state, checkpoint):
    await setup_portal(portal_state)
    assert await greenback.with_portal_run(async_add, 1, 2) == 3
    assert await greenback.with_portal_run(async_add, 1, 2, scale=10, checkpoint=checkpoint) == 30


async def test_with_portal_run_sync_returns_the_value_and_passes_args_and_kwargs(portal_state, checkpoint):
    await setup_portal(portal_state)
    assert await greenback.with_portal_run_sync(sync_add, 1, 2) == 3
    assert await greenback.with_portal_run_sync(sync_add, 1, 2, scale=10, checkpoint=checkpoint) == 30


async def test_with_portal_run_propagates_exceptions(portal_state, checkpoint):
    await setup_portal(portal_state)

    async def fail(checkpoint):
        await checkpoint()
        raise Failure("async")

    with pytest.raises(Failure, match="async"):
        await greenback.with_portal_run(fail, checkpoint)


async def test_with_portal_run_sync_propagates_exceptions(portal_state, checkpoint):
    await setup_portal(portal_state)

    def fail(checkpoint):
        greenback.await_(checkpoint())
        raise Failure("sync")

    with pytest.raises(Failure, match="sync"):
        await greenback.with_portal_run_sync(fail, checkpoint)


async def test_with_portal_run_sync_turns_a_stop_iteration_into_runtime_error_like_a_coroutine(portal_state):
    await setup_portal(portal_state)

    def stop():
        raise StopIteration("escaped")

    with pytest.raises(RuntimeError, match="StopIteration"):
        await greenback.with_portal_run_sync(stop)


async def test_with_portal_run_accepts_any_callable_returning_an_awaitable(portal_state, checkpoint):
    await setup_portal(portal_state)

    class Awaitable:
        def __await__(self):
            yield from checkpoint().__await__()
            return "custom"

    assert await greenback.with_portal_run(functools.partial(async_add, 1, scale=3), 1) == 6
    assert await greenback.with_portal_run(lambda: async_add(2, 2)) == 4
    assert await greenback.with_portal_run(Awaitable) == "custom"


async def test_with_portal_run_of_a_sync_function_raises_type_error_naming_with_portal_run_sync(portal_state):
    await setup_portal(portal_state)
    with pytest.raises(TypeError, match="with_portal_run_sync"):
        await greenback.with_portal_run(sync_add, 1, 2)
    with pytest.raises(TypeError, match="with_portal_run_sync"):
        await greenback.with_portal_run(print, "a sync builtin")


async def test_with_portal_run_of_a_non_callable_raises_type_error(portal_state):
    await setup_portal(portal_state)
    with pytest.raises(TypeError):
        await greenback.with_portal_run(42)
    coro = async_add(1, 2)
    with pytest.raises(TypeError):
        await greenback.with_portal_run(coro)  # a coroutine object, not a function
    coro.close()


async def test_with_portal_run_sync_of_a_non_callable_raises_type_error(portal_state):
    await setup_portal(portal_state)
    with pytest.raises(TypeError):
        await greenback.with_portal_run_sync(42)
    with pytest.raises(TypeError):
        await greenback.with_portal_run_sync("not callable", 1)


async def test_a_portal_made_by_with_portal_run_sync_lasts_only_for_the_call(checkpoint):
    portals = []

    def record():
        portals.append(_engine.current_portal())
        greenback.await_(checkpoint())
        return greenback.has_portal()

    assert await greenback.with_portal_run_sync(record) is True
    assert await greenback.with_portal_run_sync(record) is True
    assert greenback.has_portal() is False
    assert portals[0] is not None and portals[1] is not None and portals[0] is not portals[1]
    with pytest.raises(RuntimeError, match="must create a greenback portal"):
        greenback.await_(checkpoint())


async def test_ensure_portal_inside_with_portal_run_does_not_create_a_second_portal(loop):
    integration = greenback.lowlevel.current_integration()
    task = loop.current_task()
    original_coro = integration.get_coro(task)

    async def inside():
        outer = _engine.current_portal()
        await greenback.ensure_portal()
        await greenback.ensure_portal()
        assert _engine.current_portal() is outer
        # The task was not given a portal of its own: it still steps its own coroutine.
        assert integration.get_coro(task) is original_coro
        return greenback.await_(async_add(20, 22, checkpoint=loop.checkpoint))

    assert await greenback.with_portal_run(inside) == 42
    assert greenback.has_portal() is False
    assert integration.get_coro(task) is original_coro


async def test_with_portal_run_inside_a_portal_uses_that_portal(loop):
    await greenback.ensure_portal()
    outer = _engine.current_portal()

    async def inside():
        return _engine.current_portal()

    def inside_sync():
        return _engine.current_portal()

    assert await greenback.with_portal_run(inside) is outer
    assert await greenback.with_portal_run_sync(inside_sync) is outer


async def test_with_portal_run_sync_can_call_with_portal_run_sync_from_an_awaited_coroutine(checkpoint):
    async def level2():
        return await greenback.with_portal_run_sync(lambda: greenback.await_(async_add(1, 1, checkpoint=checkpoint)))

    def level1():
        return greenback.await_(level2()) + 1

    assert await greenback.with_portal_run_sync(level1) == 3


async def test_bestow_portal_on_self_inside_with_portal_run_outlasts_the_call(loop):
    async def inside():
        greenback.bestow_portal(loop.current_task())
        await loop.checkpoint()
        return greenback.await_(async_add(1, 1, checkpoint=loop.checkpoint))

    assert await greenback.with_portal_run(inside) == 2
    await loop.checkpoint()
    assert greenback.has_portal() is True
    assert greenback.await_(async_add(2, 2, checkpoint=loop.checkpoint)) == 4


async def test_with_portal_run_sync_hands_back_a_portal_its_function_returns(checkpoint):
    # The engine tells "the call parked" from the call's result by a private
    # marker, not by the result's type: a function may return a Portal.
    def own_portal(wait):
        if wait:
            greenback.await_(checkpoint())
        return _engine.current_portal()

    for wait in (False, True):
        portal = await greenback.with_portal_run_sync(own_portal, wait)
        assert isinstance(portal, _engine.Portal)
        assert portal._finished
    assert not greenback.has_portal()
