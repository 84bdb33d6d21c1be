"""greenback-core's tests run under asyncio and under Trio.

Tests that take the ``loop`` fixture (or are ``async def``) run once under
asyncio's default loop and once under Trio, see ``tests/conftest.py``; a test
that holds for one loop only says so with ``@pytest.mark.loop_backends(...)``.
The other kinds of asyncio task and loop are greenback-asyncio's tests.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def loop_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]
