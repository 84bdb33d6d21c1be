"""greenback + SQLAlchemy: sync ORM hooks that await, and lazy loads in async code.

Run it (SQLite through aiosqlite, in a temporary file):

    python examples/sqlalchemy_demo.py

or on PostgreSQL (asyncpg or psycopg):

    python examples/sqlalchemy_demo.py --url postgresql+asyncpg://postgres@127.0.0.1/test

SQLAlchemy's event hooks are plain functions, and SQLAlchemy has no async
event handlers. With ``greenback_sqlalchemy.install()`` and a greenback portal
on the task, a hook can simply ``greenback.await_()`` async code, here:

* a ``before_flush`` validator awaits an async lookup (another connection);
* an ``after_flush`` hook writes an audit trail through the raw async driver
  connection, inside the flush's own transaction;

and sync ORM code such as a lazy load works right in async code.
"""

import argparse
import asyncio
import os
import tempfile
from typing import List

from sqlalchemy import ForeignKey, String, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

import greenback
import greenback_sqlalchemy


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "greenback_demo_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    posts: Mapped[List["Post"]] = relationship(back_populates="author", order_by="Post.id")


class Post(Base):
    __tablename__ = "greenback_demo_post"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int] = mapped_column(ForeignKey(User.id))
    author: Mapped[User] = relationship(back_populates="posts")


class BlockedDomain(Base):
    __tablename__ = "greenback_demo_blocked_domain"
    domain: Mapped[str] = mapped_column(String(100), primary_key=True)


class AuditLog(Base):
    __tablename__ = "greenback_demo_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    message: Mapped[str] = mapped_column(String(200))


engine: AsyncEngine  # set in main()


# -- async helpers the sync hooks call -----------------------------------------


async def domain_is_blocked(email: str) -> bool:
    """An async lookup, on a connection of its own (think: a remote service)."""
    domain = email.rpartition("@")[2]
    async with engine.connect() as conn:
        found = await conn.scalar(select(BlockedDomain.domain).where(BlockedDomain.domain == domain))
    return found is not None


async def write_audit(driver_connection, message: str) -> None:
    """INSERT through the raw async driver connection (asyncpg, psycopg or aiosqlite)."""
    table = AuditLog.__tablename__
    module = type(driver_connection).__module__
    if module.startswith("asyncpg"):
        await driver_connection.execute(f"INSERT INTO {table} (message) VALUES ($1)", message)
    elif module.startswith("psycopg"):
        await driver_connection.execute(f"INSERT INTO {table} (message) VALUES (%s)", (message,))
    else:  # aiosqlite
        cursor = await driver_connection.execute(f"INSERT INTO {table} (message) VALUES (?)", (message,))
        await cursor.close()


# -- sync ORM event hooks that await ---------------------------------------------


@event.listens_for(Session, "before_flush")
def validate_new_users(session, flush_context, instances):
    for obj in session.new:
        if isinstance(obj, User) and greenback.await_(domain_is_blocked(obj.email)):
            raise ValueError(f"refusing {obj.email}: its domain is blocked")


@event.listens_for(Session, "after_flush")
def audit_trail(session, flush_context):
    raw = session.connection().connection.driver_connection  # e.g. an asyncpg.Connection
    for obj in session.new:
        label = getattr(obj, "email", None) or getattr(obj, "title", None) or getattr(obj, "domain", "")
        greenback.await_(write_audit(raw, f"created {type(obj).__name__} {label}"))


# -- the program -------------------------------------------------------------------


async def main(url: str) -> None:
    global engine
    greenback_sqlalchemy.install()  # once, at startup
    engine = create_async_engine(url)
    await greenback.ensure_portal()  # this task may now run sync code that awaits

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with AsyncSession(engine) as session:
            session.add(BlockedDomain(domain="spam.example"))
            await session.commit()

        # 1. Both hooks run during this commit's flush, and await.
        async with AsyncSession(engine) as session:
            session.add(User(email="ada@example.org", posts=[Post(title="Notes"), Post(title="Engines")]))
            await session.commit()
        print("saved ada@example.org with 2 posts")

        # 2. The validator's async lookup rejects this one; nothing is written.
        try:
            async with AsyncSession(engine) as session:
                session.add(User(email="bot@spam.example"))
                await session.commit()
        except ValueError as exc:
            print(f"before_flush said: {exc}")

        # 3. A lazy load in plain async code: no run_sync, no MissingGreenlet.
        async with AsyncSession(engine) as session:
            ada = await session.scalar(select(User).where(User.email == "ada@example.org"))
            titles = [post.title for post in ada.posts]  # sync I/O, through the portal
            print(f"lazy-loaded ada's posts: {titles}")

            # The audit trail written by after_flush, in the flushes' transactions.
            for message in await session.scalars(select(AuditLog.message).order_by(AuditLog.id)):
                print(f"audit: {message}")
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an async SQLAlchemy URL (default: SQLite in a temporary file)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(main(args.url))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main("sqlite+aiosqlite:///" + os.path.join(tmp, "demo.db")))
