"""Tree portals for Trio: tasks started under a scope get a portal at spawn time."""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Set

import trio
from trio.abc import Instrument

import greenback


class AutoPortalInstrument(Instrument):
    """A Trio instrument that gives newly spawned tasks a greenback portal.

    Pass one to ``trio.run(..., instruments=[greenback.AutoPortalInstrument()])``
    and every task of the run, system tasks included, starts with a portal.
    :func:`greenback.portals_for_children`, :func:`greenback.portals_for_tree`
    and :func:`greenback.with_portal_run_tree` use a scoped one internally, which
    only gives portals to tasks spawned under their scope.
    """

    def __init__(self) -> None:
        self._scoped = False
        # For a scoped instrument: per task, one entry per active scope, each
        # holding the ids of the nurseries that task had when the scope began
        # (children of those nurseries are outside the scope).
        self._scopes: Dict[Any, List[Set[int]]] = {}
        # Tasks that got a portal from this instrument; while a scope is
        # active, their children do too.
        self._tree: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self._scoped and not self._in_scope(task):
            return
        greenback.bestow_portal(task)
        if self._scoped:
            self._tree.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        if self._scoped:
            self._tree.discard(task)

    def _in_scope(self, task: trio.lowlevel.Task) -> bool:
        nursery = task.parent_nursery
        if nursery is None:
            return False
        parent = nursery.parent_task
        if parent in self._tree:
            return True
        scopes = self._scopes.get(parent)
        if not scopes:
            return False
        # A nursery opened inside any of this task's active scopes is covered:
        # only those that predate the outermost one are not.
        return id(nursery) not in scopes[0]


_holder: "trio.lowlevel.RunVar[Optional[AutoPortalInstrument]]" = trio.lowlevel.RunVar(
    "greenback_tree_instrument", default=None
)


def _release_if_idle(instrument: AutoPortalInstrument) -> None:
    # The instrument goes with the last scope, as in greenback 1.3.0, even if a
    # task of the tree lives on (one moved out by nursery.start()): from then
    # on, tasks it spawns get no portal.
    if not instrument._scopes:
        instrument._tree.clear()
        try:
            trio.lowlevel.remove_instrument(instrument)
        except KeyError:  # pragma: no cover - already removed
            pass
        if _holder.get() is instrument:
            _holder.set(None)


@contextmanager
def portals_for_children() -> Iterator[None]:
    """Under this scope, children of nurseries the current task opens get portals.

    The current task gets none (which is why this can be a sync context
    manager); their children, recursively, get portals too.
    """
    instrument = _holder.get()
    if instrument is None:
        instrument = AutoPortalInstrument()
        instrument._scoped = True
        trio.lowlevel.add_instrument(instrument)
        _holder.set(instrument)
    task = trio.lowlevel.current_task()
    existing = {id(n) for n in task.child_nurseries}
    instrument._scopes.setdefault(task, []).append(existing)
    try:
        yield
    finally:
        scopes = instrument._scopes[task]
        scopes.pop()
        if not scopes:
            del instrument._scopes[task]
        _release_if_idle(instrument)
