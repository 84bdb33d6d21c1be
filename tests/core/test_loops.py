"""The loop integration registry: missing integrations, and plugging in a new loop."""

from __future__ import annotations

import asyncio
import collections
import gc
import importlib.metadata
import sys
import types
import uuid
import warnings

import pytest
import sniffio

import greenback
import greenback.loops
from greenback.loops import LoopIntegration, MissingIntegrationError


# -- finding the installed integrations ----------------------------------------------------


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_the_asyncio_and_trio_integrations_are_found(library):
    integration = greenback.loops.integration_for(library)
    assert isinstance(integration, LoopIntegration)
    assert integration.library == library
    assert greenback.loops.integration_for(library) is integration


async def test_current_integration_is_the_running_loops(loop_name):
    assert greenback.loops.current_integration().library == loop_name


def test_current_integration_outside_any_loop_raises_runtime_error():
    with pytest.raises(RuntimeError):
        greenback.loops.current_integration()


# -- the integration a task belongs to ----------------------------------------------------


class _SubclassedTask(asyncio.Task):  # type: ignore[type-arg]
    """An asyncio.Task subclass defined outside asyncio (its module is this test's)."""


async def test_integration_for_task_goes_by_the_task_not_by_the_running_library(loop_name):
    import trio

    # Whichever loop runs this test, each task maps to its own loop's integration.
    async def nothing():
        pass

    if loop_name == "trio":
        assert greenback.loops.integration_for_task(trio.lowlevel.current_task()).library == "trio"
    else:
        task = asyncio.current_task()
        assert greenback.loops.integration_for_task(task).library == "asyncio"
    coro = nothing()
    try:
        assert greenback.loops.integration_for_task(coro) is None
        assert greenback.loops.integration_for_task(object()) is None
        assert greenback.loops.integration_for_task(None) is None
    finally:
        coro.close()


@pytest.mark.parametrize("task_type", ["asyncio.Task", "subclass"])
def test_integration_for_task_loads_the_integration_from_the_tasks_type(monkeypatch, task_type):
    # Nothing loaded yet: the library is found from the classes of the task's type.
    monkeypatch.setattr(greenback.loops, "_registry", {})
    loop = asyncio.new_event_loop()
    try:
        async def nothing():
            pass

        cls = asyncio.Task if task_type == "asyncio.Task" else _SubclassedTask
        task = cls(nothing(), loop=loop)
        assert greenback.loops.integration_for_task(task).library == "asyncio"
        loop.run_until_complete(task)
    finally:
        loop.close()


def test_integration_for_task_of_a_known_loop_without_its_integration_names_the_install(monkeypatch):
    import trio

    monkeypatch.setattr(greenback.loops, "_registry", {})
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [] if kwargs else {})
    monkeypatch.setitem(sys.modules, "greenback_trio", None)

    async def main():
        task = trio.lowlevel.current_task()
        with pytest.raises(MissingIntegrationError, match=r'pip install "greenback\[trio\]"'):
            greenback.loops.integration_for_task(task)
        with pytest.raises(MissingIntegrationError):
            greenback.bestow_portal(task)
        assert greenback.has_portal(task) is False  # never raises

    trio.run(main)


# -- a library with no integration ------------------------------------------------------------


def test_integration_for_an_unknown_library_raises_missing_integration_error():
    with pytest.raises(MissingIntegrationError) as info:
        greenback.loops.integration_for("curio")
    message = str(info.value)
    assert "'curio'" in message
    # How to get one: an entry point in our group, or register_integration().
    assert greenback.loops.ENTRY_POINT_GROUP in message
    assert "register_integration" in message
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_a_known_library_without_its_integration_names_the_pip_install_command(monkeypatch, library):
    # Pretend greenback-<library> is not installed: no entry point, no module.
    monkeypatch.setattr(greenback.loops, "_registry", {})
    # (Python 3.9's entry_points() takes no arguments and returns a dict.)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [] if kwargs else {})
    monkeypatch.setitem(sys.modules, f"greenback_{library}", None)
    with pytest.raises(MissingIntegrationError) as info:
        greenback.loops.integration_for(library)
    assert f"'{library}'" in str(info.value)
    assert f'pip install "greenback[{library}]"' in str(info.value)


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
        greenback.loops.register_integration(object())  # type: ignore[arg-type]

    nameless = ToyIntegration(ToyLoop("unused"))
    nameless.library = ""
    with pytest.raises(ValueError):
        greenback.loops.register_integration(nameless)


@types.coroutine
def toy_yield(value=None):
    """The toy loop's only trap: reschedule me, and send back what I was given."""
    return (yield ("toy-yield", value))


class ToyTask:
    def __init__(self, coro):
        self.coro = coro
        self.done = False
        self.result = None
        self.error = None


class ToyLoop:
    """A minimal event loop: a FIFO of tasks, one trap, sniffio told its name."""

    current: "ToyLoop | None" = None

    def __init__(self, library):
        self.library = library
        self.ready = collections.deque()
        self.current_task = None
        self.steps = 0

    def spawn(self, coro):
        task = ToyTask(coro)
        self.ready.append((task, None))
        return task

    def run(self, async_fn, *args):
        main = self.spawn(async_fn(*args))
        token = sniffio.current_async_library_cvar.set(self.library)
        ToyLoop.current = self
        try:
            while self.ready:
                task, value = self.ready.popleft()
                self.current_task = task
                self.steps += 1
                try:
                    trap = task.coro.send(value)
                except StopIteration as stop:
                    task.done, task.result = True, stop.value
                except BaseException as exc:  # noqa: B036 - reported below
                    task.done, task.error = True, exc
                else:
                    kind, payload = trap
                    assert kind == "toy-yield", f"unknown trap {trap!r}"
                    self.ready.append((task, payload))
                finally:
                    self.current_task = None
        finally:
            ToyLoop.current = None
            sniffio.current_async_library_cvar.reset(token)
        if main.error is not None:
            raise main.error
        return main.result


class ToyIntegration(LoopIntegration):
    """What a third party writes to support its loop: no change to greenback itself."""

    def __init__(self, loop):
        self.library = loop.library

    def current_task(self):
        return ToyLoop.current.current_task if ToyLoop.current is not None else None

    def is_task(self, obj):
        return isinstance(obj, ToyTask)

    def task_is_done(self, task):
        return task.done

    def get_coro(self, task):
        return task.coro

    def set_coro(self, task, coro):
        task.coro = coro

    def checkpoint(self):
        return toy_yield()


@pytest.fixture
def toy_loop():
    return ToyLoop(f"toyloop-{uuid.uuid4().hex[:8]}")


def test_a_loop_without_a_registered_integration_cannot_make_portals(toy_loop):
    async def main():
        await greenback.ensure_portal()

    with pytest.raises(MissingIntegrationError, match=toy_loop.library):
        toy_loop.run(main)


def test_register_integration_lets_a_new_loop_use_portals(toy_loop):
    greenback.loops.register_integration(ToyIntegration(toy_loop))
    assert greenback.loops.integration_for(toy_loop.library).library == toy_loop.library

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
    greenback.loops.register_integration(ToyIntegration(toy_loop))

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
