"""Shared fixtures and helpers for the whole test suite.

One loop fixture
----------------

Most of greenback's behaviour must hold under every event loop and every kind
of asyncio task, so a test says which loops it claims, and runs once under
each. As with anyio's ``anyio_backend``, the ``loop_backend`` fixture names
the loop; this file is the one place that knows how to start each of them
(:class:`LoopBackend`). The backends, in the order tests run under them:

* ``asyncio``: asyncio's default loop and its C-accelerated ``asyncio.Task``;
* ``asyncio-py-task``: the pure-Python ``asyncio.tasks._PyTask``, made by a
  task factory (on Python 3.14+ with asyncio's pure-Python ``current_task()``
  and ``all_tasks()``: see :func:`pure_python_bookkeeping`);
* ``asyncio-task-subclass`` / ``asyncio-py-task-subclass``: a user's subclass
  of either Task;
* ``asyncio-runner``: the default loop run by ``asyncio.Runner`` (3.11+);
* ``asyncio-eager`` / ``asyncio-py-eager``: eager tasks (3.12+), C and
  pure-Python;
* ``uvloop``: uvloop's loop (CPython only; it uses the C ``asyncio.Task``);
* ``trio``: ``trio.run``.

A backend that this Python cannot run is skipped, saying why.

Which backends a test runs under
--------------------------------

``loop_backend`` is parametrized over all of the above, and a test in a
folder that does not say otherwise runs under all of them. A folder narrows
it for its tests by overriding the fixture in its conftest.py::

    @pytest.fixture(params=["asyncio", "trio"])
    def loop_backend(request: pytest.FixtureRequest) -> str:
        return request.param

or, for a single backend, with no parametrization at all (the test ids then
name no loop)::

    @pytest.fixture
    def loop_backend() -> str:
        return "asyncio"

A test or a module (``pytestmark``) picks its own with
``@pytest.mark.loop_backends("asyncio", "uvloop")``, which takes precedence
over the folder's choice (``@pytest.mark.parametrize("loop_backend", [...])``
does the same, as with anyio). The mark leaves alone the tests that run no
loop: a module's mark covers only those of its tests that do.

How a test runs under them
--------------------------

* An ``async def test_*`` function is run by this conftest on a fresh loop of
  the backend (``test_x[asyncio]``, ``test_x[trio]``, ...). Its fixtures are
  set up outside the loop, as usual.
* A sync test asks for the ``loop`` fixture, a :class:`LoopBackend`:
  ``loop.run(async_fn, *args)`` runs a fresh loop to completion and returns
  what *async_fn* returned. ``run`` is the same as a fixture of its own.

Helpers
-------

* ``loop``: besides ``run()``, ``library`` ("asyncio" or "trio"),
  ``checkpoint()``, ``sleep()``, ``current_task()``, ``Event()``,
  ``open_nursery()`` (a Trio nursery, or an equivalent for asyncio that needs
  no ``TaskGroup``, so it works on Python 3.9 too); for asyncio backends
  ``new_loop()`` (a loop of the backend's kind, not running), ``task_type``,
  ``eager`` and ``check_task()``.
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
import contextlib
import functools
import gc
import inspect
import sys
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, TypeVar

import pytest

T = TypeVar("T")

#: Every loop backend, in the order tests run under them (see the docstring).
BACKENDS = (
    "asyncio",
    "asyncio-py-task",
    "asyncio-task-subclass",
    "asyncio-py-task-subclass",
    "asyncio-runner",
    "asyncio-eager",
    "asyncio-py-eager",
    "uvloop",
    "trio",
)


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


# -- asyncio's task flavors ------------------------------------------------------------

# The pure-Python Task. Where asyncio has no C accelerator (PyPy), it is the
# only Task, and the "py" backends are the same as the others.
PyTask: Any = getattr(asyncio.tasks, "_PyTask", asyncio.Task)


class UserTask(asyncio.Task):  # type: ignore[type-arg]
    """A user's subclass of the C-accelerated Task."""


class UserPyTask(PyTask):  # type: ignore[misc, valid-type]
    """A user's subclass of the pure-Python Task."""


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


def _factory_for(task_type: Any) -> Callable[..., Any]:
    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        return task_type(coro, loop=loop, **kwargs)

    return factory


def _why_not_here(name: str) -> Optional[str]:
    """Why this Python cannot run backend *name*, or None if it can."""
    if name == "uvloop":
        if sys.implementation.name == "pypy":
            return "uvloop supports CPython only: there is no uvloop for PyPy"
        try:
            import uvloop  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the platform
            return f"uvloop cannot be imported on this Python/platform: {exc}"
    elif name == "asyncio-runner" and sys.version_info < (3, 11):
        return "asyncio.Runner is new in Python 3.11"
    elif name in ("asyncio-eager", "asyncio-py-eager") and sys.version_info < (3, 12):
        return "eager tasks are new in Python 3.12"
    return None


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


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks still pending on *loop* and wait for them, as asyncio.run() does."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during the test loop's shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


# -- the loop backends -------------------------------------------------------------------


class LoopBackend:
    """One way of running an event loop, and what a test needs from that loop.

    The only place in the suite that knows how to start each backend of
    :data:`BACKENDS`.
    """

    def __init__(self, name: str) -> None:
        if name not in BACKENDS:
            raise pytest.UsageError(f"unknown loop backend {name!r}; the backends are {', '.join(BACKENDS)}")
        self.name = name
        self.library = "trio" if name == "trio" else "asyncio"
        #: The type of every task the loop makes (asyncio backends).
        self.task_type: Any = asyncio.Task
        #: Whether tasks take their first step inside create_task() (eager tasks).
        self.eager = name in ("asyncio-eager", "asyncio-py-eager")
        self._task_factory: Optional[Callable[..., Any]] = None
        if name == "asyncio-py-task":
            self.task_type = PyTask
            self._task_factory = _factory_for(PyTask)
        elif name == "asyncio-task-subclass":
            self.task_type = UserTask
            self._task_factory = _factory_for(UserTask)
        elif name == "asyncio-py-task-subclass":
            self.task_type = UserPyTask
            self._task_factory = _factory_for(UserPyTask)
        elif name == "asyncio-eager" and sys.version_info >= (3, 12):
            self._task_factory = asyncio.eager_task_factory  # type: ignore[attr-defined]
        elif name == "asyncio-py-eager" and sys.version_info >= (3, 12):
            self.task_type = PyTask
            self._task_factory = asyncio.create_eager_task_factory(PyTask)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<LoopBackend {self.name}>"

    def skip_if_unavailable(self) -> None:
        reason = _why_not_here(self.name)
        if reason is not None:
            pytest.skip(reason)

    # -- running a loop --

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, setup: Optional[Callable[[Any], None]] = None) -> T:
        """Run a fresh event loop until ``async_fn(*args)`` returns, and return its result.

        *setup* (asyncio backends), if given, is called with the loop before
        the first task is created (to install a task factory, say).
        """
        if self.library == "trio":
            if setup is not None:
                raise TypeError("setup= is for asyncio backends")
            import trio

            return trio.run(async_fn, *args)  # type: ignore[arg-type]
        with pure_python_bookkeeping(self.task_type):
            if self.name == "asyncio-runner":
                with asyncio.Runner() as runner:  # type: ignore[attr-defined]
                    if setup is not None:
                        setup(runner.get_loop())
                    return runner.run(async_fn(*args))  # type: ignore[no-any-return]
            return self._run_until_complete(async_fn, args, setup)

    def _run_until_complete(
        self, async_fn: Callable[..., Awaitable[T]], args: Any, setup: Optional[Callable[[Any], None]]
    ) -> T:
        # What asyncio.run() does, on a loop of this backend's kind. (Not
        # asyncio.run() itself: it takes no loop of ours before Python 3.12,
        # and since 3.11 it also turns Ctrl-C into a cancellation of the main
        # task, which the asyncio-runner backend covers.)
        loop = self.new_loop()
        asyncio.set_event_loop(loop)
        try:
            if setup is not None:
                setup(loop)
            return loop.run_until_complete(async_fn(*args))
        finally:
            try:
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """A new asyncio loop of this backend's kind (its task factory installed), not running."""
        if self.library != "asyncio":
            raise TypeError(f"the {self.name} backend has no asyncio loop")
        if self.name == "uvloop":
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        if self._task_factory is not None:
            loop.set_task_factory(self._task_factory)
        return loop

    def check_task(self, task: Any) -> None:
        """Assert that *task* is of the kind this backend's loop makes."""
        assert type(task) is self.task_type, (type(task), self.task_type)

    # -- inside the running loop --

    async def checkpoint(self) -> None:
        await checkpoint()

    async def sleep(self, seconds: float) -> None:
        if self.library == "trio":
            import trio

            await trio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    def current_task(self) -> Any:
        if self.library == "trio":
            import trio

            return trio.lowlevel.current_task()
        return asyncio.current_task()

    def Event(self) -> Any:  # noqa: N802 - mirrors trio.Event / asyncio.Event
        if self.library == "trio":
            import trio

            return trio.Event()
        return asyncio.Event()

    def open_nursery(self) -> Any:
        """``async with loop.open_nursery() as n: n.start_soon(fn, *args)``."""
        if self.library == "trio":
            import trio

            return trio.open_nursery()
        return _AsyncioNursery()


# -- the fixtures ------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "loop_backends(*names): run this test only under the named loop backends "
        f"(any of {', '.join(BACKENDS)}); see tests/conftest.py",
    )


@pytest.fixture(params=BACKENDS)
def loop_backend(request: pytest.FixtureRequest) -> str:
    """The name of the loop backend the test runs under (see the module docstring)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def loop(loop_backend: str) -> LoopBackend:
    """The :class:`LoopBackend` of ``loop_backend``; skips the test where it cannot run."""
    backend = LoopBackend(loop_backend)
    backend.skip_if_unavailable()
    return backend


@pytest.fixture
def run(loop: LoopBackend) -> Callable[..., Any]:
    """``run(async_fn, *args)``: run a fresh loop of the test's backend."""
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


# -- async tests and the marker ------------------------------------------------------------


def _is_async_test(function: Any) -> bool:
    return inspect.iscoroutinefunction(function)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    # An async test runs in a loop of its backend: it uses the `loop` fixture,
    # and so is parametrized as `loop_backend` is (as anyio's plugin does for
    # `anyio_backend`).
    if _is_async_test(obj) and collector.istestfunction(obj, name):
        pytest.mark.usefixtures("loop")(obj)


# First: pytest's own hook, which parametrizes `loop_backend` with the params
# of its fixture, must already see the mark this one adds.
@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("loop_backends")
    if marker is None or "loop_backend" not in metafunc.fixturenames:
        return
    names = tuple(marker.args)
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names or marker.kwargs:
        raise pytest.UsageError(f"@pytest.mark.loop_backends takes names from {BACKENDS}, got {marker}")
    # As a parametrize mark, which pytest gives precedence over the params of
    # the `loop_backend` fixture (the folder's or this file's).
    metafunc.definition.add_marker(pytest.mark.parametrize("loop_backend", names))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Optional[bool]:
    if not _is_async_test(pyfuncitem.obj):
        return None
    funcargs: Dict[str, Any] = pyfuncitem.funcargs
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    backend: LoopBackend = funcargs["loop"]
    backend.run(functools.partial(pyfuncitem.obj, **kwargs))
    return True
