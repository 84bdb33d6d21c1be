"""Driving real Jupyter kernels and a real terminal IPython for the notebook tests.

What these tests need, and where:

* Jupyter tests: ipykernel, nbclient and nbformat (and IPython, which
  ipykernel brings). The latest releases (ipykernel 7, IPython 9) need Python
  3.11+; on 3.9 and 3.10 pip installs ipykernel 6.29 and IPython 8, which the
  extension supports as well.
* Terminal tests: pexpect and a pseudo-terminal (not on Windows).

Where the test requirements install them (CPython on Linux and macOS, see
``_expected``), a missing package fails the tests under CI (the ``CI``
environment variable set): CI must not pass by skipping them. Elsewhere, and
outside CI, they are skipped, naming what is missing.

A kernel is driven cell by cell through nbclient, on an event loop of the
test's own (:class:`Kernel`). Each kernel first runs :data:`SETUP`, which
defines ``_gb_leftovers()``: what a cell's failure could leave behind
(live greenlets, unfinished portals, suspended coroutines of cells or of
IPython's cell runner, "never awaited" warnings, unraisable exceptions).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

# Generous limits for waiting: never part of what a test asserts.
CELL_TIMEOUT = 120
STARTUP_TIMEOUT = 120


def _expected() -> bool:
    """Whether the test requirements install the notebook packages here."""
    return sys.implementation.name == "cpython" and sys.platform != "win32"


def require(*modules: str) -> None:
    """Import *modules*, or skip (fail under CI where they should be installed)."""
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if not missing:
        return
    what = ", ".join(missing)
    if os.environ.get("CI") and _expected():
        pytest.fail(f"the notebook tests need {what}, which the test requirements install; it is missing", pytrace=False)
    pytest.skip(f"the notebook tests need {what} (not installed)")


# The first cell of every kernel: the leftover counter.
SETUP = r'''
import gc, inspect, json, sys, warnings
import greenlet
from greenback import _engine as _gb_engine

_gb_unraisable = []
sys.unraisablehook = lambda u: _gb_unraisable.append(f"{u.exc_type.__name__}: {u.exc_value} ({u.object!r})")

def _gb_leftovers():
    """What earlier cells left behind: all empty when nothing was."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            gc.collect()
    _gb_engine.drain_pool()  # idle workers are kept on purpose: let them go
    gc.collect()
    chain = set()
    g = greenlet.getcurrent()
    while g is not None:
        chain.add(g)
        g = g.parent
    current = _gb_engine.current_portal()
    greenlets, portals, coroutines = [], [], []
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet):
            # Not counted: an idle worker (waiting in _serve for a job, with no
            # portal). One stays alive while the frames of an earlier error
            # (IPython keeps the last cell's result and sys.last_exc) refer to
            # it, and holds nothing of any cell.
            frame = obj.gr_frame
            idle = frame is not None and frame.f_code is _gb_engine._serve.__code__ and getattr(obj, "_greenback_portal", None) is None
            if obj and obj not in chain and not idle:
                greenlets.append(f"{obj!r} in {frame and frame.f_code.co_name}")
        elif isinstance(obj, _gb_engine.Portal):
            # (A blank portal of with_portal_run_sync that was never begun has
            # no _finished: it holds nothing.)
            if not getattr(obj, "_finished", True) and obj is not current:
                portals.append(f"{obj!r} (current: {current!r}; worker {obj._worker!r}, here {greenlet.getcurrent()!r}; same context {greenlet.getcurrent().gr_context is obj._context})")
        elif inspect.iscoroutine(obj) and obj.cr_frame is not None and not obj.cr_running:
            code = obj.cr_code
            cell = "ipykernel_" in code.co_filename or code.co_filename.startswith("<ipython-input")
            if cell or code.co_name in ("run_cell_async", "run_ast_nodes", "run_code"):
                coroutines.append(repr(obj))
    found = {
        "greenlets": greenlets,
        "portals": portals,
        "coroutines": coroutines,
        "warnings": [str(w.message) for w in caught],
        "unraisable": list(_gb_unraisable),
    }
    _gb_unraisable.clear()
    return found
'''

NOTHING_LEFT = {"greenlets": [], "portals": [], "coroutines": [], "warnings": [], "unraisable": []}

# Helpers as a notebook would define them.
HELPERS = r'''
import asyncio, time
import greenback

def helper(value):
    """A sync helper that awaits through the cell's portal."""
    return greenback.await_(asyncio.sleep(0, value))

async def child(value):
    return helper(value)

async def fetch(value, delay=0):
    await asyncio.sleep(delay)
    return value

def lib(value=42):
    """A sync library function that runs its own event loop, as many do."""
    return asyncio.run(fetch(value))

async def announce_then_sleep(marker):
    # Prints once this task waits in the loop: an interrupt sent after the
    # marker is seen finds the cell waiting, never on its way there.
    asyncio.get_running_loop().call_soon(lambda: print(marker, flush=True))
    await asyncio.sleep(3600)
'''


class Ran:
    """A cell that ran: its outputs, read the way the tests need them."""

    def __init__(self, cell: Any) -> None:
        self.cell = cell

    def stream(self, name: str) -> str:
        return "".join(o.get("text", "") for o in self.cell.outputs if o.output_type == "stream" and o.name == name)

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    @property
    def errors(self) -> List[Any]:
        return [o for o in self.cell.outputs if o.output_type == "error"]

    @property
    def error(self) -> Any:
        """The cell's one error output (ename, evalue, traceback)."""
        assert len(self.errors) == 1, f"expected one error, got: {self.cell.outputs}"
        return self.errors[0]

    @property
    def traceback(self) -> str:
        """The error's traceback as the user sees it, without colours."""
        return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(self.error.traceback))

    def assert_clean(self) -> "Ran":
        """No error and nothing on stderr."""
        assert not self.errors and not self.stderr, self.cell.outputs
        return self

    def __repr__(self) -> str:
        return f"<Ran {self.cell.source[:40]!r}: {self.cell.outputs}>"


class Kernel:
    """One ipykernel, run cell by cell through nbclient, on a loop of its own."""

    def __init__(self, spec_dir: Path, kernel_name: str) -> None:
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        self.loop = asyncio.new_event_loop()
        self.nb = nbformat.v4.new_notebook()
        km = AsyncKernelManager(
            kernel_name=kernel_name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir)])
        )
        self.client = NotebookClient(
            self.nb,
            km=km,
            timeout=CELL_TIMEOUT,
            startup_timeout=STARTUP_TIMEOUT,
            allow_errors=True,
            shutdown_kernel="immediate",
        )
        self._setup = self.client.async_setup_kernel()
        self.loop.run_until_complete(self._setup.__aenter__())

    def close(self) -> None:
        async def close() -> None:
            km, kc = self.client.km, self.client.kc
            try:
                await self._setup.__aexit__(None, None, None)
            finally:
                # nbclient leaves running a kernel whose manager it was given.
                if kc is not None:
                    kc.stop_channels()
                if km is not None and await km.is_alive():
                    await km.shutdown_kernel(now=True)

        try:
            self.loop.run_until_complete(close())
        finally:
            self.loop.close()

    def run(self, code: str, *, interrupt_at: Optional[str] = None) -> Ran:
        """Run *code* as the next cell and return the cell, with its outputs.

        With *interrupt_at*, interrupt the kernel (as Jupyter's stop button
        does) once the cell has printed that marker.
        """
        import nbformat

        cell = nbformat.v4.new_code_cell(textwrap.dedent(code))
        self.nb.cells.append(cell)
        index = len(self.nb.cells) - 1
        return Ran(self.loop.run_until_complete(self._run(cell, index, interrupt_at)))

    async def _run(self, cell: Any, index: int, interrupt_at: Optional[str]) -> Any:
        execution = asyncio.ensure_future(self.client.async_execute_cell(cell, index))
        if interrupt_at is not None:
            while interrupt_at not in Ran(cell).stdout and not execution.done():
                await asyncio.sleep(0.02)
            assert not execution.done(), f"the cell ended before it was interrupted: {cell.outputs}"
            await self.client.km.interrupt_kernel()
        return await execution

    def restart(self) -> None:
        async def restart() -> None:
            await self.client.km.restart_kernel()
            await self.client.kc.wait_for_ready(timeout=STARTUP_TIMEOUT)

        self.loop.run_until_complete(restart())

    def leftovers(self) -> Dict[str, Any]:
        ran = self.run("print(json.dumps(_gb_leftovers()))").assert_clean()
        return json.loads(ran.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def assert_nothing_left(self) -> None:
        """Earlier cells left no greenlet, portal, coroutine, warning or unraisable error."""
        assert self.leftovers() == NOTHING_LEFT

    def setup(self, *, helpers: bool = True) -> None:
        for code in (SETUP, HELPERS) if helpers else (SETUP,):
            self.run(code).assert_clean()


def write_kernel_spec(where: Path, name: str, ipython_dir: Path, extra_args: List[str] = ()) -> Path:  # type: ignore[assignment]
    """A kernel spec running this very Python, with an IPython directory of its own."""
    spec = where / name
    spec.mkdir(parents=True, exist_ok=True)
    ipython_dir.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", *extra_args],
                "display_name": name,
                "language": "python",
                "env": {"IPYTHONDIR": str(ipython_dir), "PYDEVD_DISABLE_FILE_VALIDATION": "1"},
            }
        )
    )
    return where


@pytest.fixture(scope="module")
def kernel_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start kernels: factory(ipython_config=None) -> Kernel; all shut down at the end."""
    require("ipykernel", "nbclient", "nbformat")
    started: List[Kernel] = []
    base = tmp_path_factory.mktemp("kernels")

    def start(ipython_config: Optional[str] = None, *, helpers: bool = True) -> Kernel:
        name = f"greenback-test-{len(started)}"
        ipython_dir = base / f"ipython-{len(started)}"
        if ipython_config is not None:
            profile = ipython_dir / "profile_default"
            profile.mkdir(parents=True)
            (profile / "ipython_config.py").write_text(ipython_config)
        kernel = Kernel(write_kernel_spec(base / "specs", name, ipython_dir), name)
        started.append(kernel)
        kernel.setup(helpers=helpers)
        return kernel

    try:
        yield start
    finally:
        for kernel in started:
            kernel.close()


@pytest.fixture(scope="session")
def notebook_code() -> Any:
    """The code and limits above, for test modules (which cannot import this one)."""
    import types

    return types.SimpleNamespace(
        SETUP=SETUP, HELPERS=HELPERS, NOTHING_LEFT=NOTHING_LEFT, CELL_TIMEOUT=CELL_TIMEOUT, require=require
    )
