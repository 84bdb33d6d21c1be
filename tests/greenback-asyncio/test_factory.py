"""Portals for every task of a loop: task factories, loop factories, greenback_asyncio.run."""

from __future__ import annotations

import asyncio
import sys

import pytest

import greenback
import greenback_asyncio
from greenback._engine import Portal

needs_runner = pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner arrived in 3.11")
needs_run_loop_factory = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) arrived in 3.12"
)


def sync_echo(value):
    return greenback.await_(asyncio.sleep(0, value))


async def portal_report():
    """What a portal-everywhere main task sees: itself and a child both have portals."""
    child = asyncio.ensure_future(asyncio.sleep(0, "child"))
    return sync_echo("main"), greenback.has_portal(child), await child


def test_greenback_asyncio_run(loop):
    assert greenback_asyncio.run(portal_report(), loop_factory=loop.new_loop) == ("main", True, "child")


def test_greenback_asyncio_run_default_loop_and_debug():
    async def main():
        return asyncio.get_running_loop().get_debug(), sync_echo(1)

    assert greenback_asyncio.run(main(), debug=True) == (True, 1)


def test_greenback_asyncio_run_rejects_non_coroutines_like_asyncio_run():
    # A ValueError before Python 3.14, a TypeError since (asyncio.run() takes
    # any awaitable there).
    with pytest.raises(Exception) as stock:
        asyncio.run(42)  # type: ignore[arg-type]
    assert isinstance(stock.value, ValueError if sys.version_info < (3, 14) else TypeError)
    with pytest.raises(type(stock.value)) as ours:
        greenback_asyncio.run(42)  # type: ignore[arg-type]
    assert str(ours.value) == str(stock.value)


def test_greenback_asyncio_run_inside_a_running_loop_fails():
    async def main():
        coro = asyncio.sleep(0)
        try:
            greenback_asyncio.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(main())


@needs_runner
def test_runner_loop_factory(loop):
    factory = greenback_asyncio.portal_loop_factory(loop.new_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(portal_report()) == ("main", True, "child")
        # A second run on the same Runner (the same loop) too.
        assert runner.run(portal_report()) == ("main", True, "child")


@needs_run_loop_factory
def test_asyncio_run_loop_factory():
    assert asyncio.run(portal_report(), loop_factory=greenback_asyncio.new_event_loop) == ("main", True, "child")


@needs_run_loop_factory
@pytest.mark.skipif(
    sys.implementation.name == "pypy", reason="uvloop supports CPython only: there is no uvloop for PyPy"
)
def test_asyncio_run_loop_factory_uvloop():
    uvloop = pytest.importorskip("uvloop")
    factory = greenback_asyncio.portal_loop_factory(uvloop.new_event_loop)
    assert asyncio.run(portal_report(), loop_factory=factory) == ("main", True, "child")


def test_set_task_factory_portal_task_factory(loop):
    def setup(loop):
        loop.set_task_factory(greenback_asyncio.portal_task_factory)

    assert loop.run(portal_report, setup=setup) == ("main", True, "child")


def test_install_composes_and_uninstall_restores(loop):
    made = []

    def user_factory(loop, coro, **kwargs):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(user_factory)
        greenback_asyncio.install_portal_task_factory()
        greenback_asyncio.install_portal_task_factory()  # idempotent
        with_portal = await asyncio.ensure_future(asyncio.sleep(0, "x"))
        child = asyncio.ensure_future(asyncio.sleep(0))
        had = greenback.has_portal(child)
        await child
        greenback_asyncio.uninstall_portal_task_factory()
        greenback_asyncio.uninstall_portal_task_factory()  # idempotent
        child = asyncio.ensure_future(asyncio.sleep(0))
        has_after = greenback.has_portal(child)
        await child
        return (
            with_portal,
            had,
            has_after,
            loop.get_task_factory() is user_factory,
            [isinstance(c, Portal) for c in made],
        )

    assert loop.run(main) == ("x", True, False, True, [True, True, False])


def test_install_and_uninstall_with_tree_scopes_interleaved(loop):
    async def main():
        loop = asyncio.get_running_loop()
        before = loop.get_task_factory()
        with greenback.portals_for_children():
            greenback_asyncio.install_portal_task_factory()
        # The tree's factory was taken out from under the portal factory.
        installed = loop.get_task_factory()
        outside = asyncio.ensure_future(asyncio.sleep(0))
        has = greenback.has_portal(outside)
        await outside
        greenback_asyncio.uninstall_portal_task_factory()
        return isinstance(installed, greenback_asyncio.PortalTaskFactory), installed.inner is before, has, (
            loop.get_task_factory() is before
        )

    assert loop.run(main) == (True, True, True, True)


def test_install_needs_a_loop():
    with pytest.raises(RuntimeError, match="needs a loop"):
        greenback_asyncio.install_portal_task_factory()


def test_install_on_a_loop_before_it_runs(loop):
    new_loop = loop.new_loop()
    try:
        greenback_asyncio.install_portal_task_factory(new_loop)
        assert new_loop.run_until_complete(portal_report()) == ("main", True, "child")
        greenback_asyncio.uninstall_portal_task_factory(new_loop)
        assert new_loop.get_task_factory() is None
    finally:
        new_loop.close()


def test_factory_leaves_non_coroutines_to_asyncio(loop):
    async def main():
        with pytest.raises(TypeError):
            asyncio.get_running_loop().create_task(42)  # type: ignore[arg-type]
        return "ok"

    assert greenback_asyncio.run(main(), loop_factory=loop.new_loop) == "ok"


def test_portal_task_factory_wrapping_another(loop):
    seen = []

    def inner(loop, coro, **kwargs):
        seen.append(type(coro).__name__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    def setup(loop):
        loop.set_task_factory(greenback_asyncio.PortalTaskFactory(inner))

    assert loop.run(portal_report, setup=setup) == ("main", True, "child")
    assert seen[:2] == ["TaskPortal", "TaskPortal"]  # main and child (then the runner's own shutdown task)
    with pytest.raises(TypeError):
        greenback_asyncio.PortalTaskFactory(42)  # type: ignore[arg-type]


def test_task_names_and_context_pass_through(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")

    async def read():
        return var.get(), sync_echo(asyncio.current_task().get_name())

    async def main():
        var.set("main")
        named = await asyncio.get_running_loop().create_task(read(), name="named")
        result = [named]
        if sys.version_info >= (3, 11):
            ctx = contextvars.copy_context()
            ctx.run(var.set, "explicit")
            result.append(await asyncio.get_running_loop().create_task(read(), name="ctx", context=ctx))
        return result

    expected = [("main", "named")] + ([("explicit", "ctx")] if sys.version_info >= (3, 11) else [])
    assert greenback_asyncio.run(main(), loop_factory=loop.new_loop) == expected
