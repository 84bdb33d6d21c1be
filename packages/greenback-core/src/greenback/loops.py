"""The interface a loop integration implements, and the registry that finds one.

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
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Awaitable, ContextManager, Dict, Optional

import sniffio

__all__ = [
    "LoopIntegration",
    "ENTRY_POINT_GROUP",
    "register_integration",
    "integration_for",
    "integration_for_task",
    "current_integration",
    "MissingIntegrationError",
]

ENTRY_POINT_GROUP = "greenback.loops"

# The install command we suggest when a loop we know by name has no integration.
_KNOWN_EXTRAS = {"asyncio": "asyncio", "trio": "trio"}


class MissingIntegrationError(RuntimeError):
    """No loop integration is installed for the async library that is running."""


class LoopIntegration(ABC):
    """What greenback needs from an event loop: a small, synchronous interface.

    Every method is called from inside a running event loop of this
    integration's library, on the loop's thread.
    """

    #: The name :func:`sniffio.current_async_library` reports for this loop.
    library: str = ""

    @abstractmethod
    def current_task(self) -> Optional[object]:
        """Return the task that is running now, or None outside any task
        (for example, in an asyncio callback)."""

    @abstractmethod
    def is_task(self, obj: object) -> bool:
        """Return whether *obj* is a task object of this loop."""

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
    """Register *integration* by hand, overriding any entry point of the same name.

    Entry points make this unnecessary for installed distributions; it exists
    for test harnesses and for loops that live inside an application.
    """
    if not isinstance(integration, LoopIntegration):
        raise TypeError(
            "register_integration() takes a greenback.loops.LoopIntegration "
            f"instance, not {type(integration).__name__}"
        )
    if not integration.library:
        raise ValueError("a LoopIntegration must set its 'library' attribute")
    with _registry_lock:
        _registry[integration.library] = integration


def _load_entry_point(library: str) -> Optional[LoopIntegration]:
    from importlib.metadata import entry_points

    found: Any = entry_points()
    if hasattr(found, "select"):  # Python 3.10+
        candidates = list(found.select(group=ENTRY_POINT_GROUP, name=library))
    elif isinstance(found, dict):  # Python 3.9: a dict of group -> entry points
        candidates = [ep for ep in found.get(ENTRY_POINT_GROUP, ()) if ep.name == library]
    else:  # a plain sequence of entry points
        candidates = [ep for ep in found if ep.group == ENTRY_POINT_GROUP and ep.name == library]
    for ep in candidates:
        integration = ep.load()
        if not isinstance(integration, LoopIntegration):
            raise TypeError(
                f"entry point {ep.name} = {ep.value!r} in group {ENTRY_POINT_GROUP!r} "
                f"must name a LoopIntegration instance, not {type(integration).__name__}"
            )
        return integration
    # Our own integrations also work without installed metadata (a source
    # checkout on sys.path, a vendored copy): look for them by module name.
    if library in _KNOWN_EXTRAS:
        import importlib

        try:
            module = importlib.import_module(f"greenback_{library}")
        except ImportError:
            return None
        by_name = getattr(module, "integration", None)
        if isinstance(by_name, LoopIntegration):
            return by_name
    return None


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
            found = _load_entry_point(library)
            if found is None:
                extra = _KNOWN_EXTRAS.get(library)
                if extra is not None:
                    hint = f'install it with: pip install "greenback[{extra}]"'
                else:
                    hint = (
                        "install a distribution that registers one in the "
                        f"{ENTRY_POINT_GROUP!r} entry-point group, or call "
                        "greenback.loops.register_integration()"
                    )
                raise MissingIntegrationError(
                    f"greenback does not support {library}: no loop integration is "
                    f"installed for the async library {library!r}; {hint}"
                )
            _registry[library] = found
        return _registry[library]


def integration_for_task(task: object) -> Optional[LoopIntegration]:
    """Return the integration whose loop *task* belongs to, or None if none claims it.

    The answer comes from the task itself, never from which library is
    running: with Trio running as a guest on an asyncio loop, code in a Trio
    task may hand a portal to an asyncio task (and the other way round), while
    sniffio names the caller's library. Integrations already in use are asked
    first (:meth:`LoopIntegration.is_task`). Otherwise the library is looked
    for by the top-level package of each class in the task type's MRO
    (``trio._core._run.Task`` -> ``trio``; ``_asyncio.Task`` -> ``asyncio``,
    a leading underscore dropped, so a subclass of it defined anywhere finds
    asyncio too), and the integration found is asked.

    Raises :class:`MissingIntegrationError` when the task's package is a loop
    greenback knows by name but has no integration installed for.
    """
    for integration in list(_registry.values()):
        if integration.is_task(task):
            return integration
    tried = set(_registry)
    for cls in type(task).__mro__:
        library = cls.__module__.partition(".")[0].lstrip("_")
        if library in tried or library == "builtins":
            continue
        tried.add(library)
        try:
            integration = integration_for(library)
        except MissingIntegrationError:
            if library in _KNOWN_EXTRAS:
                raise
            continue
        if integration.is_task(task):
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
        from ._errors import NoLoopError

        raise NoLoopError(
            "greenback needs a running event loop here: call it from async code "
            "running under asyncio or Trio (no async library was detected in "
            "this thread)"
        ) from None
    return integration_for(library)
