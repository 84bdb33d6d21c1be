"""Clients of greenback (stackscope, Trio's guest mode, code that catches 1.3.0's
errors): their tests run under asyncio and under Trio.

Tests that take the ``loop`` fixture (or are ``async def``) run once under
asyncio's default loop and once under Trio (see ``tests/conftest.py``), unless
marked with ``@pytest.mark.loop_backends(...)``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def loop_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]
