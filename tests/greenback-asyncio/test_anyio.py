"""greenback under anyio, on its asyncio backend and on its Trio backend."""

from __future__ import annotations

import sys
from typing import Any, List

import pytest

anyio = pytest.importorskip("anyio")

import greenback  # noqa: E402

BACKENDS = ["asyncio", "trio"]


def sync_await(aw: Any) -> Any:
    return greenback.await_(aw)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "trio":
        pytest.importorskip("trio")
    return request.param  # type: ignore[no-any-return]


def test_portals_in_an_anyio_task_group(backend: str) -> None:
    async def child(i: int, results: List[int]) -> None:
        await greenback.ensure_portal()
        results.append(sync_await(anyio.sleep(0.001)) or i)

    async def main() -> List[int]:
        await greenback.ensure_portal()
        results: List[int] = []
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(child, i, results)
        # A task group opened and closed from sync code, through the portal.

        def sync_part() -> None:
            with greenback.async_context(anyio.create_task_group()) as tg:
                for i in range(10, 13):
                    tg.start_soon(child, i, results)

        sync_part()
        return sorted(results)

    assert anyio.run(main, backend=backend) == list(range(13))


def test_task_group_start_and_bestow(backend: str) -> None:
    async def started(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        await greenback.ensure_portal()
        task_status.started(sync_await(anyio.sleep(0)) or "started")
        await anyio.sleep(0)

    async def main() -> Any:
        async with anyio.create_task_group() as tg:
            value = await tg.start(started)
        return value

    assert anyio.run(main, backend=backend) == "started"


def test_cancel_scope_cancels_code_suspended_in_await(backend: str) -> None:
    async def main() -> List[str]:
        log: List[str] = []

        def sync_part() -> None:
            try:
                sync_await(anyio.sleep(10))
            finally:
                log.append("sync finally")

        async def victim() -> None:
            await greenback.ensure_portal()
            try:
                sync_part()
            finally:
                log.append("task finally")

        with anyio.move_on_after(0.01) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(victim)
        assert scope.cancelled_caught

        # Cancelling the task group from outside, too.
        async with anyio.create_task_group() as tg:
            tg.start_soon(victim)
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

        # And a cancel scope entered from sync code, inside the portal.
        await greenback.ensure_portal()

        def sync_with_timeout() -> bool:
            with anyio.move_on_after(0.01) as inner:
                sync_await(anyio.sleep(10))
            return inner.cancelled_caught

        assert sync_with_timeout()
        return log

    assert anyio.run(main, backend=backend) == ["sync finally", "task finally"] * 2


def test_failing_child_cancels_siblings_suspended_in_await(backend: str) -> None:
    async def main() -> List[int]:
        cleaned: List[int] = []

        async def stuck(i: int) -> None:
            await greenback.ensure_portal()
            try:
                sync_await(anyio.sleep(10))
            finally:
                cleaned.append(i)

        async def boom() -> None:
            await anyio.sleep(0.01)
            raise ValueError("boom")

        with pytest.raises(BaseException) as info:
            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(stuck, i)
                tg.start_soon(boom)
        error = info.value
        while not isinstance(error, ValueError):
            assert hasattr(error, "exceptions"), error
            (error,) = error.exceptions  # type: ignore[attr-defined]
        return sorted(cleaned)

    assert anyio.run(main, backend=backend) == [0, 1, 2]


def test_with_portal_run_sync_and_threads(backend: str) -> None:
    async def main() -> Any:
        def in_thread() -> str:
            # A worker thread calls back into the event loop; that call runs
            # in a task of its own, without a portal unless it makes one.
            return anyio.from_thread.run(greenback.with_portal_run_sync, sync_in_loop)  # type: ignore[no-any-return]

        def sync_in_loop() -> str:
            sync_await(anyio.sleep(0))
            return "from thread"

        def sync_part() -> str:
            return sync_await(anyio.to_thread.run_sync(in_thread))  # type: ignore[no-any-return]

        return await greenback.with_portal_run_sync(sync_part)

    assert anyio.run(main, backend=backend) == "from thread"


def test_portals_for_tree_under_anyio(backend: str) -> None:
    async def child(results: List[Any]) -> None:
        results.append(greenback.has_portal())

    async def main() -> List[Any]:
        results: List[Any] = []
        async with greenback.portals_for_tree():
            results.append(greenback.has_portal())
            async with anyio.create_task_group() as tg:
                tg.start_soon(child, results)
        results.append(greenback.has_portal())
        return results

    assert anyio.run(main, backend=backend) == [True, True, False]


@pytest.mark.skipif(
    sys.implementation.name == "pypy", reason="uvloop supports CPython only: there is no uvloop for PyPy"
)
def test_anyio_asyncio_backend_with_uvloop() -> None:
    pytest.importorskip("uvloop")

    async def main() -> int:
        import asyncio

        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await greenback.ensure_portal()
        return sync_await(anyio.sleep(0)) or 7

    assert anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True}) == 7
