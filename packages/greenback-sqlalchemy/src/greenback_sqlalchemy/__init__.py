"""greenback for SQLAlchemy's asyncio extension.

SQLAlchemy runs its synchronous ORM and Core code inside greenlets of its own
and lets that code wait for the async driver by switching the awaitable to the
greenlet's parent. :func:`install` teaches greenback portals the same protocol
(through :class:`greenback.lowlevel.GreenletBridge`), so that, in any asyncio task with a
greenback portal:

* sync ORM code works in plain async code: lazy loads, ``refresh``, a sync
  ``Session(async_engine.sync_engine)`` or ``Connection``; no
  ``MissingGreenlet``;
* sync event hooks can ``greenback.await_()`` anything, including the raw
  async driver connection and other ``AsyncSession``/``AsyncConnection``
  objects; and where SQLAlchemy runs a hook in a task that has no portal (the
  cleanup task of ``AsyncSession.__aexit__``, for instance),
  ``greenback.await_()`` defers to SQLAlchemy's own greenlet instead.

It also adjusts two private parts of SQLAlchemy (see ``_PATCHES``): a pool's
first connect no longer deadlocks when a ``connect`` hook opens another
connection from the same pool, and the garbage collection of a leaked
connection never awaits (so never suspends a task) inside a portal.

Without a portal, SQLAlchemy behaves exactly as it does without greenback.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from greenlet import getcurrent

from greenback.lowlevel import GreenletBridge, install_bridge, installed_bridges, is_portal_worker, uninstall_bridge

__all__ = ["MARKER", "BRIDGE", "install", "uninstall", "is_installed"]

#: The attribute SQLAlchemy (2.0.31 and newer) looks for on the current greenlet
#: before it switches an awaitable to that greenlet's parent.
MARKER = "__sqlalchemy_greenlet_provider__"

#: The :class:`greenback.lowlevel.GreenletBridge` that :func:`install` installs.
BRIDGE = GreenletBridge("sqlalchemy", MARKER)

_lock = threading.Lock()
# What install() replaced in SQLAlchemy's modules, by (module, name), to restore.
_originals: Dict[Tuple[str, str], Any] = {}


def install() -> None:
    """Let greenback portals run SQLAlchemy's sync code; idempotent.

    Call it once, at startup, before the tasks that need it create their
    portals: a portal made before keeps speaking only greenback.
    """
    with _lock:
        _check_protocol()
        install_bridge(BRIDGE)
        for module_name, name, wrap in _PATCHES:
            if (module_name, name) in _originals:
                continue
            module = importlib.import_module(module_name)
            original = getattr(module, name)
            _originals[module_name, name] = original
            setattr(module, name, wrap(original))


def uninstall() -> None:
    """Undo :func:`install` (for tests); a no-op when not installed."""
    with _lock:
        uninstall_bridge(BRIDGE.name)
        for (module_name, name), original in list(_originals.items()):
            setattr(importlib.import_module(module_name), name, original)
            del _originals[module_name, name]


def is_installed() -> bool:
    """Whether :func:`install` is in effect."""
    return BRIDGE.name in installed_bridges()


# The first SQLAlchemy release whose greenlets carry MARKER (before, it checked
# the greenlet's class), and so the oldest this bridge can speak to.
OLDEST_SQLALCHEMY = (2, 0, 31)


def _check_protocol() -> None:
    """Fail loudly, naming the fix, if this SQLAlchemy does not mark its greenlets with MARKER."""
    import sqlalchemy

    version = sqlalchemy.__version__
    numbers = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    if numbers[:1] != (2,) or numbers < OLDEST_SQLALCHEMY:
        raise RuntimeError(
            f"greenback-sqlalchemy needs SQLAlchemy 2.0.31 or newer (2.x), found {version}; "
            'upgrade it with: pip install --upgrade "sqlalchemy[asyncio]>=2.0.31"'
        )
    cls = _sqlalchemy_greenlet_class()
    if cls is not None and not getattr(cls, MARKER, False):
        raise RuntimeError(
            f"SQLAlchemy {version} does not mark its greenlets with {MARKER!r} as 2.0.31 "
            "to 2.1 do; this greenback-sqlalchemy cannot speak to it"
        )


def _sqlalchemy_greenlet_class() -> Any:
    """SQLAlchemy's greenlet class, where this version keeps it (private API), or None."""
    try:  # SQLAlchemy 2.1: created lazily behind a shim
        shim = importlib.import_module("sqlalchemy.util.concurrency")._concurrency_shim
        return shim._AsyncIoGreenlet
    except (ImportError, AttributeError):
        pass
    try:  # SQLAlchemy 2.0
        return importlib.import_module("sqlalchemy.util._concurrency_py3k")._AsyncIoGreenlet
    except (ImportError, AttributeError):
        return None


def _current_task() -> Optional["asyncio.Task[Any]"]:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return None


def _reentrant_lock_class(base: Any) -> Any:
    class _TaskReentrantLock(base):  # type: ignore[misc]
        """SQLAlchemy's event "exec once" mutex, re-enterable by the task holding it.

        On the first connect of a pool, SQLAlchemy runs the pool's ``connect``
        hooks holding this mutex (an ``asyncio.Lock`` under an async engine),
        so that other connections wait until the dialect is initialized. A
        hook that opens another connection from the same pool (easy to write
        once hooks can await) reaches the same mutex again in the same task
        and would wait for itself forever. Here the task that holds the mutex
        passes straight through, as any later connect would (the dialect is
        initialized by then: SQLAlchemy's own listener runs first); other
        tasks still wait.
        """

        _owner: Optional["asyncio.Task[Any]"] = None
        _depth = 0

        def __enter__(self) -> Any:
            task = _current_task()
            if task is not None and task is self._owner:
                self._depth += 1
                return True
            result = super().__enter__()
            self._owner = task
            self._depth = 1
            return result

        def __exit__(self, *exc_info: Any) -> None:
            if self._depth > 1:
                self._depth -= 1
                return
            self._owner = None
            self._depth = 0
            super().__exit__(*exc_info)

    _TaskReentrantLock.__qualname__ = _TaskReentrantLock.__name__
    return _TaskReentrantLock


def _gc_finalizer_outside_portals(original: Any) -> Any:
    """Wrap the pool's connection finalizer so that garbage collection never awaits.

    When a checked-out connection is garbage collected instead of closed,
    SQLAlchemy finalizes it assuming it runs outside its greenlets, where it
    cannot await, and gives up on a graceful close. Inside a portal's worker
    (plain async code, once install() is done) SQLAlchemy would instead see a
    greenlet it can await in, and the finalizer, which the collector runs at
    an arbitrary point of the task's code, would suspend the task right there.
    For that call only, the worker stops claiming SQLAlchemy's marker, and
    SQLAlchemy does what it does without greenback.
    """
    params = list(inspect.signature(original).parameters)
    if "is_gc_cleanup" in params:  # SQLAlchemy 2.1: is_gc_cleanup=True
        flag = "is_gc_cleanup"
    elif "ref" in params:  # SQLAlchemy 2.0: ref is the collected weakref
        flag = "ref"
    else:  # pragma: no cover - an unknown SQLAlchemy; leave it alone
        return original
    index = params.index(flag)

    @functools.wraps(original)
    def finalize(*args: Any, **kwargs: Any) -> Any:
        collected = args[index] if len(args) > index else kwargs.get(flag)
        here = getcurrent()
        if collected is None or collected is False or not is_portal_worker(here):
            return original(*args, **kwargs)
        saved = here.__dict__.get(MARKER, _ABSENT)
        setattr(here, MARKER, False)
        try:
            return original(*args, **kwargs)
        finally:
            if saved is _ABSENT:
                delattr(here, MARKER)
            else:
                setattr(here, MARKER, saved)

    return finalize


_ABSENT: Any = object()

# What install() replaces in SQLAlchemy (private names, the same in 2.0 and
# 2.1), and how: (module, attribute, wrap(original) -> replacement).
_PATCHES: Tuple[Tuple[str, str, Callable[[Any], Any]], ...] = (
    ("sqlalchemy.event.attr", "AsyncAdaptedLock", _reentrant_lock_class),
    ("sqlalchemy.pool.base", "_finalize_fairy", _gc_finalizer_outside_portals),
)
