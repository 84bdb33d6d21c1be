"""Configuration of the reliability tests.

Tests that take the ``loop`` fixture run under asyncio and under Trio (see
``tests/conftest.py``), unless marked with ``@pytest.mark.loop_backends(...)``.

Loads _support.py as the module ``greenback_reliability_support`` (with
``--import-mode=importlib`` nothing under tests/ is importable by name), which
holds the shared helpers and the hypothesis profiles. The profiles are applied
per test, never loaded globally, so that other test directories keep theirs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
SUPPORT = "greenback_reliability_support"
if SUPPORT not in sys.modules:
    _spec = importlib.util.spec_from_file_location(SUPPORT, _HERE / "_support.py")
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[SUPPORT] = _module
    _spec.loader.exec_module(_module)


@pytest.fixture(params=["asyncio", "trio"])
def loop_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]
