"""Fixtures for greenback-asyncio's tests.

``async def test_*`` functions here are run under ``asyncio.run`` by the shared
``tests/conftest.py``.

Task flavors
------------

Tests that must hold for every kind of asyncio task and
loop take the ``flavor`` fixture instead: ``flavor.run(async_fn, *args)`` runs
a fresh loop of that kind, whose tasks (including the one running
*async_fn*) are of ``flavor.task_type``.

Flavors:

* ``c-task``: the default loop and its C-accelerated ``asyncio.Task``;
* ``py-task``: the pure-Python ``asyncio.tasks._PyTask``, through a task factory;
* ``c-task-subclass`` / ``py-task-subclass``: a user subclass of either;
* ``uvloop``: uvloop's loop (which uses the C ``asyncio.Task``);
* ``runner``: ``asyncio.Runner`` (3.11+);
* ``eager`` / ``py-eager``: eager tasks (3.12+), C and pure-Python.

On Python 3.14+ the pure-Python flavors run with asyncio's pure-Python
``current_task()``/``all_tasks()`` (see :func:`pure_python_bookkeeping`).

Loop kinds
----------

Tests of the extras (tree portals, portal task factories, nested runs, eager
tasks, IPython) are plain (sync) test functions that run their own loops
through the ``aio`` fixture, which is parametrized over the default asyncio
loop and uvloop (where installed), so that every test runs on both. Tests
marked ``anyio`` run under anyio's pytest plugin on the backends of
``anyio_backend`` below: asyncio, asyncio with uvloop, and Trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Awaitable, Callable, Iterator, Optional, TypeVar

import pytest

T = TypeVar("T")

PyTask: Any = getattr(asyncio.tasks, "_PyTask", asyncio.Task)


@contextlib.contextmanager
def pure_python_bookkeeping(task_type: Any) -> Iterator[None]:
    """Let ``asyncio.current_task()`` and ``asyncio.all_tasks()`` see tasks of *task_type*.

    Since Python 3.14 the C-accelerated ``current_task()``/``all_tasks()``
    keep their own books, which the pure-Python Task does not write to: inside
    a ``_PyTask`` they report no task (``sniffio``, ``anyio``, asyncio's own
    ``timeout()`` and greenback with them). CPython calls mixing the two
    unsupported (https://github.com/python/cpython/issues/131709): a pure-Python
    Task goes with the pure-Python functions, which is what this installs for
    the block. Before 3.14, and for C tasks, it changes nothing.
    """
    py_current = getattr(asyncio.tasks, "_py_current_task", None)
    py_all = getattr(asyncio.tasks, "_py_all_tasks", None)
    if (
        sys.version_info < (3, 14)
        or not (isinstance(task_type, type) and issubclass(task_type, PyTask))
        or py_current is None
        or py_all is None
    ):
        yield
        return
    saved = [(owner, name, getattr(owner, name)) for owner in (asyncio, asyncio.tasks) for name in ("current_task", "all_tasks")]
    for owner, name, _ in saved:
        setattr(owner, name, py_current if name == "current_task" else py_all)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


class UserTask(asyncio.Task):  # type: ignore[type-arg]
    """A user's subclass of the C-accelerated Task."""

    steps_seen = 0


class UserPyTask(PyTask):  # type: ignore[misc, valid-type]
    """A user's subclass of the pure-Python Task."""


def _factory_for(task_type: Any, **extra: Any) -> Callable[..., Any]:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        return task_type(coro, loop=loop, **extra, **kwargs)

    return factory


def _uvloop_or_skip() -> Any:
    try:
        import uvloop
    except ImportError as exc:  # pragma: no cover - depends on the platform
        if sys.implementation.name == "pypy":
            pytest.skip("uvloop supports CPython only: there is no uvloop for PyPy")
        pytest.skip(f"uvloop cannot be imported on this Python/platform: {exc}")
    return uvloop


class Flavor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.task_type: Any = asyncio.Task
        self.factory: Optional[Callable[..., Any]] = None
        self.eager = False
        if name == "c-task":
            pass
        elif name == "py-task":
            self.task_type = PyTask
            self.factory = _factory_for(PyTask)
        elif name == "c-task-subclass":
            self.task_type = UserTask
            self.factory = _factory_for(UserTask)
        elif name == "py-task-subclass":
            self.task_type = UserPyTask
            self.factory = _factory_for(UserPyTask)
        elif name == "uvloop":
            _uvloop_or_skip()
        elif name == "runner":
            if sys.version_info < (3, 11):
                pytest.skip("asyncio.Runner is new in Python 3.11")
        elif name in ("eager", "py-eager"):
            if sys.version_info < (3, 12):
                pytest.skip("eager tasks are new in Python 3.12")
            self.eager = True
            if name == "eager":
                self.factory = asyncio.eager_task_factory  # type: ignore[attr-defined]
            else:
                self.task_type = PyTask
                self.factory = _factory_for(PyTask, eager_start=True)
        else:  # pragma: no cover
            raise ValueError(name)

    def __repr__(self) -> str:
        return f"<Flavor {self.name}>"

    def new_loop(self) -> asyncio.AbstractEventLoop:
        if self.name == "uvloop":
            loop: asyncio.AbstractEventLoop = _uvloop_or_skip().new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        if self.factory is not None:
            loop.set_task_factory(self.factory)
        return loop

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        with pure_python_bookkeeping(self.task_type):
            return self._run(async_fn, *args)

    def _run(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self.name == "runner":
            with asyncio.Runner() as runner:  # type: ignore[attr-defined]
                return runner.run(async_fn(*args))  # type: ignore[no-any-return]
        loop = self.new_loop()
        try:
            return loop.run_until_complete(async_fn(*args))
        finally:
            try:
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def check_task(self, task: Any) -> None:
        """Assert that *task* is of the kind this flavor makes."""
        assert type(task) is self.task_type, (type(task), self.task_type)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


FLAVORS = ("c-task", "py-task", "c-task-subclass", "py-task-subclass", "uvloop", "runner", "eager", "py-eager")


@pytest.fixture(params=FLAVORS)
def flavor(request: pytest.FixtureRequest) -> Flavor:
    return Flavor(request.param)


@pytest.fixture
def bookkeeping() -> Callable[[Any], "contextlib.AbstractContextManager[None]"]:
    """:func:`pure_python_bookkeeping`, for tests that run pure-Python tasks themselves."""
    return pure_python_bookkeeping


# -- loop kinds: the default asyncio loop and uvloop ------------------------------

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not on every platform
    uvloop = None

LOOP_KINDS = ["asyncio", "uvloop"]
# Why uvloop's runs are skipped where it is missing.
NO_UVLOOP = (
    "uvloop supports CPython only: there is no uvloop for PyPy"
    if sys.implementation.name == "pypy"
    else "uvloop is not installed"
)


class AioRunner:
    """Runs a coroutine function on a fresh loop of one kind (default or uvloop)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<AioRunner {self.kind}>"

    def new_loop(self) -> asyncio.AbstractEventLoop:
        if self.kind == "uvloop":
            return uvloop.new_event_loop()  # type: ignore[no-any-return,union-attr]
        return asyncio.new_event_loop()

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, setup: Optional[Callable[[Any], None]] = None) -> T:
        """Like asyncio.run(async_fn(*args)) on a new loop of this kind.

        *setup*, if given, is called with the loop before the main task is
        created (to install a task factory, say).
        """
        loop = self.new_loop()
        try:
            asyncio.set_event_loop(loop)
            if setup is not None:
                setup(loop)
            return loop.run_until_complete(async_fn(*args))
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    __call__ = run


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


@pytest.fixture(params=LOOP_KINDS)
def aio(request: pytest.FixtureRequest) -> AioRunner:
    """An :class:`AioRunner` for the default asyncio loop, then for uvloop."""
    if request.param == "uvloop" and uvloop is None:
        pytest.skip(NO_UVLOOP)
    return AioRunner(request.param)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    backend, options = request.param
    if options.get("use_uvloop") and uvloop is None:
        pytest.skip(NO_UVLOOP)
    return request.param
