"""Under Trio: SQLAlchemy's async layer is asyncio-only, but trio-asyncio runs it.

Code that trio-asyncio runs as asyncio (``trio_asyncio.aio_as_trio``) can give
its task a portal and use what greenback_sqlalchemy enables; a Trio task
cannot use an AsyncEngine at all, portal or not.

Each check runs in a subprocess: importing trio_asyncio replaces asyncio's
event loop policy for the whole process, which would change every later test.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("trio_asyncio") is None, reason="trio-asyncio is not installed"
)

SCRIPT = textwrap.dedent(
    """
    import sys
    import trio, trio_asyncio, greenback, greenback_sqlalchemy
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import Session

    URL = sys.argv[1]
    greenback_sqlalchemy.install()

    async def asyncio_side():
        await greenback.ensure_portal()
        engine = create_async_engine(URL)
        try:
            async with AsyncSession(engine) as s:
                print("async", (await s.execute(text("SELECT 1"))).scalar())
            with Session(engine.sync_engine) as s:  # sync ORM through the portal
                print("sync", s.execute(text("SELECT 2")).scalar())
        finally:
            await engine.dispose()

    async def trio_side():
        await greenback.ensure_portal()
        engine = create_async_engine(URL)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 3"))
        except Exception:  # no asyncio loop: each driver fails its own way
            print("trio task: no")
        else:
            print("trio task: yes")

    async def main():
        async with trio_asyncio.open_loop():
            with trio.fail_after(20):
                await trio_asyncio.aio_as_trio(asyncio_side)()
        await trio_side()

    trio.run(main)
    """
)


@pytest.fixture(scope="module")
def trio_asyncio_importable() -> None:
    """Skip if trio_asyncio is installed but cannot be imported on this Python.

    trio-asyncio 0.16.0 (the latest) fails at import on Python 3.14+, which
    renamed asyncio.events.BaseDefaultEventLoopPolicy
    (https://github.com/python-trio/trio-asyncio/issues/160). Checked in a
    subprocess, like the test itself.
    """
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", "import trio_asyncio"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        from importlib.metadata import version

        error = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(
            f"trio-asyncio {version('trio-asyncio')} cannot be imported on Python "
            f"{sys.version_info[0]}.{sys.version_info[1]}: {error} "
            "(https://github.com/python-trio/trio-asyncio/issues/160)"
        )


@pytest.mark.usefixtures("trio_asyncio_importable")
def test_asyncio_code_under_trio_asyncio_gets_the_bridge_and_trio_tasks_do_not(db: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT, db.url],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["async 1", "sync 2", "trio task: no"]
