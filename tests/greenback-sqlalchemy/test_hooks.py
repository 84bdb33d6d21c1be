"""Sync ORM event hooks that await: coroutines, raw async driver connections,
other AsyncSessions and AsyncConnections.

A hook can run in three places, and every test covers those that apply:

* ``async-session``: an AsyncSession in a task with a portal; SQLAlchemy runs
  the hook in its own greenlet, below the portal's worker.
* ``sync-session``: a sync Session over ``AsyncEngine.sync_engine``, called from
  plain async code in a task with a portal; the hook runs in the worker.
* ``no-portal``: an AsyncSession in a task without a portal; ``greenback.await_``
  defers to SQLAlchemy's greenlet.

Each test runs on every driver (see conftest.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Type

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, object_session

import greenback

PLACES = ["async-session", "sync-session", "no-portal"]


def session_class() -> Type[Session]:
    """A Session subclass of its own, so that a test's session events stay its own."""
    return type("TestSession", (Session,), {})


async def save(place: str, engine: Any, cls: Type[Session], *objects: Any) -> None:
    """Add *objects* and commit, in a new task, the way *place* says."""

    async def body() -> None:
        if place == "no-portal":
            assert not greenback.has_portal()
        else:
            await greenback.ensure_portal()
        if place == "sync-session":
            with cls(engine.sync_engine) as s:
                s.add_all(objects)
                s.commit()
        else:
            async with AsyncSession(engine, sync_session_class=cls) as s:
                s.add_all(objects)
                await s.commit()

    await asyncio.ensure_future(body())


async def count(engine: Any, model: Any) -> int:
    async with AsyncSession(engine) as s:
        return await s.scalar(select(func.count()).select_from(model))  # type: ignore[no-any-return]


@pytest.mark.parametrize("place", PLACES)
def test_before_flush_validator_awaits_an_async_lookup(db: Any, models: Any, listen: Any, place: str) -> None:
    async def main() -> None:
        engine = db.engine()
        async with AsyncSession(engine) as s:
            s.add(models.Audit(entry="banned:mallory"))
            await s.commit()

        async def is_banned(name: str) -> bool:
            await asyncio.sleep(0)
            async with engine.connect() as conn:  # another AsyncConnection
                hits = await conn.scalar(
                    select(func.count()).where(models.Audit.entry == f"banned:{name}")
                )
            return bool(hits)

        seen: List[str] = []

        def validate(session: Session, flush_context: Any, instances: Any) -> None:
            for obj in session.new:
                if isinstance(obj, models.Parent):
                    seen.append(obj.name)
                    if greenback.await_(is_banned(obj.name)):
                        raise ValueError(f"{obj.name} is banned")

        cls = session_class()
        listen(cls, "before_flush", validate)
        await save(place, engine, cls, models.Parent(name="alice"))
        with pytest.raises(ValueError, match="mallory is banned"):
            await save(place, engine, cls, models.Parent(name="mallory"))
        assert seen == ["alice", "mallory"]
        assert await count(engine, models.Parent) == 1

    db.run(main)


@pytest.mark.parametrize("place", PLACES)
def test_after_flush_writes_an_audit_trail_through_the_raw_driver_connection(
    db: Any, models: Any, listen: Any, place: str
) -> None:
    audit_table = models.Audit.__tablename__

    def audit(session: Session, flush_context: Any) -> None:
        driver_connection = session.connection().connection.driver_connection
        for obj in session.new:
            greenback.await_(db.raw(driver_connection, f"INSERT INTO {audit_table} (entry) VALUES (?)", f"new {obj.name}"))

    async def main() -> None:
        engine = db.engine()
        cls = session_class()
        listen(cls, "after_flush", audit)
        await save(place, engine, cls, models.Parent(name="p1"), models.Parent(name="p2"))
        async with AsyncSession(engine) as s:
            assert sorted((await s.scalars(select(models.Audit.entry))).all()) == ["new p1", "new p2"]

        # The audit rows share the flush's transaction: a rollback drops them too.
        async def flush_then_roll_back() -> None:
            if place != "no-portal":
                await greenback.ensure_portal()
            if place == "sync-session":
                with cls(engine.sync_engine) as s:
                    s.add(models.Parent(name="p3"))
                    s.flush()
                    s.rollback()
            else:
                async with AsyncSession(engine, sync_session_class=cls) as s:
                    s.add(models.Parent(name="p3"))
                    await s.flush()
                    await s.rollback()

        await asyncio.ensure_future(flush_then_roll_back())
        assert await count(engine, models.Audit) == 2

    db.run(main)


@pytest.mark.parametrize("place", PLACES)
def test_after_insert_awaits_another_async_session_and_the_driver(
    db: Any, models: Any, listen: Any, place: str
) -> None:
    async def main() -> None:
        engine = db.engine()
        async with AsyncSession(engine) as s:
            s.add_all([models.Audit(entry="a"), models.Audit(entry="b")])
            await s.commit()

        seen: List[Any] = []

        def after_insert(mapper: Any, connection: Any, target: Any) -> None:
            other = AsyncSession(engine)
            try:
                seen.append(greenback.await_(other.scalar(select(func.count()).select_from(models.Audit))))
            finally:
                greenback.await_(other.close())
            [(one,)] = greenback.await_(db.raw(connection.connection.driver_connection, "SELECT 1"))
            seen.append(one)

        listen(models.Parent, "after_insert", after_insert)
        await save(place, engine, session_class(), models.Parent(name="q"))
        assert seen == [2, 1]

    db.run(main)


@pytest.mark.parametrize("place", ["portal", "run_sync-without-portal"])
def test_attribute_set_event_awaits_and_does_sync_orm_io(
    db: Any, models: Any, listen: Any, place: str
) -> None:
    async def main() -> None:
        engine = db.engine()
        async with AsyncSession(engine) as s:
            s.add_all([models.Parent(name="a"), models.Parent(name="b")])
            await s.commit()

        async def normalize(value: str) -> str:
            await asyncio.sleep(0)
            return value.upper()

        counts: List[int] = []

        def on_set(target: Any, value: str, oldvalue: Any, initiator: Any) -> str:
            session = object_session(target)
            if session is not None:
                # sync ORM I/O inside the hook, which (in plain async code)
                # runs right in the portal's worker
                counts.append(session.scalar(select(func.count()).select_from(models.Parent)))
            return greenback.await_(normalize(value))  # type: ignore[no-any-return]

        listen(models.Parent.name, "set", on_set, retval=True)

        async def rename() -> None:
            async with AsyncSession(engine) as s:
                parent = (await s.scalars(select(models.Parent).where(models.Parent.name == "a"))).one()
                if place == "portal":
                    await greenback.ensure_portal()
                    parent.name = "zed"  # in plain async code
                else:
                    assert not greenback.has_portal()

                    def set_name(session: Session) -> None:
                        parent.name = "zed"

                    await s.run_sync(set_name)
                await s.commit()

        await asyncio.ensure_future(rename())
        assert counts == [2]
        async with AsyncSession(engine) as s:
            assert sorted((await s.scalars(select(models.Parent.name))).all()) == ["ZED", "b"]

    db.run(main)


def _cleanup_hook_checks(db: Any, engine: Any, record: List[Any]) -> Callable[[Any], None]:
    """What a cleanup-time hook does: await a coroutine, the driver, another AsyncConnection."""

    async def other_connection() -> Any:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT 2"))

    def check(driver_connection: Any) -> None:
        record.append(asyncio.current_task())
        record.append(greenback.await_(asyncio.sleep(0, "slept")))
        [(one,)] = greenback.await_(db.raw(driver_connection, "SELECT 1"))
        record.append(one)
        record.append(greenback.await_(other_connection()))

    return check


@pytest.mark.parametrize("outer", ["portal", "no-portal"])
def test_before_commit_in_async_sessionmaker_begin_cleanup(db: Any, models: Any, listen: Any, outer: str) -> None:
    async def main() -> None:
        engine = db.engine()
        record: List[Any] = []
        check = _cleanup_hook_checks(db, engine, record)

        def before_commit(session: Session) -> None:
            check(session.connection().connection.driver_connection)

        cls = session_class()
        listen(cls, "before_commit", before_commit)
        maker = async_sessionmaker(engine, sync_session_class=cls)

        async def body() -> Any:
            if outer == "portal":
                await greenback.ensure_portal()
            async with maker.begin() as s:
                s.add(models.Parent(name="committed on exit"))
            return asyncio.current_task()

        task = await asyncio.ensure_future(body())
        hook_task, *results = record
        assert results == ["slept", 1, 2]
        # the commit ran in SQLAlchemy's cleanup task, which has no portal
        assert hook_task is not task
        assert await count(engine, models.Parent) == 1

    db.run(main)


@pytest.mark.parametrize("outer", ["portal", "no-portal"])
def test_hooks_during_async_session_and_connection_cleanup(db: Any, models: Any, listen: Any, outer: str) -> None:
    async def main() -> None:
        engine = db.engine()
        record: List[Any] = []
        check = _cleanup_hook_checks(db, engine, record)
        checkins: List[Any] = []
        ended: List[Any] = []

        def on_checkin(dbapi_connection: Any, record_: Any) -> None:
            if dbapi_connection is None:
                return
            if checkins:  # only the first checkin: the others are check()'s own connection
                return
            checkins.append(True)
            check(dbapi_connection.driver_connection)

        def after_transaction_end(session: Session, transaction: Any) -> None:
            if transaction.parent is None:
                ended.append(greenback.await_(asyncio.sleep(0, "ended")))

        cls = session_class()
        listen(engine.sync_engine, "checkin", on_checkin)
        listen(cls, "after_transaction_end", after_transaction_end)

        async def body() -> None:
            if outer == "portal":
                await greenback.ensure_portal()
            async with AsyncSession(engine, sync_session_class=cls) as s:
                s.add(models.Parent(name="never committed"))
                await s.flush()
            # closed (and the connection checked in) in a cleanup task
            assert ended == ["ended"]
            assert record[1:] == ["slept", 1, 2]

            del record[:], checkins[:]
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 3")) == 3
            assert record[1:] == ["slept", 1, 2]

        await asyncio.ensure_future(body())
        assert await count(engine, models.Parent) == 0

    db.run(main)


def test_without_a_portal_hooks_in_plain_async_code_get_greenbacks_error(db: Any, models: Any, listen: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        async with AsyncSession(engine) as s:
            s.add(models.Parent(name="a"))
            await s.commit()

        def on_set(target: Any, value: str, oldvalue: Any, initiator: Any) -> None:
            greenback.await_(asyncio.sleep(0))

        listen(models.Parent.name, "set", on_set)

        async def body() -> None:
            async with AsyncSession(engine) as s:
                parent = (await s.scalars(select(models.Parent))).one()
                with pytest.raises(RuntimeError, match="greenback portal"):
                    parent.name = "b"

        await asyncio.ensure_future(body())

    db.run(main)
