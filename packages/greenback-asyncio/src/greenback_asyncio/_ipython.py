"""The IPython extension: ``%load_ext greenback_asyncio``.

How IPython runs a cell: ``InteractiveShell.run_cell_async`` (a coroutine)
runs the cell, statement by statement, through ``run_code``. A cell that
IPython says should run async (it has a top-level ``await``) is stepped by
``ip.loop_runner``: in the terminal,
``run_until_complete`` on IPython's own asyncio loop; in Jupyter, ipykernel
makes it a task on the kernel's running loop. Any other cell is stepped by
``_pseudo_sync_runner``, which cannot suspend: in the terminal no loop runs
at all then, while in Jupyter the cell runs inside the task that handles the
kernel's execute request, on the running loop.

So the extension gives each kind of cell its portal where it can have one,
and leaves sync cells sync (a stock kernel interrupts a sync cell by raising
KeyboardInterrupt in it, which only works while it stays sync):

* Jupyter, sync cells: the kernel's ``do_execute`` runs in
  :func:`greenback.with_portal_run`, so the task handling the request has a
  portal, and the sync cell it runs can ``await_`` through it.
* Jupyter, async cells, and every cell in the terminal: ``run_cell_async``
  runs in :func:`greenback.with_portal_run_tree`. In the terminal, where nothing else
  could give a sync cell a loop, ``should_run_async`` answers yes for every
  cell, so that each runs on IPython's loop.
* Either way, tasks that a cell creates start with a portal, and SIGINT
  interrupts the cell (see :mod:`greenback_asyncio._interrupt`).
* Nested ``asyncio.run()`` is enabled (:func:`greenback_asyncio.enable_nested_run`).

Cells get no portal, and run exactly the stock way, with ``%autoawait off``,
with a loop runner other than asyncio's (with ``%autoawait trio``, cells
that await run with a portal on Trio), and whenever ``_pseudo_sync_runner``
steps the cell's code with no portal around it (nothing could suspend it).

``%unload_ext greenback_asyncio`` undoes all of it (nested runs only if the
extension was what enabled them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import sys
from types import FrameType
from typing import Any, ContextManager, Dict, Optional

import greenback
from greenback.lowlevel import current_portal

from ._interrupt import CellInterrupts
from ._nested import patch_nested_run, unpatch_nested_run
from ._shell import EXTENSION_ATTRIBUTE as _STATE, running_shell

_MISSING: Any = object()
_CORO_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_GENERATOR


def _running_integration() -> Optional[Any]:
    """The greenback integration of the async library running here, if any."""
    import sniffio

    from greenback.lowlevel import integration_for

    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    try:
        return integration_for(library)
    except Exception:  # e.g. curio: no greenback integration; run the cell as is
        return None


def _is_asyncio_runner(runner: Any) -> bool:
    asyncio_runner: Any = None
    try:
        from IPython.core.async_helpers import _asyncio_runner as asyncio_runner
    except ImportError:  # pragma: no cover - very old IPython
        pass
    return runner is asyncio_runner or str(runner) == "asyncio"


def _stepped_without_loop(frame: Optional[FrameType]) -> bool:
    """Whether the coroutine chain *frame* belongs to is stepped by a runner
    that cannot suspend (IPython's ``_pseudo_sync_runner``), not by a loop."""
    try:
        from IPython.core.async_helpers import _pseudo_sync_runner
    except ImportError:  # pragma: no cover - very old IPython
        return False
    # A running coroutine's frame links back through the coroutines awaiting
    # it to the frame that called send() on the outermost one.
    while frame is not None and frame.f_code.co_flags & _CORO_FLAGS:
        frame = frame.f_back
    return frame is not None and frame.f_code is _pseudo_sync_runner.__code__


def _in_cell(ip: Any) -> bool:
    """Whether this is called from code that a cell of *ip* runs."""
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "run_code" and frame.f_locals.get("self") is ip:
            return True
        frame = frame.f_back
    return False


class _Extension:
    """The extension as loaded into one shell: its hooks, and what they replaced."""

    def __init__(self, ip: Any, by_nested_run: bool) -> None:
        self.ip = ip
        self.by_nested_run = by_nested_run
        # The cell during which it was loaded, if any (that cell has no portal).
        self.loaded_during = getattr(ip, "execution_count", None) if _in_cell(ip) else None
        self.saved: Dict[str, Any] = {name: vars(ip).get(name, _MISSING) for name in ("run_cell_async", "should_run_async")}
        self.run_cell_async = ip.run_cell_async
        self.should_run_async = ip.should_run_async
        # Code that run_code runs is the cell's own (see CellInterrupts).
        self.runner = getattr(type(ip).run_code, "__code__", None)
        # ipykernel: the kernel whose execute requests run sync cells.
        kernel = getattr(ip, "kernel", None)
        do_execute = getattr(kernel, "do_execute", None)
        if do_execute is not None and inspect.iscoroutinefunction(do_execute):
            self.kernel: Any = kernel
            self.do_execute: Any = do_execute
            self.saved_do_execute = vars(kernel).get("do_execute", _MISSING)
        else:
            self.kernel = self.do_execute = self.saved_do_execute = None
        self.enabled_nested = False

    def install(self) -> None:
        self.enabled_nested = patch_nested_run()
        self.ip.run_cell_async = self._make_run_cell_async()
        self.ip.should_run_async = self._should_run_async
        if self.kernel is not None:
            self.kernel.do_execute = self._do_execute
        setattr(self.ip, _STATE, self)

    def uninstall(self) -> None:
        for name, value in self.saved.items():
            _restore(self.ip, name, value)
        if self.kernel is not None:
            _restore(self.kernel, "do_execute", self.saved_do_execute)
        if self.enabled_nested:
            unpatch_nested_run()
        delattr(self.ip, _STATE)

    # -- when cells get portals ----------------------------------------------

    def _portal_for_sync_cells(self) -> bool:
        """Whether sync cells run with a portal: %autoawait on, asyncio's runner."""
        ip = self.ip
        return bool(ip.autoawait) and not getattr(ip, "trio_runner", None) and _is_asyncio_runner(ip.loop_runner)

    async def _do_execute(self, *args: Any, **kwargs: Any) -> Any:
        # ipykernel runs a sync cell inside the task handling the request:
        # give that task a portal for the whole request.
        if self._portal_for_sync_cells():
            return await greenback.with_portal_run(self.do_execute, *args, **kwargs)
        return await self.do_execute(*args, **kwargs)

    def _should_run_async(self, raw_cell: str, *args: Any, **kwargs: Any) -> bool:
        if self.should_run_async(raw_cell, *args, **kwargs):
            return True
        # In the terminal nothing runs a loop for a sync cell: run every cell
        # on IPython's loop, so that it can have a portal. (Under ipykernel a
        # loop is running here, and sync cells stay sync.)
        return (
            self._portal_for_sync_cells()
            and kwargs.get("preprocessing_exc_tuple") is None
            and asyncio._get_running_loop() is None
        )

    def _make_run_cell_async(self) -> Any:
        run_cell_async = self.run_cell_async

        # wraps: ipykernel reads the signature to know which arguments to pass.
        @functools.wraps(run_cell_async)
        async def run_cell_async_with_portal(*args: Any, **kwargs: Any) -> Any:
            if current_portal() is not None:
                # A sync cell in Jupyter: its task has a portal (see _do_execute).
                with greenback.portals_for_children(), self._interrupts():
                    return await run_cell_async(*args, **kwargs)
            if _stepped_without_loop(sys._getframe()):
                return await run_cell_async(*args, **kwargs)  # nothing could suspend it
            integration = _running_integration()
            if integration is None:
                return await run_cell_async(*args, **kwargs)
            if integration.library == "asyncio":
                return await greenback.with_portal_run_tree(self._interruptible, *args, **kwargs)
            return await greenback.with_portal_run_tree(run_cell_async, *args, **kwargs)

        return run_cell_async_with_portal

    async def _interruptible(self, *args: Any, **kwargs: Any) -> Any:
        with self._interrupts():
            return await self.run_cell_async(*args, **kwargs)

    def _interrupts(self) -> ContextManager[Any]:
        if self.runner is None:  # pragma: no cover - an unusual shell
            return contextlib.nullcontext()
        return CellInterrupts(self.runner)

    # -- errors ----------------------------------------------------------------

    def no_portal_hint(self) -> str:
        """Why code in this shell has no portal, for greenback's no-portal errors ('' if not known)."""
        ip = self.ip
        if not ip.autoawait:
            return (
                " In this IPython shell '%autoawait off' is in effect, and greenback_asyncio "
                "gives cells no portal then: run '%autoawait on' (cells that await then run on "
                "asyncio, and every cell has a portal)."
            )
        if not self._portal_for_sync_cells():
            runner = getattr(ip, "trio_runner", None) or ip.loop_runner
            name = getattr(runner, "__name__", None) or str(runner)
            return (
                f" In this IPython shell cells run with a loop runner other than asyncio's ({name}), "
                "and greenback_asyncio then gives a portal only to the cells that await something; "
                "'%autoawait asyncio' gives every cell one."
            )
        if self.loaded_during is not None and getattr(ip, "execution_count", None) == self.loaded_during:
            return (
                " greenback_asyncio was loaded during this cell (by '%load_ext greenback_asyncio' "
                "or greenback_asyncio.enable_nested_run()), and cells have a portal from the next "
                "cell on: run this code again in a new cell."
            )
        return ""


def _restore(owner: Any, name: str, value: Any) -> None:
    if value is _MISSING:
        try:
            delattr(owner, name)
        except AttributeError:  # pragma: no cover - removed by someone else
            pass
    else:
        setattr(owner, name, value)


def load_ipython_extension(ip: Any, *, by_nested_run: bool = False) -> None:
    if getattr(ip, _STATE, None) is not None:
        return  # already loaded
    _Extension(ip, by_nested_run).install()


def unload_ipython_extension(ip: Any) -> None:
    extension = getattr(ip, _STATE, None)
    if extension is not None:
        extension.uninstall()


def load_by_nested_run(ip: Any) -> None:
    """Load the extension for :func:`greenback_asyncio.enable_nested_run`."""
    load_ipython_extension(ip, by_nested_run=True)


def unload_if_loaded_by_nested_run(ip: Any) -> None:
    """Unload the extension if :func:`load_by_nested_run` loaded it."""
    extension = getattr(ip, _STATE, None)
    if extension is not None and extension.by_nested_run:
        extension.uninstall()
