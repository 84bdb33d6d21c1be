"""Fixtures for greenback-trio's tests.

Tests that take the ``loop`` fixture (or are ``async def``) run under Trio
only (see ``tests/conftest.py``).
"""

from __future__ import annotations

import logging
from typing import Iterator

import pytest


@pytest.fixture(params=["trio"])
def loop_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_disabled_instruments(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test if Trio disabled an instrument because one of its hooks raised.

    Trio logs such an error and carries on without the instrument, so a broken
    AutoPortalInstrument would otherwise only show up as tasks that quietly
    get no portal.
    """
    with caplog.at_level(logging.ERROR, logger="trio.abc.Instrument"):
        yield
    errors = [r for r in caplog.records if r.name == "trio.abc.Instrument"]
    assert not errors, "a Trio instrument raised and was disabled:\n" + "\n".join(
        r.getMessage() + "\n" + str(r.exc_info) for r in errors
    )
