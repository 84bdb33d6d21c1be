"""Greenlet bridges: cooperating with libraries that have their own greenlet protocol.

Public through :mod:`greenback.lowlevel`.

Some libraries (SQLAlchemy's asyncio extension is the best known) run sync code
in greenlets of their own, and let that code await by switching the awaitable
to the greenlet's parent::

    current = greenlet.getcurrent()
    if not getattr(current, "<marker attribute>", False):
        raise <library's error>
    result = current.parent.switch(awaitable)

A :class:`GreenletBridge` names such a protocol by its marker attribute. Once
it is installed with :func:`install_bridge`:

* Portal workers speak the protocol: they carry the marker, and switching an
  awaitable to their ``parent`` awaits it through the portal. So the library's
  sync code works anywhere a greenback portal is, not only inside the
  library's own greenlets.
* :func:`greenback.await_` called in one of the library's greenlets with no
  greenback portal above it defers to the library: it switches the awaitable to
  the greenlet's parent, just as the library's own code would.

Nothing changes on the per-trap path: a bridged worker is a different class of
greenlet, chosen once per portal, and the deferral is only tried where
``await_`` would otherwise raise.
"""

from __future__ import annotations

import threading
from typing import Any, Dict

from greenlet import getcurrent, greenlet

from . import _engine


class GreenletBridge:
    """A library's "switch an awaitable to my parent" greenlet protocol.

    *name* identifies the bridge (for idempotent installs and messages);
    *marker* is the attribute the library looks for, set to True, on the
    current greenlet before it switches an awaitable to the parent.
    """

    __slots__ = ("name", "marker")

    def __init__(self, name: str, marker: str) -> None:
        if not marker.isidentifier():
            raise ValueError(f"a bridge's marker must be an attribute name, got {marker!r}")
        self.name = name
        self.marker = marker

    def __repr__(self) -> str:
        return f"GreenletBridge({self.name!r}, marker={self.marker!r})"


class _AwaitThroughPortal:
    """What a bridged library sees as the parent of a portal's worker.

    Switching an awaitable to it awaits that awaitable in the portal, in the
    calling greenlet, which is what the library expects its parent to do.
    """

    __slots__ = ()

    def switch(self, awaitable: Any = None, *more: Any) -> Any:
        if more:
            raise TypeError("a greenback portal's bridged parent takes exactly one awaitable")
        return _engine.await_(awaitable)

    def throw(self, *args: Any) -> Any:
        raise RuntimeError(
            "greenback: a bridged library tried to throw into the portal's event "
            "loop greenlet; only switch(awaitable) is supported"
        )

    def __repr__(self) -> str:
        return "<greenback portal (awaits what is switched to it)>"


_AWAIT_THROUGH_PORTAL = _AwaitThroughPortal()
_bridges: Dict[str, GreenletBridge] = {}
_lock = threading.Lock()


def _parent_seen_in_portal(worker: Any) -> Any:
    """A bridged worker's `parent`: while a portal runs in it, what awaits."""
    # The real parent stays reachable through _engine._get_parent.
    return _AWAIT_THROUGH_PORTAL if worker._greenback_portal is not None else _engine._get_parent(worker)


def _parent_seen_in_portal_on_pypy(worker: Any) -> Any:
    # PyPy's greenlet is written in Python and reads `parent` itself: to start
    # a greenlet (in the greenlet switching to it) and to leave one that ends.
    # Only code running in the worker is the library's.
    if getcurrent() is not worker:
        return _engine._get_parent(worker)
    return _parent_seen_in_portal(worker)


_bridged_parent = _parent_seen_in_portal_on_pypy if _engine._PYPY else _parent_seen_in_portal


def _make_worker_class(bridges: Dict[str, GreenletBridge]) -> type:
    if not bridges:
        return _engine._Worker
    namespace: Dict[str, Any] = {marker: True for marker in (b.marker for b in bridges.values())}
    namespace["parent"] = property(_bridged_parent, _engine.reparent)
    namespace["__doc__"] = "A portal worker that also speaks: " + ", ".join(sorted(bridges))
    return type("_BridgedWorker", (_engine._Worker,), namespace)


def _defer_to_library(here: greenlet, aw: Any) -> Any:
    """await_ fallback: in a bridged library's own greenlet, let the library await."""
    for bridge in tuple(_bridges.values()):
        if getattr(here, bridge.marker, False):
            return here.parent.switch(aw)  # type: ignore[union-attr]
    return _engine.NOT_HANDLED


def install_bridge(bridge: GreenletBridge) -> None:
    """Make portals speak *bridge*'s protocol, and let :func:`greenback.await_` defer to it.

    Idempotent: installing a bridge with the same name again does nothing.
    """
    if not isinstance(bridge, GreenletBridge):
        raise TypeError(f"install_bridge() takes a GreenletBridge, got {type(bridge).__name__}")
    with _lock:
        if bridge.name in _bridges:
            return
        _bridges[bridge.name] = bridge
        _engine.set_worker_class(_make_worker_class(_bridges))
        _engine.add_await_fallback(_defer_to_library)


def uninstall_bridge(name: str) -> None:
    """Undo :func:`install_bridge` for the bridge called *name* (no-op if absent)."""
    with _lock:
        if _bridges.pop(name, None) is None:
            return
        _engine.set_worker_class(_make_worker_class(_bridges))
        if not _bridges:
            _engine.remove_await_fallback(_defer_to_library)


def installed_bridges() -> Dict[str, GreenletBridge]:
    """The installed bridges, by name."""
    return dict(_bridges)
