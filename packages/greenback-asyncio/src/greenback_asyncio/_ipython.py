"""The IPython extension: ``%load_ext greenback_asyncio``.

IPython runs a cell's code inside ``InteractiveShell.run_code``, a coroutine.
Cells with top-level ``await`` are driven by ``ip.loop_runner`` (by default,
``run_until_complete`` on IPython's own asyncio loop); other cells are driven
without any loop at all. ipykernel (Jupyter) instead awaits the cell as a task
on the kernel's running asyncio loop, again only for cells that IPython says
should run async.

Once loaded, the extension

* wraps ``run_code`` so that, whenever an async library is running, the
  cell's code runs inside :func:`greenback.with_portal_run_tree`: the cell can
  call sync helpers that use :func:`greenback.await_`, and tasks it creates
  start in a portal too;
* makes ``should_run_async`` answer yes for every cell while the loop runner
  is IPython's asyncio one and ``%autoawait`` is on, so cells without an
  ``await`` run on the loop as well (with ``%autoawait trio`` or another
  runner, only cells that await run on a loop and get a portal);
* enables :func:`greenback_asyncio.enable_nested_run`, because a cell that
  calls ``asyncio.run()`` now runs inside a running loop: that call then runs
  its coroutine on IPython's loop instead of failing.

``%unload_ext greenback_asyncio`` undoes all three (nested runs only if the
extension was what enabled them).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import greenback

from ._nested import disable_nested_run, enable_nested_run, nested_run_enabled

_STATE = "_greenback_asyncio_extension"
_PATCHED = ("run_code", "should_run_async")
_MISSING: Any = object()


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


def load_ipython_extension(ip: Any) -> None:
    if getattr(ip, _STATE, None) is not None:
        return  # already loaded
    saved: Dict[str, Any] = {name: vars(ip).get(name, _MISSING) for name in _PATCHED}
    original_run_code = ip.run_code
    original_should_run_async = ip.should_run_async

    async def run_code(code_obj: Any, result: Any = None, *, async_: bool = False) -> Any:
        if _running_integration() is None:
            return await original_run_code(code_obj, result, async_=async_)
        return await greenback.with_portal_run_tree(original_run_code, code_obj, result, async_=async_)

    def should_run_async(raw_cell: str, *args: Any, **kwargs: Any) -> bool:
        if (
            ip.autoawait
            and kwargs.get("preprocessing_exc_tuple") is None
            and not getattr(ip, "trio_runner", None)
            and _is_asyncio_runner(ip.loop_runner)
        ):
            return True
        return bool(original_should_run_async(raw_cell, *args, **kwargs))

    enabled_nested = not nested_run_enabled()
    if enabled_nested:
        enable_nested_run()
    ip.run_code = run_code
    ip.should_run_async = should_run_async
    setattr(ip, _STATE, {"saved": saved, "enabled_nested": enabled_nested})


def unload_ipython_extension(ip: Any) -> None:
    state = getattr(ip, _STATE, None)
    if state is None:
        return
    for name, value in state["saved"].items():
        if value is _MISSING:
            try:
                delattr(ip, name)
            except AttributeError:  # pragma: no cover - removed by someone else
                pass
        else:
            setattr(ip, name, value)
    if state["enabled_nested"]:
        disable_nested_run()
    delattr(ip, _STATE)
