"""greenback's asyncio integration.

Installing this distribution is all it takes: greenback finds it through the
``greenback.loops`` entry point the first time a portal is created under
asyncio (the default loop, uvloop, ``asyncio.Runner``, anyio's asyncio backend).

It also offers what only makes sense on asyncio:

* portals for every task of a loop: :func:`run`, :func:`new_event_loop`,
  :func:`portal_loop_factory`, :func:`install_portal_task_factory`,
  :data:`portal_task_factory` (the tree-scoped version is
  :func:`greenback.with_portal_run_tree` / :func:`greenback.portals_for_tree`);
* a re-entrant ``asyncio.run()``: :func:`enable_nested_run`;
* an IPython extension: ``%load_ext greenback_asyncio``.
"""

from typing import Any

from ._integration import AsyncioIntegration as AsyncioIntegration, integration as integration
from ._nested import (
    disable_nested_run as disable_nested_run,
    enable_nested_run as enable_nested_run,
    nested_run_enabled as nested_run_enabled,
)
from ._tree import (
    PortalTaskFactory as PortalTaskFactory,
    install_portal_task_factory as install_portal_task_factory,
    new_event_loop as new_event_loop,
    portal_loop_factory as portal_loop_factory,
    portal_task_factory as portal_task_factory,
    run as run,
    uninstall_portal_task_factory as uninstall_portal_task_factory,
)

__all__ = [
    "AsyncioIntegration",
    "PortalTaskFactory",
    "disable_nested_run",
    "enable_nested_run",
    "install_portal_task_factory",
    "integration",
    "load_ipython_extension",
    "nested_run_enabled",
    "new_event_loop",
    "portal_loop_factory",
    "portal_task_factory",
    "run",
    "uninstall_portal_task_factory",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext greenback_asyncio``: run every IPython cell with a greenback portal."""
    from ._ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext greenback_asyncio``: undo :func:`load_ipython_extension`."""
    from ._ipython import unload_ipython_extension as unload

    unload(ipython)
