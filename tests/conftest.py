"""Shared fixtures and helpers for the whole test suite.

Running tests under both event loops
------------------------------------

Most of greenback's behaviour must hold under asyncio and under Trio alike, so
the suite runs such tests once per loop:

* An ``async def test_*`` function is run by this conftest (no plugin needed):
  once under asyncio and once under Trio, as ``test_x[asyncio]`` and
  ``test_x[trio]``. Its fixtures are set up outside the loop, as usual.
* A sync test that asks for the ``run`` (or ``loop``, or ``loop_name``)
  fixture is parametrized the same way; ``run(async_fn, *args)`` runs one
  event loop to completion and returns what *async_fn* returned.

Restrict a test (or a module, through ``pytestmark``) with
``@pytest.mark.loops("trio")``. Tests in ``tests/greenback-trio`` or
``tests/greenback-asyncio`` default to that loop only. Tests marked ``anyio`` are left to
anyio's own pytest plugin.

Helpers
-------

* ``loop`` fixture: a :class:`LoopKit` for the loop under test: ``run()``,
  ``checkpoint()``, ``sleep()``, ``current_task()``, ``Event()``, and
  ``open_nursery()`` (a Trio nursery, or an equivalent for asyncio that needs
  no ``TaskGroup``, so it works on Python 3.9 too).
* :func:`checkpoint` (also a fixture): yield once to whichever loop is running.
* :func:`live_greenlets` (also a fixture): how many greenlet objects are still
  in memory after a full garbage collection.
* :func:`full_collect` (also a fixture): that full garbage collection, which
  takes more passes on PyPy (see ``GC_PASSES``).

With ``--import-mode=importlib`` nothing under ``tests/`` can be imported by
name, so tests reach these helpers through the fixtures of the same name.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import pytest

T = TypeVar("T")

LOOPS = ("asyncio", "trio")


# -- helpers that work under whichever loop is running ------------------------


def _running_library() -> str:
    import sniffio

    return sniffio.current_async_library()


async def checkpoint() -> None:
    """Yield to the running event loop once (a Trio checkpoint, or ``asyncio.sleep(0)``)."""
    if _running_library() == "trio":
        import trio

        await trio.lowlevel.checkpoint()
    else:
        await asyncio.sleep(0)


# How many collections free all garbage. On CPython finalizers run as soon as
# a collection finds an object unreachable. PyPy keeps whatever an object with
# a finalizer refers to alive until that finalizer has run, so a chain of them
# (a task, its portal, the coroutine in it, the frames below...) goes one link
# per collection.
GC_PASSES = 6 if sys.implementation.name == "pypy" else 3


def full_collect() -> None:
    """Collect until all garbage, finalizers included, is gone (see GC_PASSES)."""
    for _ in range(GC_PASSES):
        gc.collect()


def live_greenlets() -> int:
    """The number of greenlet objects in memory after a full garbage collection.

    Dead greenlets that something still references count too: they are what a
    leak looks like.
    """
    import greenlet

    full_collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet))


@pytest.fixture
def only_new_objects() -> Iterator[None]:
    """For the test, collections and gc.get_objects() see only what it creates.

    gc.freeze() sets everything alive now aside: counts of live greenlets or
    portals then cost milliseconds, not the tenth of a second a full
    collection takes in a heap that holds the whole test run's modules, and
    what the test leaves alive is still counted (it is new). No-op where
    there is no gc.freeze() (PyPy).
    """
    if not hasattr(gc, "freeze"):
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _AsyncioNursery:
    """The part of a Trio nursery the tests use, for asyncio, without TaskGroup."""

    def __init__(self) -> None:
        self._tasks: List["asyncio.Task[Any]"] = []

    def start_soon(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> "asyncio.Task[Any]":
        task = asyncio.ensure_future(async_fn(*args))
        self._tasks.append(task)
        return task

    async def __aenter__(self) -> "_AsyncioNursery":
        return self

    async def __aexit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        try:
            if exc is not None:
                raise exc
            while True:
                pending = [t for t in self._tasks if not t.done()]
                if not pending:
                    break
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                if any(not t.cancelled() and t.exception() is not None for t in done):
                    break
        except BaseException:
            await self._cancel_all()
            raise
        await self._cancel_all()
        for task in self._tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return False

    async def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            while not task.done():
                try:
                    await asyncio.wait([task])
                except asyncio.CancelledError:  # keep waiting: children must not outlive us
                    continue


class LoopKit:
    """What a test needs from the loop it runs under, the same way for both loops."""

    def __init__(self, name: str) -> None:
        if name not in LOOPS:
            raise ValueError(f"unknown loop {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"<LoopKit {self.name}>"

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run a fresh event loop until ``async_fn(*args, **kwargs)`` returns."""
        if self.name == "trio":
            import trio

            return trio.run(functools.partial(async_fn, *args, **kwargs))
        return asyncio.run(async_fn(*args, **kwargs))  # type: ignore[arg-type]

    async def checkpoint(self) -> None:
        await checkpoint()

    async def sleep(self, seconds: float) -> None:
        if self.name == "trio":
            import trio

            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    def current_task(self) -> Any:
        if self.name == "trio":
            import trio

            return trio.lowlevel.current_task()
        return asyncio.current_task()

    def Event(self) -> Any:  # noqa: N802 - mirrors trio.Event / asyncio.Event
        if self.name == "trio":
            import trio

            return trio.Event()
        return asyncio.Event()

    def open_nursery(self) -> Any:
        """``async with loop.open_nursery() as n: n.start_soon(fn, *args)``."""
        if self.name == "trio":
            import trio

            return trio.open_nursery()
        return _AsyncioNursery()


# -- parametrization -----------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "loops(*names): run this test only under the named event loops "
        f"(any of {', '.join(LOOPS)}); see tests/conftest.py",
    )


# The test folders of a loop integration's distribution: their tests run
# under that loop only, unless marked otherwise.
_FOLDER_LOOPS = {"greenback-asyncio": "asyncio", "greenback-trio": "trio"}


def _default_loops(path: Path) -> Sequence[str]:
    for part in reversed(path.parts[:-1]):
        if part in _FOLDER_LOOPS:
            return (_FOLDER_LOOPS[part],)
        if part == "tests":
            break
    return LOOPS


def _is_async_test(function: Any) -> bool:
    return inspect.iscoroutinefunction(function)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("anyio") is not None:
        return
    wants_loop = _is_async_test(metafunc.function) or "loop_name" in metafunc.fixturenames
    if not wants_loop:
        return
    marker = metafunc.definition.get_closest_marker("loops")
    if marker is not None:
        loops = tuple(marker.args)
        unknown = [name for name in loops if name not in LOOPS]
        if unknown or not loops:
            raise pytest.UsageError(f"@pytest.mark.loops takes names from {LOOPS}, got {loops}")
    else:
        loops = tuple(_default_loops(Path(str(metafunc.definition.path))))
    if "loop_name" not in metafunc.fixturenames:
        metafunc.fixturenames.append("loop_name")
    metafunc.parametrize("loop_name", loops, ids=list(loops))


@pytest.fixture
def loop_name(request: pytest.FixtureRequest) -> str:
    """The name of the event loop this test runs under (set by parametrization)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def loop(loop_name: str) -> LoopKit:
    return LoopKit(loop_name)


@pytest.fixture
def run(loop: LoopKit) -> Callable[..., Any]:
    """``run(async_fn, *args)``: run a fresh loop of the parametrized kind."""
    return loop.run


@pytest.fixture(name="checkpoint")
def _checkpoint_fixture() -> Callable[[], Awaitable[None]]:
    return checkpoint


@pytest.fixture(name="full_collect")
def _full_collect_fixture() -> Callable[[], None]:
    return full_collect


@pytest.fixture(name="live_greenlets")
def _live_greenlets_fixture() -> Callable[[], int]:
    return live_greenlets


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    if not _is_async_test(pyfuncitem.obj) or pyfuncitem.get_closest_marker("anyio") is not None:
        return None
    funcargs: Dict[str, Any] = pyfuncitem.funcargs
    callspec = getattr(pyfuncitem, "callspec", None)
    loop_name = callspec.params.get("loop_name") if callspec is not None else None
    if loop_name is None:  # pragma: no cover - pytest_generate_tests always sets it
        return None
    argnames = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: funcargs[name] for name in argnames}
    LoopKit(loop_name).run(pyfuncitem.obj, **kwargs)
    return True
