"""Fixtures for the Trio tests.

``async def test_*`` functions here are run under ``trio.run`` by the shared
``tests/conftest.py``.
"""

from __future__ import annotations

import logging
from typing import Iterator

import pytest


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
