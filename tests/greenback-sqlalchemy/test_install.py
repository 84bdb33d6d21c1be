"""install()/uninstall(), and behaviour without a portal: stock SQLAlchemy."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Callable, List, Optional

import pytest
from sqlalchemy import select, text
from sqlalchemy.event import attr as event_attr
from sqlalchemy.pool import base as pool_base
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import greenback
import greenback_sqlalchemy
from greenback import _engine, lowlevel as bridges

CORE_SOURCE = Path(__file__).resolve().parents[2] / "packages" / "greenback-core" / "src"


def test_install_is_idempotent_and_uninstall_undoes_it() -> None:
    greenback_sqlalchemy.install()  # the autouse fixture installed it already
    greenback_sqlalchemy.install()
    assert greenback_sqlalchemy.is_installed()
    assert list(bridges.installed_bridges()) == ["sqlalchemy"]
    assert bridges.installed_bridges()["sqlalchemy"].marker == "__sqlalchemy_greenlet_provider__"
    patched = event_attr.AsyncAdaptedLock
    assert patched.__name__ == "_TaskReentrantLock"
    assert patched.__mro__[1].__name__ == "AsyncAdaptedLock"  # wrapped once, not twice
    assert getattr(_engine._worker_class, greenback_sqlalchemy.MARKER) is True
    finalizer = pool_base._finalize_fairy
    original_finalizer = finalizer.__wrapped__  # type: ignore[attr-defined]
    assert not hasattr(original_finalizer, "__wrapped__")  # wrapped once

    greenback_sqlalchemy.uninstall()
    greenback_sqlalchemy.uninstall()
    assert not greenback_sqlalchemy.is_installed()
    assert bridges.installed_bridges() == {}
    assert _engine._worker_class is _engine._Worker
    assert event_attr.AsyncAdaptedLock is patched.__mro__[1]
    assert pool_base._finalize_fairy is original_finalizer

    greenback_sqlalchemy.install()
    assert greenback_sqlalchemy.is_installed()
    assert event_attr.AsyncAdaptedLock.__mro__[1] is patched.__mro__[1]
    assert pool_base._finalize_fairy.__wrapped__ is original_finalizer  # type: ignore[attr-defined]


def test_greenback_core_has_no_sqlalchemy_code() -> None:
    # The bridge is generic: SQLAlchemy's marker and modules live here only.
    pattern = re.compile(r"__sqlalchemy_greenlet_provider__|^\s*(import|from)\s+sqlalchemy\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(CORE_SOURCE))
        for path in CORE_SOURCE.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# Stock SQLAlchemy's MissingGreenlet path leaves an unawaited coroutine and a
# connection for the garbage collector; both warn (or complain when collected).
stock_failure_warnings = pytest.mark.filterwarnings(
    "ignore:coroutine .* was never awaited:RuntimeWarning",
    "ignore:The garbage collector is trying to clean up:sqlalchemy.exc.SAWarning",
    "ignore::pytest.PytestUnraisableExceptionWarning",
)


def _outcome(fn: Callable[[], Any]) -> Optional[str]:
    try:
        fn()
    except Exception as exc:  # what a user would see
        orig = getattr(exc, "orig", None)
        return f"{type(exc).__name__}: {type(orig).__name__ if orig is not None else ''}: {exc}"
    return None


@stock_failure_warnings
def test_without_a_portal_sqlalchemy_behaves_as_stock(
    db: Any, models: Any, missing_greenlet: Any, full_collect: Any
) -> None:
    # The same MissingGreenlet, message and all, with and without install().
    async def main() -> None:
        engine = db.engine()
        async with AsyncSession(engine) as s:
            s.add(models.Parent(name="p", children=[models.Child(name="c")]))
            await s.commit()

        async def attempts() -> List[Optional[str]]:
            assert not greenback.has_portal()
            engine = db.engine()  # each attempt starts from an empty pool
            errors: List[Optional[str]] = []
            async with AsyncSession(engine) as s:
                parent = (await s.scalars(select(models.Parent))).one()
                try:
                    parent.children
                except Exception as exc:
                    assert missing_greenlet(exc)
                    errors.append(_outcome(lambda: parent.children))
                else:
                    raise AssertionError("lazy load without a portal worked")
            sync = Session(engine.sync_engine)
            errors.append(_outcome(lambda: sync.execute(text("SELECT 1"))))
            _outcome(sync.close)  # fails the same way; nothing was checked out
            return errors

        with_bridge = await asyncio.ensure_future(attempts())
        greenback_sqlalchemy.uninstall()
        try:
            stock = await asyncio.ensure_future(attempts())
        finally:
            greenback_sqlalchemy.install()
        assert with_bridge == stock
        assert all(e is not None and "MissingGreenlet" in e for e in stock)

    db.run(main)
    # The failed attempts leave connections that only their finalizers
    # release, with a warning (ignored above). Let them run now, under this
    # test's filters: on PyPy they would otherwise run in some later test.
    full_collect()


@stock_failure_warnings
def test_portals_made_after_uninstall_do_not_speak_sqlalchemy(
    db: Any, models: Any, missing_greenlet: Any, full_collect: Any
) -> None:
    async def main() -> None:
        engine = db.engine()
        async with AsyncSession(engine) as s:
            s.add(models.Parent(name="p", children=[models.Child(name="c")]))
            await s.commit()

        async def lazy_load() -> List[str]:
            await greenback.ensure_portal()
            async with AsyncSession(engine) as s:
                parent = (await s.scalars(select(models.Parent))).one()
                return [c.name for c in parent.children]

        assert await asyncio.ensure_future(lazy_load()) == ["c"]
        greenback_sqlalchemy.uninstall()
        try:
            with pytest.raises(Exception) as info:
                await asyncio.ensure_future(lazy_load())
            assert missing_greenlet(info.value)
        finally:
            greenback_sqlalchemy.install()
        assert await asyncio.ensure_future(lazy_load()) == ["c"]

    db.run(main)
    # The failed attempts leave connections that only their finalizers
    # release, with a warning (ignored above). Let them run now, under this
    # test's filters: on PyPy they would otherwise run in some later test.
    full_collect()


def test_await_in_sqlalchemys_greenlet_without_install_names_install(db: Any, models: Any, listen: Any) -> None:
    # A sync hook that awaits, run by SQLAlchemy in its own greenlet in a task
    # without a portal: without install(), greenback cannot wait there, and
    # says what to call.
    seen: List[BaseException] = []

    async def lookup() -> int:
        await asyncio.sleep(0)
        return 1

    def before_flush(session: Any, flush_context: Any, instances: Any) -> None:
        try:
            greenback.await_(lookup())
        except RuntimeError as exc:
            seen.append(exc)

    async def main() -> None:
        listen(Session, "before_flush", before_flush)
        greenback_sqlalchemy.uninstall()
        try:
            async with AsyncSession(db.engine()) as s:
                s.add(models.Parent(name="p"))
                await s.commit()
        finally:
            greenback_sqlalchemy.install()

    db.run(main)
    assert len(seen) == 1
    message = str(seen[0])
    assert re.fullmatch(
        r"greenback\.await_\(\) was called in a greenlet of SQLAlchemy \(sqlalchemy\.[\w.]+: an event hook "
        r"or other sync code its asyncio extension runs\), with no greenback portal above it\. Call "
        r"greenback_sqlalchemy\.install\(\) once at startup \(it comes with pip install "
        r"\"greenback\[sqlalchemy\]\"\): then await_\(\) works in SQLAlchemy's greenlets, and sync ORM code "
        r"\(lazy loads, hooks\) works in any task with a greenback portal\.",
        message,
    ), message


@pytest.mark.parametrize("version", ["2.0.30", "1.4.54", "3.0.0"])
def test_install_refuses_a_sqlalchemy_it_cannot_speak_to_and_names_the_upgrade(monkeypatch: Any, version: str) -> None:
    import sqlalchemy

    greenback_sqlalchemy.uninstall()
    try:
        monkeypatch.setattr(sqlalchemy, "__version__", version)
        with pytest.raises(RuntimeError) as info:
            greenback_sqlalchemy.install()
        assert str(info.value) == (
            f"greenback-sqlalchemy needs SQLAlchemy 2.0.31 or newer (2.x), found {version}; "
            'upgrade it with: pip install --upgrade "sqlalchemy[asyncio]>=2.0.31"'
        )
        assert not greenback_sqlalchemy.is_installed()
    finally:
        monkeypatch.undo()
        greenback_sqlalchemy.install()
