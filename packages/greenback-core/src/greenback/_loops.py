"""The interface a loop integration implements, and the registry that finds one.

Public through :mod:`greenback.lowlevel`.

greenback's engine knows nothing about any particular event loop. Everything
that differs between asyncio, Trio, or a loop we have never heard of lives in a
:class:`LoopIntegration` object, published by a separate distribution through
the ``greenback.loops`` entry-point group::

    [project.entry-points."greenback.loops"]
    trio = "greenback_trio._integration:integration"

The entry point's *name* is the library name that :mod:`sniffio` reports while
that loop is running; its *value* is an instance of a :class:`LoopIntegration`
subclass. Integrations are loaded the first time a portal is created under
their loop, never at ``import greenback`` time, and never on the per-trap path:
``await_`` finds its portal from the current greenlet and does not ask which
loop is running.

greenback's own integrations (asyncio and Trio) are looked up by module name
before any entry point is read: reading the entry points of every installed
distribution (:mod:`importlib.metadata`) cost 18 of the 20 ms that a
process's first portal took on CPython 3.13, against 1.7 ms for the whole
first portal with greenback 1.3.0. They declare the same objects as their
entry points, which the test suite checks.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from abc import ABC, abstractmethod
from typing import Any, Awaitable, Callable, ContextManager, Dict, Mapping, Optional

import sniffio

from ._exceptions import MissingIntegrationError, NoLoopError

ENTRY_POINT_GROUP = "greenback.loops"

# greenback's own integrations: the module whose `integration` each one is
# (found without reading entry points; see above), and what installs it.
_OWN_INTEGRATIONS = {
    "asyncio": ("greenback_asyncio", 'pip install greenback-asyncio (a plain "pip install greenback" brings it)'),
    "trio": ("greenback_trio", 'pip install "greenback[trio]"'),
}


class LoopIntegration(ABC):
    """What greenback needs from an event loop: a small, synchronous interface.

    Every method is called from inside a running event loop of this
    integration's library, on the loop's thread.
    """

    #: The name :func:`sniffio.current_async_library` reports for this loop.
    library: str = ""

    #: Names this integration adds to the ``greenback`` namespace, looked up
    #: on first use (``greenback.AutoPortalInstrument`` is Trio's).
    exports: Mapping[str, Any] = {}

    @abstractmethod
    def current_task(self) -> Optional[object]:
        """Return the task that is running now, or None outside any task
        (for example, in an asyncio callback)."""

    @abstractmethod
    def is_task(self, obj: object) -> bool:
        """Return whether *obj* is a task object of this loop.

        :func:`integration_for_task` asks this of the integration named after
        the package that defines the task's class (or one of its bases).
        """

    @abstractmethod
    def task_is_done(self, task: Any) -> bool:
        """Return whether *task* has finished running."""

    @abstractmethod
    def get_coro(self, task: Any) -> Any:
        """Return the coroutine (or coroutine-like object) *task* steps."""

    @abstractmethod
    def set_coro(self, task: Any, coro: Any) -> None:
        """Make *task* step *coro* from its next step on.

        *coro* provides ``send``, ``throw`` and ``close`` like a coroutine, but
        is not a native coroutine object.
        """

    @abstractmethod
    def checkpoint(self) -> Awaitable[None]:
        """Return an awaitable that yields to the loop once and can be cancelled
        (``trio.lowlevel.checkpoint()``, ``asyncio.sleep(0)``)."""

    def uncancellable_checkpoint(self) -> Awaitable[None]:
        """An awaitable that yields to the loop once and cannot be cancelled.

        Defaults to :meth:`checkpoint`; override it where the loop can do better.
        """
        return self.checkpoint()

    def task_context(self, task: Any) -> Optional[Any]:
        """Return the ``contextvars.Context`` *task*'s steps run in, or None if unknown.

        greenback uses it to tell a task's own code from another task's that
        runs in the same greenlet (an eager asyncio task's first step). The
        default, None, trusts the greenlet.
        """
        return None

    def sleep_hint(self) -> str:
        """The code a user should await to yield to this loop, for error messages."""
        return f"await {self.library}.sleep(0)"

    # Tree portals: optional. The default says plainly that this loop has none.

    def portals_for_children(self) -> ContextManager[None]:
        """A context manager under which new child tasks start with a portal."""
        raise NotImplementedError(
            f"greenback's integration for {self.library!r} does not support tree portals"
        )


_registry: Dict[str, LoopIntegration] = {}
_registry_lock = threading.Lock()


def register_integration(integration: LoopIntegration) -> None:
    """Register *integration* by hand, overriding any entry point of the same library.

    Entry points make this unnecessary for installed distributions; it exists
    for test harnesses and for loops that live inside an application.
    """
    if not isinstance(integration, LoopIntegration):
        raise TypeError(
            "register_integration() takes a greenback.lowlevel.LoopIntegration "
            f"instance, not {type(integration).__name__}"
        )
    if not integration.library:
        raise ValueError("a LoopIntegration must set its 'library' attribute")
    with _registry_lock:
        _registry[integration.library] = integration
        _by_task_type.clear()  # a task type may now belong to this one


def _find_integration(library: str) -> Optional[LoopIntegration]:
    """Load the integration for *library*: one of ours by module name, else
    an entry point; None if there is none."""
    own = _OWN_INTEGRATIONS.get(library)
    if own is not None and importlib.util.find_spec(own[0]) is not None:
        return _checked(_load(library, own[0], lambda: importlib.import_module(own[0]).integration), own[0])
    from importlib.metadata import entry_points

    found: Any = entry_points()
    if hasattr(found, "select"):  # Python 3.10+
        candidates = list(found.select(group=ENTRY_POINT_GROUP, name=library))
    elif isinstance(found, dict):  # Python 3.9: a dict of group -> entry points
        candidates = [ep for ep in found.get(ENTRY_POINT_GROUP, ()) if ep.name == library]
    else:  # a plain sequence of entry points
        candidates = [ep for ep in found if ep.group == ENTRY_POINT_GROUP and ep.name == library]
    for ep in candidates:
        return _checked(_load(library, ep.value, ep.load), f"entry point {ep.name} = {ep.value!r} in group {ENTRY_POINT_GROUP!r}")
    return None


def _load(library: str, where: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except ImportError as exc:
        # The integration is installed but its loop library is not (a plain
        # `pip install greenback` brings greenback-trio, not Trio).
        raise MissingIntegrationError(
            f"greenback's integration for {library!r} ({where}) cannot be loaded: {exc}; " + _install_hint(library)
        ) from exc


def _checked(integration: Any, source: str) -> LoopIntegration:
    if not isinstance(integration, LoopIntegration):
        raise TypeError(f"{source} must name a LoopIntegration instance, not {type(integration).__name__}")
    return integration


def integration_for(library: str) -> LoopIntegration:
    """Return the integration for the async library called *library*.

    Raises :class:`MissingIntegrationError`, naming the install command, when
    none is installed.
    """
    try:
        return _registry[library]
    except KeyError:
        pass
    with _registry_lock:
        if library not in _registry:
            found = _find_integration(library)
            if found is None:
                raise MissingIntegrationError(
                    _missing_message(library)
                )
            _registry[library] = found
        return _registry[library]


def _missing_message(library: str) -> str:
    if library in _OWN_INTEGRATIONS:
        return f"greenback's integration for {library!r} is not installed; " + _install_hint(library)
    return (
        f"greenback does not support {library}: no loop integration is installed "
        f"for the async library {library!r}; " + _install_hint(library)
    )


def _install_hint(library: str) -> str:
    own = _OWN_INTEGRATIONS.get(library)
    if own is not None:
        return f"install it with: {own[1]}"
    return (
        "install a distribution that registers one in the "
        f"{ENTRY_POINT_GROUP!r} entry-point group, or call "
        "greenback.lowlevel.register_integration()"
    )


# Integrations found by integration_for_task(), by the type of task.
_by_task_type: Dict[type, LoopIntegration] = {}


def integration_for_task(task: object) -> Optional[LoopIntegration]:
    """Return the integration of the loop *task* belongs to, or None if none claims it.

    The answer follows the task, not the caller: a Trio task running as a
    guest on an asyncio loop may hand an ``asyncio.Task`` to
    :func:`greenback.bestow_portal`, and the asyncio integration handles it.
    The integrations in use are asked first (:meth:`LoopIntegration.is_task`);
    then the one named after the package that defines the task's class or
    one of its bases is loaded and asked (``asyncio`` for ``asyncio.Task``
    and its subclasses, uvloop's tasks included; ``trio`` for
    ``trio.lowlevel.Task``). Raises :class:`MissingIntegrationError` for a
    task of asyncio or Trio when greenback's integration for it is not
    installed.
    """
    cls = type(task)
    found = _by_task_type.get(cls)
    if found is not None:
        return found
    for integration in list(_registry.values()):
        if integration.is_task(task):
            _by_task_type[cls] = integration
            return integration
    tried = set()
    for base in cls.__mro__[:-1]:  # not `object`
        # "_asyncio" (the C Task's module) and "asyncio.tasks" both mean asyncio.
        library = base.__module__.partition(".")[0].lstrip("_")
        if library in tried or library == "builtins":
            continue
        tried.add(library)
        try:
            integration = integration_for(library)
        except MissingIntegrationError:
            if library in _OWN_INTEGRATIONS:
                raise  # a task of a loop we support, without our integration for it
            continue
        if integration.is_task(task):
            _by_task_type[cls] = integration
            return integration
    return None


def current_integration() -> LoopIntegration:
    """Return the integration for the async library running in this thread.

    Raises a RuntimeError (that is also sniffio's AsyncLibraryNotFoundError)
    outside any async context.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise NoLoopError(
            "greenback needs a running event loop here: call it from async code "
            "running under asyncio or Trio (no async library was detected in "
            "this thread)"
        ) from None
    return integration_for(library)
