"""Pool event hooks that await the raw driver connection, and the pool's
first-connect deadlock (a ``connect`` hook opening another connection from the
same pool while the pool runs its first connect under a mutex).

Each test runs on every driver (see conftest.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest
from sqlalchemy import text

import greenback

# Where the connection is opened:
# * async-engine: AsyncEngine.connect() in a task with a portal (hooks run in
#   SQLAlchemy's greenlet, below the portal's worker);
# * sync-engine: AsyncEngine.sync_engine.connect() from plain async code in a
#   task with a portal (hooks run in the worker);
# * no-portal: AsyncEngine.connect() in a task without one (await_ defers to
#   SQLAlchemy's greenlet).
PLACES = ["async-engine", "sync-engine", "no-portal"]


async def select_in(place: str, engine: Any, statement: str) -> Any:
    """Open a connection on *engine* the way *place* says, in a new task; run *statement*."""

    async def body() -> Any:
        if place == "no-portal":
            assert not greenback.has_portal()
        else:
            await greenback.ensure_portal()
        if place == "sync-engine":
            with engine.sync_engine.connect() as conn:
                return conn.execute(text(statement)).scalar()
        async with engine.connect() as conn:
            return await conn.scalar(text(statement))

    return await asyncio.ensure_future(body())


@pytest.mark.parametrize("place", PLACES)
def test_connect_checkout_and_checkin_hooks_await_the_driver_connection(
    db: Any, listen: Any, place: str
) -> None:
    async def main() -> None:
        engine = db.engine()
        calls: List[Any] = []

        def hook(name: str) -> Any:
            def on_event(dbapi_connection: Any, connection_record: Any, *more: Any) -> None:
                raw = dbapi_connection.driver_connection
                [(value,)] = greenback.await_(db.raw(raw, f"SELECT {len(calls)}"))
                calls.append((name, int(value)))

            return on_event

        for name in ("connect", "checkout", "checkin"):
            listen(engine.sync_engine, name, hook(name))

        assert await select_in(place, engine, "SELECT 10") == 10
        assert await select_in(place, engine, "SELECT 11") == 11
        assert calls == [("connect", 0), ("checkout", 1), ("checkin", 2), ("checkout", 3), ("checkin", 4)]

    db.run(main)


@pytest.mark.parametrize("nested", ["async", "sync"])
@pytest.mark.parametrize("place", PLACES)
def test_connect_hook_opening_a_connection_on_the_pools_first_connect(
    db: Any, listen: Any, place: str, nested: str
) -> None:
    # Without greenback_sqlalchemy's reentrant exec-once mutex this waits
    # forever; the timeout turns a regression into a failure.
    async def main() -> None:
        engine = db.engine()
        seen: List[Any] = []
        busy: List[bool] = []

        async def lookup() -> Any:
            async with engine.connect() as conn:
                return await conn.scalar(text("SELECT 7"))

        def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
            if busy:  # the nested connection's own connect event
                return
            busy.append(True)
            try:
                if nested == "async":
                    seen.append(greenback.await_(lookup()))
                else:
                    with engine.sync_engine.connect() as conn:
                        seen.append(conn.execute(text("SELECT 7")).scalar())
            finally:
                busy.pop()

        listen(engine.sync_engine, "connect", on_connect)
        assert await asyncio.wait_for(select_in(place, engine, "SELECT 1"), 15) == 1
        assert seen == [7]
        assert await asyncio.wait_for(select_in(place, engine, "SELECT 2"), 15) == 2

    db.run(main, timeout=30)


def test_first_connect_from_many_tasks_at_once(db: Any, listen: Any) -> None:
    # Other tasks still wait for the first connect to finish initializing the
    # dialect; only the task holding the mutex passes through it.
    async def main() -> None:
        engine = db.engine(pool_size=4, max_overflow=4)
        order: List[str] = []
        busy: List[bool] = []

        async def lookup() -> Any:
            async with engine.connect() as conn:
                return await conn.scalar(text("SELECT 1"))

        def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
            if busy:
                return
            busy.append(True)
            try:
                order.append("hook start")
                greenback.await_(asyncio.sleep(0.05))
                greenback.await_(lookup())
                order.append("hook end")
            finally:
                busy.pop()

        listen(engine.sync_engine, "connect", on_connect, once=True)

        async def one(i: int) -> Any:
            await greenback.ensure_portal()
            async with engine.connect() as conn:
                value = await conn.scalar(text(f"SELECT {i}"))
            order.append(f"task {i}")
            return value

        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(4))), 15)
        assert results == [0, 1, 2, 3]
        assert order[:2] == ["hook start", "hook end"]
        assert sorted(order[2:]) == ["task 0", "task 1", "task 2", "task 3"]

    db.run(main, timeout=30)


@pytest.mark.filterwarnings(
    "ignore:The garbage collector is trying to clean up:sqlalchemy.exc.SAWarning",
    "ignore::ResourceWarning",
    "ignore::pytest.PytestUnraisableExceptionWarning",
)
def test_garbage_collecting_a_leaked_connection_never_suspends_the_task(db: Any) -> None:
    # SQLAlchemy finalizes a connection that was never closed assuming it
    # cannot await there; in a portal's worker it could, and the collector
    # would then suspend the task at an arbitrary point of its code.
    async def main() -> None:
        import gc

        engine = db.engine()
        await greenback.ensure_portal()

        def leak() -> None:
            conn = engine.sync_engine.connect()
            conn.execute(text("SELECT 1"))
            conn._test_cycle = conn  # type: ignore[attr-defined]  # only the cyclic collector frees it

        leak()
        ticks: List[int] = []

        async def ticker() -> None:
            while True:
                ticks.append(1)
                await asyncio.sleep(0)

        other = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        before = len(ticks)
        gc.collect()
        assert len(ticks) == before  # no other task ran: the collection did not await
        other.cancel()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        # aiosqlite closes the abandoned connection in its own thread, which
        # reports back to this loop: let it, before the loop closes.
        await asyncio.sleep(0.1)

    db.run(main)
