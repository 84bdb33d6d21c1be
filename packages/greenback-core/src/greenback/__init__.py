"""greenback: call async code from sync code that runs inside an event loop.

An async task opens a *portal* (``await greenback.ensure_portal()``, or one of
the ``with_portal_run*`` functions); from then on any synchronous function that
task calls can use ``greenback.await_(coro)`` as if it had written
``await coro``. Works under asyncio (with ``greenback-asyncio``) and Trio (with
``greenback-trio``), and under any loop with an integration registered in the
``greenback.loops`` entry-point group. ``greenback.AutoPortalInstrument``, a
Trio instrument giving every task of a run a portal, comes with the Trio
integration. What integrations, greenlet bridges and debuggers build on is in
:mod:`greenback.lowlevel`.
"""

from typing import Any

from ._version import __version__ as __version__
from ._engine import await_ as await_
from ._api import (
    ensure_portal as ensure_portal,
    bestow_portal as bestow_portal,
    has_portal as has_portal,
    with_portal_run as with_portal_run,
    with_portal_run_sync as with_portal_run_sync,
    with_portal_run_tree as with_portal_run_tree,
    portals_for_tree as portals_for_tree,
    portals_for_children as portals_for_children,
)
from ._adapters import (
    autoawait as autoawait,
    decorate_as_sync as decorate_as_sync,
    async_context as async_context,
    async_iter as async_iter,
)
from ._exceptions import MissingIntegrationError as _MissingIntegrationError
from ._loops import integration_for as _integration_for

__all__ = [
    "ensure_portal",
    "bestow_portal",
    "has_portal",
    "with_portal_run",
    "with_portal_run_sync",
    "with_portal_run_tree",
    "portals_for_tree",
    "portals_for_children",
    "await_",
    "autoawait",
    "decorate_as_sync",
    "async_context",
    "async_iter",
    "__version__",
]
# Not listed: AutoPortalInstrument (below). `from greenback import *` fetches
# every name in __all__, and that one would import Trio, or fail without it.

# Names a loop integration adds to this namespace (LoopIntegration.exports),
# by the async library whose integration provides them. Looked up on first
# use, through the same registry as everything else, so that
# `import greenback` never imports Trio.
_FROM_INTEGRATIONS = {"AutoPortalInstrument": "trio"}


def _stackscope_install_glue_() -> None:
    """Teach stackscope to extract stacks through greenback portals.

    stackscope calls this once, the first time it extracts a stack after
    ``greenback`` was imported (and then deletes it from this module); see
    ``greenback._stackscope``.
    """
    from ._stackscope import install

    install()


def __getattr__(name: str) -> Any:
    if name == "_impl":
        # What stackscope 0.2's built-in glue for greenback 1.x reads when
        # stackscope is imported after greenback (see greenback._stackscope).
        import importlib

        return importlib.import_module("greenback._stackscope")
    library = _FROM_INTEGRATIONS.get(name)
    if library is None:
        raise AttributeError(f"module 'greenback' has no attribute {name!r}")
    try:
        value = _integration_for(library).exports[name]
    except _MissingIntegrationError as exc:  # its message says how to install it
        raise ImportError(f"greenback.{name} comes with greenback's {library} integration: {exc}") from exc
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(__all__))
