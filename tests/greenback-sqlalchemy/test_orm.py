"""Sync ORM and Core code in plain async code, through a greenback portal.

Each test runs on every driver (see conftest.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload

import greenback


async def seed(engine: Any, models: Any, *names: str, children: int = 2) -> List[int]:
    ids = []
    async with AsyncSession(engine) as s:
        for name in names:
            parent = models.Parent(name=name)
            parent.children = [models.Child(name=f"{name}.{i}") for i in range(children)]
            s.add(parent)
        await s.commit()
        ids = [p.id for p in (await s.scalars(select(models.Parent).order_by(models.Parent.id))).all()]
    return ids


def test_lazy_loads_in_plain_async_code(db: Any, models: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        await seed(engine, models, "alice")
        await greenback.ensure_portal()
        async with AsyncSession(engine) as s:
            parent = (await s.scalars(select(models.Parent))).one()
            # one-to-many lazy load: sync ORM I/O, no run_sync, no MissingGreenlet
            assert [c.name for c in parent.children] == ["alice.0", "alice.1"]

        async with AsyncSession(engine) as s:
            child = (await s.scalars(select(models.Child).order_by(models.Child.id))).first()
            assert child is not None
            # many-to-one lazy load, and a lazy load from the loaded object onwards
            assert child.parent.name == "alice"
            assert len(child.parent.children) == 2

    db.run(main)


def test_expired_attributes_refresh_and_sync_session_methods(db: Any, models: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        await greenback.ensure_portal()
        async with AsyncSession(engine) as s:
            parent = models.Parent(name="bob")
            s.add(parent)
            await s.flush()
            pid = parent.id
            await s.commit()
            async with AsyncSession(engine) as other:
                (await other.get(models.Parent, pid)).name = "bobby"  # type: ignore[union-attr]
                await other.commit()
            # expire_on_commit: reading an attribute now reloads it (sync I/O)
            assert parent.name == "bobby"

            # refresh through the sync Session behind the AsyncSession
            parent.name = "local change"
            s.sync_session.refresh(parent)
            assert parent.name == "bobby"

            s.expire(parent)
            assert parent.name == "bobby"

            # the sync Session's methods, called directly from async code
            sync = s.sync_session
            sync.add(models.Child(name="c", parent=parent))
            sync.flush()
            assert sync.scalar(select(func.count()).select_from(models.Child)) == 1
            assert sync.get(models.Parent, pid) is parent
            sync.commit()

            # and the async API still works on the same session afterwards
            assert (await s.scalar(select(func.count()).select_from(models.Child))) == 1
            assert [c.name for c in parent.children] == ["c"]

    db.run(main)


def test_sync_session_over_the_async_engines_sync_engine(db: Any, models: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        await greenback.ensure_portal()
        with Session(engine.sync_engine) as s:
            s.add(models.Parent(name="carol", children=[models.Child(name="carol.0")]))
            s.commit()
            parent = s.scalars(select(models.Parent)).one()
            assert [c.name for c in parent.children] == ["carol.0"]

            s.add(models.Parent(name="discarded"))
            s.flush()
            s.rollback()
            assert s.scalar(select(func.count()).select_from(models.Parent)) == 1

            loaded = s.scalars(select(models.Parent).options(selectinload(models.Parent.children))).one()
            assert loaded.children[0].name == "carol.0"

        # visible to the async API too
        async with AsyncSession(engine) as s:
            assert (await s.scalar(select(models.Parent.name))) == "carol"

    db.run(main)


def test_sync_connection_over_the_async_engines_sync_engine(db: Any, models: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        await greenback.ensure_portal()
        table = models.Parent.__table__
        with engine.sync_engine.connect() as conn:
            assert conn.execute(text("SELECT 41 + 1")).scalar() == 42
            conn.execute(insert(table), [{"name": "x"}, {"name": "y"}])
            conn.commit()

        with pytest.raises(ZeroDivisionError):
            with engine.sync_engine.begin() as conn:
                conn.execute(insert(table), {"name": "rolled back"})
                1 / 0

        with engine.sync_engine.begin() as conn:
            names = conn.execute(select(table.c.name).order_by(table.c.name)).scalars().all()
        assert names == ["x", "y"]

    db.run(main)


def test_database_errors_surface_in_async_code_and_the_session_recovers(db: Any, models: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        [pid] = await seed(engine, models, "dup", children=0)
        await greenback.ensure_portal()
        with Session(engine.sync_engine) as s:
            s.add(models.Parent(id=pid, name="again"))
            with pytest.raises(IntegrityError):
                s.flush()
            s.rollback()
            assert s.scalar(select(func.count()).select_from(models.Parent)) == 1

    db.run(main)


def test_many_tasks_with_portals_share_the_pool(db: Any, models: Any) -> None:
    async def main() -> None:
        engine = db.engine(pool_size=3, max_overflow=0)
        ids = await seed(engine, models, "a", "b", "c", "d", "e", "f")

        async def reader(pid: int) -> List[str]:
            await greenback.ensure_portal()
            async with AsyncSession(engine) as s:
                parent = await s.get(models.Parent, pid)
                await asyncio.sleep(0)
                names = [c.name for c in parent.children]  # type: ignore[union-attr]
            with Session(engine.sync_engine) as s:
                assert s.get(models.Parent, pid) is not None
            return names

        results = await asyncio.gather(*(reader(pid) for pid in ids))
        assert [r[0] for r in results] == ["a.0", "b.0", "c.0", "d.0", "e.0", "f.0"]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    db.run(main)


def test_cancelling_a_task_blocked_in_sync_orm_code(db: Any, models: Any, listen: Any) -> None:
    async def main() -> None:
        engine = db.engine()
        started = asyncio.Event()

        def slow_hook(session: Any, flush_context: Any, instances: Any) -> None:
            started.set()
            greenback.await_(asyncio.sleep(60))

        async def flusher() -> None:
            await greenback.ensure_portal()
            with Session(engine.sync_engine) as s:
                listen(s, "before_flush", slow_hook)
                s.add(models.Parent(name="never"))
                s.flush()

        task = asyncio.ensure_future(flusher())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with AsyncSession(engine) as s:
            assert (await s.scalar(select(func.count()).select_from(models.Parent))) == 0

    db.run(main)
