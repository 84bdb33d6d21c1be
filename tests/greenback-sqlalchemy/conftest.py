"""Fixtures for greenback-sqlalchemy's tests: real servers, real async drivers.

SQLAlchemy's async layer is asyncio's, so the tests here run under asyncio's
default loop only (``loop_backend`` below; see ``tests/conftest.py``).

Every behaviour test takes the ``db`` fixture, which is parametrized over the
drivers below. Servers come from the environment (the defaults are the ones
``.ci/run`` starts):

* ``GREENBACK_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
* ``GREENBACK_TEST_MYSQL_URL`` (default ``mysql://root@127.0.0.1:3306/test``)

SQLite needs no server: each test gets a database file of its own.

When a server cannot be reached, its tests are skipped with the reason, or,
under CI (the ``CI`` environment variable is set), they fail and name the
server. A driver that is not installed is treated the same way, except for
asyncmy, an optional second MariaDB driver that is skipped where missing.
On PyPy, the drivers that cannot work there (``PYPY_LIMITS``) are skipped
with the reason.

Tables get a per-run unique prefix and are dropped after each test, so runs
against the same servers (say, the SQLAlchemy 2.0 and 2.1 environments) can
overlap.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import socket
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from sqlalchemy import ForeignKey, String, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

import greenback_sqlalchemy
from greenback import lowlevel as bridges

POSTGRES_URL = os.environ.get("GREENBACK_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = os.environ.get("GREENBACK_TEST_MYSQL_URL") or "mysql://root@127.0.0.1:3306/test"
UNDER_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

# Per test run, so that concurrent runs never share a table.
PREFIX = f"gbsa{os.getpid() % 100000}{uuid.uuid4().hex[:4]}_"

# -- the schema every test uses ------------------------------------------------


class Base(DeclarativeBase):
    pass


class Parent(Base):
    __tablename__ = PREFIX + "parent"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    children: Mapped[List["Child"]] = relationship(back_populates="parent", order_by="Child.id")


class Child(Base):
    __tablename__ = PREFIX + "child"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int] = mapped_column(ForeignKey(Parent.id))
    parent: Mapped[Parent] = relationship(back_populates="children")


class Audit(Base):
    __tablename__ = PREFIX + "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    entry: Mapped[str] = mapped_column(String(200))


MODELS = SimpleNamespace(Base=Base, Parent=Parent, Child=Child, Audit=Audit)


@pytest.fixture
def models() -> SimpleNamespace:
    return MODELS


# -- drivers -----------------------------------------------------------------


class Driver:
    """One async driver: its SQLAlchemy URL and how to use its raw connections."""

    def __init__(self, name: str, server: Optional[str], base_url: Optional[str], scheme: str, placeholder: str) -> None:
        self.name = name
        self.module = name
        self.server = server  # "PostgreSQL", "MariaDB", or None for SQLite
        self.base_url = base_url
        self.scheme = scheme
        self.placeholder = placeholder  # "?", "$n" or "%s"

    def __repr__(self) -> str:
        return f"<driver {self.name}>"

    def url(self, tmp_path: Path) -> str:
        if self.base_url is None:
            return f"{self.scheme}:///{tmp_path / 'test.db'}"
        return make_url(self.base_url).set(drivername=self.scheme).render_as_string(hide_password=False)

    def sql(self, statement: str) -> str:
        """*statement* written with ``?`` placeholders, in this driver's style."""
        if self.placeholder == "?":
            return statement
        parts = statement.split("?")
        if self.placeholder == "%s":
            return "%s".join(parts)
        out = parts[0]
        for n, part in enumerate(parts[1:], 1):
            out += f"${n}{part}"
        return out

    async def raw(self, conn: Any, statement: str, *params: Any) -> List[Tuple[Any, ...]]:
        """Run *statement* (``?`` placeholders) on a raw driver connection; return its rows."""
        sql = self.sql(statement)
        if self.name == "aiosqlite":
            cursor = await conn.execute(sql, params)
            try:
                return [tuple(r) for r in await cursor.fetchall()]
            finally:
                await cursor.close()
        if self.name == "asyncpg":
            return [tuple(r) for r in await conn.fetch(sql, *params)]
        if self.name == "psycopg":
            cursor = await conn.execute(sql, params)
            return [tuple(r) for r in await cursor.fetchall()] if cursor.description else []
        # aiomysql and asyncmy
        async with conn.cursor() as cursor:
            await cursor.execute(sql, params)
            return [tuple(r) for r in await cursor.fetchall()] if cursor.description else []


DRIVERS = [
    Driver("aiosqlite", None, None, "sqlite+aiosqlite", "?"),
    Driver("asyncpg", "PostgreSQL", POSTGRES_URL, "postgresql+asyncpg", "$n"),
    Driver("psycopg", "PostgreSQL", POSTGRES_URL, "postgresql+psycopg", "%s"),
    Driver("aiomysql", "MariaDB", MYSQL_URL, "mysql+aiomysql", "%s"),
    Driver("asyncmy", "MariaDB", MYSQL_URL, "mysql+asyncmy", "%s"),
]
OPTIONAL_DRIVERS = {"asyncmy"}


def _pypy_limits() -> Dict[str, str]:
    """Drivers that cannot work on this PyPy, and why: skipped there, even under CI."""
    if sys.implementation.name != "pypy":
        return {}
    limits = {
        "asyncpg": "asyncpg does not build on PyPy: its C extension uses CPython-only API "
        "(Py_TRASHCAN_BEGIN, PyUnicodeWriter in asyncpg 0.32), and there are no PyPy wheels",
        "asyncmy": "asyncmy does not work on PyPy: it builds there, but asyncmy.connect() fails "
        "inside its Cython extension (\"TypeError: 'NoneType' object is not iterable\" at "
        "connection.pyx:990, asyncmy 0.2.17 on PyPy 7.3.11), with no greenback involved",
    }
    if sys.pypy_version_info < (7, 3, 12):  # type: ignore[attr-defined]
        limits["psycopg"] = (
            "psycopg cannot connect on PyPy before 7.3.12: its libpq binding passes a "
            "weakref to ctypes.py_object(), which PyPy's ctypes refused until 7.3.12 "
            "('cannot create weak reference to weakref object', pypy/pypy#3882)"
        )
    return limits


PYPY_LIMITS = _pypy_limits()

_reachable: Dict[str, Optional[str]] = {}


def _unreachable_reason(driver: Driver) -> Optional[str]:
    """Why *driver*'s tests cannot run here, or None."""
    if importlib.util.find_spec(driver.module) is None:
        return f"the {driver.name} driver is not installed"
    if driver.base_url is None:
        return None
    url = make_url(driver.base_url)
    host = url.host or "127.0.0.1"
    port = url.port or (5432 if driver.server == "PostgreSQL" else 3306)
    key = f"{host}:{port}"
    if key not in _reachable:
        try:
            socket.create_connection((host, port), timeout=3).close()
            _reachable[key] = None
        except OSError as exc:
            _reachable[key] = f"cannot reach the {driver.server} server at {key} ({exc})"
    return _reachable[key]


def _require(driver: Driver) -> None:
    if driver.name in PYPY_LIMITS:
        pytest.skip(PYPY_LIMITS[driver.name])
    reason = _unreachable_reason(driver)
    if reason is None:
        return
    if driver.name in OPTIONAL_DRIVERS and "not installed" in reason:
        pytest.skip(f"{reason} (optional second MariaDB driver)")
    if UNDER_CI:
        pytest.fail(
            f"{reason}; under CI every database test must run. Start the server "
            "(.ci/run does) or point GREENBACK_TEST_POSTGRES_URL / "
            "GREENBACK_TEST_MYSQL_URL at one.",
            pytrace=False,
        )
    pytest.skip(reason)


# -- the fixture tests use -------------------------------------------------------


class Database:
    """A test's database: engines on it, raw driver access, and a runner."""

    def __init__(self, driver: Driver, url: str, loop: Any) -> None:
        self.loop = loop  # the test's `loop` fixture, which runs the loop
        self.driver = driver
        self.name = driver.name
        self.url = url
        self._engines: List[AsyncEngine] = []

    def engine(self, **kw: Any) -> AsyncEngine:
        """A new AsyncEngine on this database, disposed of after the test.

        Its connections are pooled (AsyncAdaptedQueuePool) unless *kw* names
        another pool: SQLAlchemy's default for SQLite files was NullPool
        before 2.0.38 and is a queue pool since, and the tests must see the
        same pool on every SQLAlchemy we support.
        """
        kw.setdefault("poolclass", AsyncAdaptedQueuePool)
        engine = create_async_engine(self.url, **kw)
        self._engines.append(engine)
        return engine

    async def raw(self, conn: Any, statement: str, *params: Any) -> List[Tuple[Any, ...]]:
        return await self.driver.raw(conn, statement, *params)

    def sql(self, statement: str) -> str:
        return self.driver.sql(statement)

    def run(self, fn: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
        """Create the tables, run ``await fn()`` in a new event loop, clean up.

        A hang fails the test after *timeout* seconds instead of blocking.
        """

        async def main() -> Any:
            setup = create_async_engine(self.url, poolclass=NullPool)
            try:
                async with setup.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all)
                try:
                    return await asyncio.wait_for(fn(), timeout)
                finally:
                    for engine in self._engines:
                        await engine.dispose()
                    self._engines.clear()
                    if self.driver.base_url is not None:
                        async with setup.begin() as conn:
                            await conn.run_sync(Base.metadata.drop_all)
            finally:
                await setup.dispose()

        try:
            return self.loop.run(main)
        except BaseException:
            # Collect the failed run's garbage now: finalizers that log a
            # traceback (a task destroyed while pending, say) would otherwise
            # run while pytest parses source for the report, and on CPython
            # 3.11 a nested ast.parse there breaks pytest with "SystemError:
            # AST constructor recursion depth mismatch".
            gc.collect()
            raise


@pytest.fixture
def loop_backend() -> str:
    return "asyncio"


@pytest.fixture(params=DRIVERS, ids=[d.name for d in DRIVERS])
def db(request: pytest.FixtureRequest, tmp_path: Path, loop: Any) -> Database:
    driver: Driver = request.param
    _require(driver)
    return Database(driver, driver.url(tmp_path), loop)


@pytest.fixture(autouse=True)
def sqlalchemy_bridge() -> Iterator[None]:
    """Install greenback_sqlalchemy for each test, and leave things as they were."""
    was_installed = greenback_sqlalchemy.is_installed()
    greenback_sqlalchemy.install()
    try:
        yield
    finally:
        if not was_installed:
            greenback_sqlalchemy.uninstall()
        assert bridges.installed_bridges().keys() <= {greenback_sqlalchemy.BRIDGE.name}


@pytest.fixture
def listen() -> Iterator[Callable[..., Callable[..., Any]]]:
    """``listen(target, identifier, fn, **kw)``: event.listen, removed after the test."""
    registered: List[Tuple[Any, str, Callable[..., Any]]] = []

    def add(target: Any, identifier: str, fn: Callable[..., Any], **kw: Any) -> Callable[..., Any]:
        event.listen(target, identifier, fn, **kw)
        registered.append((target, identifier, fn))
        return fn

    yield add
    for target, identifier, fn in reversed(registered):
        if event.contains(target, identifier, fn):
            event.remove(target, identifier, fn)


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL server's URL, once it is known to be reachable."""
    _require(next(d for d in DRIVERS if d.name == "asyncpg"))
    return POSTGRES_URL


@pytest.fixture
def postgres_database(loop: Any) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    driver = next(d for d in DRIVERS if d.name == "asyncpg")
    _require(driver)
    import asyncpg

    base = make_url(POSTGRES_URL)
    name = PREFIX + "db" + uuid.uuid4().hex[:6]
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    loop.run(admin, f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        loop.run(admin, f'DROP DATABASE IF EXISTS "{name}"')


def is_missing_greenlet(exc: BaseException) -> bool:
    """SQLAlchemy raises MissingGreenlet bare, or wrapped in a StatementError."""
    return isinstance(exc, MissingGreenlet) or isinstance(getattr(exc, "orig", None), MissingGreenlet)


@pytest.fixture
def missing_greenlet() -> Callable[[BaseException], bool]:
    return is_missing_greenlet
