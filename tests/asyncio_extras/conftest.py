"""Fixtures for the asyncio extras: tree portals, portal task factories,
nested runs, eager tasks, IPython.

Tests here are plain (sync) test functions that run their own loops through
the ``aio`` fixture, which is parametrized over the default asyncio loop and
uvloop (where installed), so that every test runs on both. Tests marked
``anyio`` run under anyio's pytest plugin on the backends of ``anyio_backend``
below: asyncio, asyncio with uvloop, and Trio.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable, Optional, TypeVar

import pytest

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is not on every platform
    uvloop = None

LOOP_KINDS = ["asyncio", "uvloop"]
# Why uvloop's runs are skipped where it is missing.
NO_UVLOOP = (
    "uvloop supports CPython only: there is no uvloop for PyPy"
    if sys.implementation.name == "pypy"
    else "uvloop is not installed"
)


class AioRunner:
    """Runs a coroutine function on a fresh loop of one kind (default or uvloop)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"<AioRunner {self.kind}>"

    def new_loop(self) -> asyncio.AbstractEventLoop:
        if self.kind == "uvloop":
            return uvloop.new_event_loop()  # type: ignore[no-any-return,union-attr]
        return asyncio.new_event_loop()

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any, setup: Optional[Callable[[Any], None]] = None) -> T:
        """Like asyncio.run(async_fn(*args)) on a new loop of this kind.

        *setup*, if given, is called with the loop before the main task is
        created (to install a task factory, say).
        """
        loop = self.new_loop()
        try:
            asyncio.set_event_loop(loop)
            if setup is not None:
                setup(loop)
            return loop.run_until_complete(async_fn(*args))
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    __call__ = run


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


@pytest.fixture(params=LOOP_KINDS)
def aio(request: pytest.FixtureRequest) -> AioRunner:
    """An :class:`AioRunner` for the default asyncio loop, then for uvloop."""
    if request.param == "uvloop" and uvloop is None:
        pytest.skip(NO_UVLOOP)
    return AioRunner(request.param)


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="asyncio+uvloop"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    backend, options = request.param
    if options.get("use_uvloop") and uvloop is None:
        pytest.skip(NO_UVLOOP)
    return request.param


needs_eager = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="eager tasks arrived in Python 3.12"
)
