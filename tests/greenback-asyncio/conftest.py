"""greenback-asyncio's tests run under asyncio's default loop and uvloop.

Tests that take the ``loop`` fixture (or are ``async def``) run once per loop
backend this folder claims, see ``tests/conftest.py``: asyncio's default loop
and uvloop (skipped where uvloop cannot be installed). Modules and tests that
claim more, or fewer, say so with ``@pytest.mark.loop_backends(...)``:
test_task_flavors.py, for one, runs under every kind of asyncio task and loop.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]
