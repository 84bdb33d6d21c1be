"""The loop integration registry: missing integrations, and plugging in a new loop."""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
import uuid
import warnings

import pytest
import sniffio

import greenback
import greenback._loops
import greenback.lowlevel
from greenback.lowlevel import LoopIntegration, MissingIntegrationError


# -- finding the installed integrations ----------------------------------------------------


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_the_asyncio_and_trio_integrations_are_found(library):
    integration = greenback.lowlevel.integration_for(library)
    assert isinstance(integration, LoopIntegration)
    assert integration.library == library
    assert greenback.lowlevel.integration_for(library) is integration


async def test_current_integration_is_the_running_loops(loop):
    assert greenback.lowlevel.current_integration().library == loop.library


def test_current_integration_outside_any_loop_raises_runtime_error():
    with pytest.raises(RuntimeError):
        greenback.lowlevel.current_integration()


# -- the integration a task belongs to ----------------------------------------------------


class _SubclassedTask(asyncio.Task):  # type: ignore[type-arg]
    """An asyncio.Task subclass defined outside asyncio (its module is this test's)."""


async def test_integration_for_task_goes_by_the_task_not_by_the_running_library(loop):
    import trio

    # Whichever loop runs this test, each task maps to its own loop's integration.
    async def nothing():
        pass

    if loop.library == "trio":
        assert greenback.lowlevel.integration_for_task(trio.lowlevel.current_task()).library == "trio"
    else:
        task = asyncio.current_task()
        assert greenback.lowlevel.integration_for_task(task).library == "asyncio"
    coro = nothing()
    try:
        assert greenback.lowlevel.integration_for_task(coro) is None
        assert greenback.lowlevel.integration_for_task(object()) is None
        assert greenback.lowlevel.integration_for_task(None) is None
    finally:
        coro.close()


@pytest.mark.parametrize("task_type", ["asyncio.Task", "subclass"])
def test_integration_for_task_loads_the_integration_from_the_tasks_type(monkeypatch, task_type):
    # Nothing loaded yet: the library is found from the classes of the task's type.
    monkeypatch.setattr(greenback._loops, "_registry", {})
    monkeypatch.setattr(greenback._loops, "_by_task_type", {})
    loop = asyncio.new_event_loop()
    try:
        async def nothing():
            pass

        cls = asyncio.Task if task_type == "asyncio.Task" else _SubclassedTask
        task = cls(nothing(), loop=loop)
        assert greenback.lowlevel.integration_for_task(task).library == "asyncio"
        loop.run_until_complete(task)
    finally:
        loop.close()


def test_integration_for_task_of_a_known_loop_without_its_integration_names_the_install(monkeypatch):
    import trio

    monkeypatch.setattr(greenback._loops, "_registry", {})
    monkeypatch.setattr(greenback._loops, "_by_task_type", {})
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [] if kwargs else {})
    monkeypatch.setitem(sys.modules, "greenback_trio", None)

    async def main():
        task = trio.lowlevel.current_task()
        with pytest.raises(MissingIntegrationError, match=r'pip install "greenback\[trio\]"'):
            greenback.lowlevel.integration_for_task(task)
        with pytest.raises(MissingIntegrationError):
            greenback.bestow_portal(task)
        assert greenback.has_portal(task) is False  # never raises

    trio.run(main)


# -- a library with no integration ------------------------------------------------------------


def test_integration_for_an_unknown_library_raises_missing_integration_error():
    with pytest.raises(MissingIntegrationError) as info:
        greenback.lowlevel.integration_for("curio")
    message = str(info.value)
    assert "'curio'" in message
    # How to get one: an entry point in our group, or register_integration().
    assert greenback.lowlevel.ENTRY_POINT_GROUP in message
    assert "register_integration" in message
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_a_known_library_without_its_integration_names_the_pip_install_command(monkeypatch, library):
    # Pretend greenback-<library> is not installed: no entry point, no module.
    monkeypatch.setattr(greenback._loops, "_registry", {})
    monkeypatch.setattr(greenback._loops, "_by_task_type", {})
    # (Python 3.9's entry_points() takes no arguments and returns a dict.)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [] if kwargs else {})
    monkeypatch.setitem(sys.modules, f"greenback_{library}", None)
    with pytest.raises(MissingIntegrationError) as info:
        greenback.lowlevel.integration_for(library)
    assert f"'{library}'" in str(info.value)
    install = {
        "asyncio": 'pip install greenback-asyncio (a plain "pip install greenback" brings it)',
        "trio": 'pip install "greenback[trio]"',
    }[library]
    assert f"install it with: {install}" in str(info.value)


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_our_integrations_fast_path_finds_what_the_entry_points_name(library):
    # greenback finds its own integrations by module name, without reading
    # entry points (a process's first portal would take 10x longer); the two
    # ways must agree.
    found = [ep for ep in _loop_entry_points() if ep.name == library]
    assert len(found) == 1, found
    assert found[0].load() is importlib.import_module(f"greenback_{library}").integration
    assert greenback._loops._find_integration(library) is found[0].load()


def test_an_integration_whose_loop_library_is_missing_names_the_install_command(monkeypatch):
    # A plain `pip install greenback` brings greenback-trio, not Trio.
    monkeypatch.setattr(greenback._loops, "_registry", {})
    monkeypatch.delitem(sys.modules, "greenback_trio._integration", raising=False)
    monkeypatch.delitem(sys.modules, "greenback_trio", raising=False)
    monkeypatch.setitem(sys.modules, "trio", None)  # `import trio` raises ImportError
    with pytest.raises(MissingIntegrationError) as info:
        greenback.lowlevel.integration_for("trio")
    assert "greenback's integration for 'trio' (greenback_trio) cannot be loaded" in str(info.value)
    assert str(info.value).endswith('install it with: pip install "greenback[trio]"')


def _loop_entry_points():
    found = importlib.metadata.entry_points()
    if hasattr(found, "select"):
        return list(found.select(group="greenback.loops"))
    return list(found.get("greenback.loops", []))  # Python 3.9


async def test_a_running_library_with_no_integration_raises_missing_integration_error(monkeypatch, checkpoint):
    async def never_awaited():
        pass  # pragma: no cover

    with monkeypatch.context() as patch:
        patch.setattr(sniffio, "current_async_library", lambda: "curio")
        with pytest.raises(MissingIntegrationError, match="'curio'"):
            await greenback.ensure_portal()
        # bestow_portal() goes by the task's own type, not by the running
        # library: an object no integration claims is no task at all.
        with pytest.raises(TypeError, match="expects a task"):
            greenback.bestow_portal(object())
        # has_portal never raises; await_ says the library is not supported
        # (a portal could not be made here), with a RuntimeError as 1.3.0 did.
        assert greenback.has_portal() is False
        assert greenback.has_portal(object()) is False
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(MissingIntegrationError, match="greenback does not support curio: .*'curio'"):
                greenback.await_(never_awaited())
            gc.collect()
        assert [w for w in caught if "never awaited" in str(w.message)] == []
    # Back under the real loop, everything works again.
    await greenback.ensure_portal()
    assert greenback.await_(_value(checkpoint, 1)) == 1


async def _value(checkpoint, value):
    await checkpoint()
    return value


# -- registering a new loop -------------------------------------------------------------------


def test_register_integration_rejects_what_is_not_an_integration():
    with pytest.raises(TypeError):
        greenback.lowlevel.register_integration(object())  # type: ignore[arg-type]

    nameless = ToyIntegration(ToyLoop("unused"))
    nameless.library = ""
    with pytest.raises(ValueError):
        greenback.lowlevel.register_integration(nameless)


# The toy loop and its integration, as a third party would publish them (see
# tests/packaging/toyloop/). Here it is registered by hand, under a new name
# per test; the packaging tests install it and find it by its entry point.
_spec = importlib.util.spec_from_file_location(
    "greenback_toyloop", Path(__file__).parents[1] / "packaging" / "toyloop" / "src" / "greenback_toyloop" / "__init__.py"
)
assert _spec is not None and _spec.loader is not None
toyloop = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("greenback_toyloop", toyloop)
_spec.loader.exec_module(toyloop)
ToyLoop, ToyTask, toy_yield = toyloop.ToyLoop, toyloop.ToyTask, toyloop.toy_yield


def ToyIntegration(loop):  # noqa: N802 - reads as the class it makes
    return toyloop.ToyIntegration(loop.library)


@pytest.fixture
def toy_loop():
    return ToyLoop(f"toyloop-{uuid.uuid4().hex[:8]}")


def test_a_loop_without_a_registered_integration_cannot_make_portals(toy_loop):
    async def main():
        await greenback.ensure_portal()

    with pytest.raises(MissingIntegrationError, match=toy_loop.library):
        toy_loop.run(main)


def test_register_integration_lets_a_new_loop_use_portals(toy_loop):
    greenback.lowlevel.register_integration(ToyIntegration(toy_loop))
    assert greenback.lowlevel.integration_for(toy_loop.library).library == toy_loop.library

    def sync_code(n):
        # Each await_ goes out to the toy loop and back.
        return [greenback.await_(toy_yield(i)) for i in range(n)]

    async def main():
        assert greenback.has_portal() is False
        steps_before = toy_loop.steps
        await greenback.ensure_portal()
        assert toy_loop.steps == steps_before + 1  # a checkpoint of the toy loop
        assert greenback.has_portal() is True
        assert greenback.has_portal(toy_loop.current_task) is True
        return sync_code(3)

    assert toy_loop.run(main) == [0, 1, 2]


def test_a_new_loop_supports_with_portal_run_sync_bestow_portal_and_errors(toy_loop):
    greenback.lowlevel.register_integration(ToyIntegration(toy_loop))

    class Failure(Exception):
        pass

    async def fail():
        await toy_yield()
        raise Failure("toy")

    log = []

    async def child():
        await toy_yield()  # bestow_portal happens before this step resumes
        log.append(("child", greenback.has_portal(), greenback.await_(toy_yield("child value"))))

    async def main():
        assert await greenback.with_portal_run_sync(lambda: greenback.await_(toy_yield("wprs"))) == "wprs"
        assert greenback.has_portal() is False
        task = toy_loop.spawn(child())
        greenback.bestow_portal(task)
        assert greenback.has_portal(task) is True
        with pytest.raises(Failure, match="toy"):
            await greenback.with_portal_run_sync(lambda: greenback.await_(fail()))
        while not task.done:
            await toy_yield()
        assert task.error is None
        greenback.bestow_portal(toy_loop.current_task)
        with pytest.raises(RuntimeError, match="must yield to the event loop"):
            greenback.await_(toy_yield())
        await toy_yield()
        return greenback.await_(toy_yield("main value"))

    assert toy_loop.run(main) == "main value"
    assert log == [("child", True, "child value")]
