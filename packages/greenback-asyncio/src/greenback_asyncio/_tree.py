"""Portals for new asyncio tasks: portal task factories and tree portals.

asyncio has no nurseries, so "a task started inside the scope" is decided by
the task that is *creating* it: when ``loop.create_task()`` runs (directly, or
through ``asyncio.create_task``, ``ensure_future``, ``gather``, ``TaskGroup``,
anyio task groups, ``run_until_complete``...), the loop's task factory asks
``asyncio.current_task()``. The new task starts in a portal, and is itself a
*tree task*, if that creating task

* is inside a :func:`portals_for_children` scope (``portals_for_tree`` and
  ``with_portal_run_tree`` open one), or
* is a tree task itself (so the rule is transitive, and it keeps holding for
  the children of a tree task after the scope that started it has exited;
  Trio differs here: its tree portals end with the last scope, since a Trio
  task's children all live in nurseries that close inside that scope).

Tasks created with no current task (from a loop callback, or before the loop
runs) and tasks created by any other task do not get one. An eager task
(Python 3.12+) takes its first step inside ``create_task``, while it is the
current task; it is already a tree task then, because membership is recorded
on its portal before the task is made.

The scope works through a task factory that wraps the loop's current one (it
is called, never replaced) and is removed again, restoring exactly the factory
that was there, once the last scope has exited and the last tree task has
finished. Tasks built by calling ``asyncio.Task(...)`` directly bypass task
factories, and so get no portal.
"""

from __future__ import annotations

import asyncio
import sys
import types
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Coroutine, Dict, Iterator, MutableMapping, Optional, TypeVar

from greenback.lowlevel import LoopIntegration, Portal, integration_for, make_task_portal

T = TypeVar("T")

#: What asyncio accepts as a task factory: ``factory(loop, coro, **kwargs)``.
TaskFactory = Callable[..., "asyncio.Future[Any]"]


def _is_coroutine(coro: Any) -> bool:
    return type(coro) is types.CoroutineType or asyncio.iscoroutine(coro)




def _make_task(inner: Optional[TaskFactory], loop: Any, coro: Any, kwargs: Dict[str, Any]) -> Any:
    if inner is None:
        # What loop.create_task() does without a factory (uvloop too).
        return asyncio.Task(coro, loop=loop, **kwargs)
    return inner(loop, coro, **kwargs)


class PortalTaskFactory:
    """An asyncio task factory whose tasks all start in a greenback portal.

    ``loop.set_task_factory(greenback_asyncio.portal_task_factory)`` gives
    every task the loop creates from then on a portal, so any sync code a task
    calls can use :func:`greenback.await_` without ``ensure_portal()``.
    ``PortalTaskFactory(inner)`` wraps another factory: the coroutine is put in
    a portal, then ``inner(loop, portal, **kwargs)`` makes the task (for
    instance ``PortalTaskFactory(asyncio.eager_task_factory)``). Prefer
    :func:`install_portal_task_factory`, which wraps whatever the loop has.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Optional[TaskFactory] = None) -> None:
        if inner is not None and not callable(inner):
            raise TypeError(f"PortalTaskFactory() expects a task factory or None, got {inner!r}")
        self.inner = inner

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if not isinstance(coro, Portal) and _is_coroutine(coro):
            # The integration is looked up per call, not kept: this factory
            # may be made (at import, say) before the registry has it.
            coro = make_task_portal(coro, integration_for("asyncio"))
        return _make_task(self.inner, loop, coro, kwargs)

    def __repr__(self) -> str:
        inner = "" if self.inner is None else repr(self.inner)
        return f"greenback_asyncio.PortalTaskFactory({inner})"


portal_task_factory = PortalTaskFactory()
"""A task factory that gives every new task a portal (wrapping no other factory)."""


def _our_factories() -> tuple:  # type: ignore[type-arg]
    return (PortalTaskFactory, _TreeFactory)


def _splice_out(loop: asyncio.AbstractEventLoop, target: Any) -> bool:
    """Take *target* out of the loop's chain of factories we made; False if not found.

    The chain is followed only through our own factories: a foreign factory
    that wraps one of ours hides it.
    """
    before: Any = None
    factory: Any = loop.get_task_factory()
    ours = _our_factories()
    while factory is not None:
        if factory is target:
            if before is None:
                loop.set_task_factory(target.inner)
            else:
                before.inner = target.inner
            return True
        if not isinstance(factory, ours):
            return False
        before, factory = factory, factory.inner
    return False


def _running_loop_or(loop: Optional[asyncio.AbstractEventLoop], api: str) -> asyncio.AbstractEventLoop:
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"greenback_asyncio.{api}() needs a loop: pass one, or call it inside a running loop") from None


def install_portal_task_factory(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Make every task that *loop* (default: the running loop) creates from now on start in a portal.

    The loop's current task factory, if any, keeps making the tasks: it is
    called with the portal in place of the coroutine. Tasks that already exist
    are not changed (a running one can ``await greenback.ensure_portal()``).
    Installing twice changes nothing; :func:`uninstall_portal_task_factory`
    undoes it.
    """
    loop = _running_loop_or(loop, "install_portal_task_factory")
    factory: Any = loop.get_task_factory()
    ours = _our_factories()
    while isinstance(factory, ours):
        if isinstance(factory, PortalTaskFactory):
            return
        factory = factory.inner
    loop.set_task_factory(PortalTaskFactory(loop.get_task_factory()))


def uninstall_portal_task_factory(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Undo :func:`install_portal_task_factory` (and ``set_task_factory(portal_task_factory)``).

    The factory the portal factory wrapped is put back. Tasks that already
    have a portal keep it.
    """
    loop = _running_loop_or(loop, "uninstall_portal_task_factory")
    ours = _our_factories()
    while True:
        factory: Any = loop.get_task_factory()
        found = None
        while isinstance(factory, ours):
            if isinstance(factory, PortalTaskFactory):
                found = factory
                break
            factory = factory.inner
        if found is None or not _splice_out(loop, found):
            return


def new_event_loop() -> asyncio.AbstractEventLoop:
    """``asyncio.new_event_loop()``, with every task it runs starting in a portal.

    Usable as a loop factory: ``asyncio.run(main(), loop_factory=greenback_asyncio.new_event_loop)``
    (Python 3.12+) or ``asyncio.Runner(loop_factory=greenback_asyncio.new_event_loop)`` (3.11+).
    On any version, :func:`greenback_asyncio.run` does the same.
    """
    loop = asyncio.new_event_loop()
    install_portal_task_factory(loop)
    return loop


def portal_loop_factory(
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None,
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory making loops like *loop_factory* does, whose tasks all start in a portal.

    ``portal_loop_factory(uvloop.new_event_loop)`` for uvloop; without an
    argument, the same as :func:`new_event_loop`.
    """
    base = asyncio.new_event_loop if loop_factory is None else loop_factory

    def make_loop() -> asyncio.AbstractEventLoop:
        loop = base()
        install_portal_task_factory(loop)
        return loop

    make_loop.__qualname__ = make_loop.__name__ = f"portal_loop_factory({getattr(base, '__qualname__', base)!s})"
    return make_loop


def run(
    main: Coroutine[Any, Any, T],
    *,
    debug: Optional[bool] = None,
    loop_factory: Optional[Callable[[], asyncio.AbstractEventLoop]] = None,
) -> T:
    """``asyncio.run(main)`` on a loop whose every task, *main*'s included, starts in a portal.

    Works on Python 3.9+; *loop_factory* (default ``asyncio.new_event_loop``)
    picks the kind of loop, for instance ``uvloop.new_event_loop``.
    """
    if asyncio._get_running_loop() is not None:
        # As asyncio.run() does: fail before making a loop.
        raise RuntimeError("greenback_asyncio.run() cannot be called from a running event loop")
    factory = portal_loop_factory(loop_factory)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
            return runner.run(main)
    return _run_before_311(main, debug, factory)  # pragma: no cover - covered on 3.9/3.10


def _run_before_311(main: Any, debug: Optional[bool], factory: Callable[[], asyncio.AbstractEventLoop]) -> Any:
    # asyncio.run() of Python 3.9/3.10, with a loop from *factory*.
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            shutdown_executor = getattr(loop, "shutdown_default_executor", None)
            if shutdown_executor is not None:
                loop.run_until_complete(shutdown_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    to_cancel = asyncio.all_tasks(loop)
    if not to_cancel:
        return
    for task in to_cancel:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*to_cancel, return_exceptions=True))
    for task in to_cancel:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during greenback_asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )


# -- tree portals ---------------------------------------------------------------


class _TreeFactory:
    """The task factory behind tree portals on one loop (see the module docstring)."""

    __slots__ = ("inner", "integration", "scopes", "portals", "tasks", "active", "__weakref__")

    def __init__(self, inner: Optional[TaskFactory], integration: LoopIntegration) -> None:
        self.inner = inner
        self.integration = integration
        # Tasks with open portals_for_children scopes, and how many each has.
        self.scopes: Dict[Any, int] = {}
        # The portals of tree tasks; a task is a tree task if its coroutine is
        # one of these (which holds from an eager task's very first step).
        self.portals: "weakref.WeakSet[Portal]" = weakref.WeakSet()
        # Tree tasks, to know when the last one has finished.
        self.tasks: "weakref.WeakSet[Any]" = weakref.WeakSet()
        # False once released: left in a foreign factory's chain, it only
        # passes tasks through.
        self.active = True

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if not (self.active and self._creator_in_tree(loop) and _is_coroutine(coro)):
            return _make_task(self.inner, loop, coro, kwargs)
        if not isinstance(coro, Portal):
            coro = make_task_portal(coro, self.integration)
        self.portals.add(coro)
        task = _make_task(self.inner, loop, coro, kwargs)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _creator_in_tree(self, loop: asyncio.AbstractEventLoop) -> bool:
        creator = asyncio.current_task(loop)
        if creator is None:
            return False
        if creator in self.scopes:
            return True
        coro = creator.get_coro()
        return isinstance(coro, Portal) and coro in self.portals

    def _task_done(self, task: Any) -> None:
        self.tasks.discard(task)
        self.release_if_idle(task.get_loop())

    def release_if_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.active or self.scopes:
            return
        if any(not task.done() for task in self.tasks):
            return
        self.active = False
        self.portals.clear()
        self.tasks.clear()
        if _get_tree(loop) is self:
            _del_tree(loop)
        _splice_out(loop, self)  # if a foreign factory wraps us, we stay, inert

    def __repr__(self) -> str:
        return f"<greenback_asyncio tree portal factory wrapping {self.inner!r}>"


# The active tree factory of each loop.
_trees: "MutableMapping[Any, _TreeFactory]" = weakref.WeakKeyDictionary()
_trees_by_id: Dict[int, _TreeFactory] = {}  # for loops that take no weak references


def _get_tree(loop: Any) -> Optional[_TreeFactory]:
    try:
        return _trees.get(loop)
    except TypeError:
        return _trees_by_id.get(id(loop))


def _set_tree(loop: Any, tree: _TreeFactory) -> None:
    try:
        _trees[loop] = tree
    except TypeError:
        _trees_by_id[id(loop)] = tree


def _del_tree(loop: Any) -> None:
    try:
        del _trees[loop]
    except TypeError:
        del _trees_by_id[id(loop)]


@contextmanager
def portals_for_children(integration: LoopIntegration) -> Iterator[None]:
    """While open, tasks the current task creates, and all their descendants, start in a portal.

    The current task itself is not given one. Reached through
    :func:`greenback.portals_for_children` under asyncio, whose
    *integration* makes the portals.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("greenback.portals_for_children() must be used inside an asyncio task")
    tree = _get_tree(loop)
    if tree is None:
        tree = _TreeFactory(loop.get_task_factory(), integration)
        loop.set_task_factory(tree)
        _set_tree(loop, tree)
    tree.scopes[task] = tree.scopes.get(task, 0) + 1
    try:
        yield
    finally:
        count = tree.scopes[task] - 1
        if count:
            tree.scopes[task] = count
        else:
            del tree.scopes[task]
        tree.release_if_idle(loop)
