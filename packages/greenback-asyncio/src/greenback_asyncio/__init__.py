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
from ._nested import nested_run_enabled as nested_run_enabled, patch_nested_run, unpatch_nested_run
from ._shell import running_shell
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


def enable_nested_run() -> None:
    """Let ``asyncio.run()`` and ``loop.run_until_complete()`` be called from sync code in a running loop.

    Afterwards, such a call made from sync code while this thread's loop is
    running no longer fails with "cannot be called from a running event
    loop": if the calling task has a greenback portal, the coroutine is
    awaited right there, on the running loop, through
    :func:`greenback.await_`, and its result returned (its exception raised;
    cancelling the task cancels it). Other tasks keep running meanwhile, and
    the coroutine runs in the calling task, with its context variables. From
    a task without a portal, the call raises an error naming the fix; with no
    loop running, the stock functions run. A nested ``asyncio.run()``
    ignores its ``debug`` and ``loop_factory`` arguments.

    In IPython or Jupyter it also loads the ``greenback_asyncio`` extension
    (``%load_ext greenback_asyncio``), so that every cell after this one has
    a portal: this call replaces ``nest_asyncio.apply()``.

    Unlike nest_asyncio, nothing of the loop is re-entered, so this works on
    every supported Python and with uvloop. Calling it again changes
    nothing; :func:`disable_nested_run` puts the original functions back.
    """
    patch_nested_run()
    shell = running_shell()
    if shell is not None:
        from ._ipython import load_by_nested_run  # IPython is running: no cost to import it

        load_by_nested_run(shell)


def disable_nested_run() -> None:
    """Undo :func:`enable_nested_run`, restoring exactly the functions it replaced.

    In IPython, it also unloads the extension if :func:`enable_nested_run`
    is what loaded it.
    """
    unpatch_nested_run()
    shell = running_shell()
    if shell is not None:
        from ._ipython import unload_if_loaded_by_nested_run

        unload_if_loaded_by_nested_run(shell)
