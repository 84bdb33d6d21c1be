"""How an asyncio task with a portal shows itself: ``repr(task)``.

greenback 1.3.0 replaced a task's coroutine with a coroutine of a function
named ``greenback_shim``, so ``repr(task)`` said ``coro=<greenback_shim()
running at .../greenback/_impl.py:NNN>``; tractor's tests, and users' log
searches, match ``coro=<greenback_shim()``. Ours keeps that name and points
the location at the user's own coroutine instead of a line of greenback.

asyncio formats a task's coroutine the same way in Python 3.9-3.13, for the
C-accelerated and the pure-Python Task (asyncio.coroutines._format_coroutine);
these tests run on both, and on a user's subclass of the C Task.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

import greenback

# The C-accelerated Task, a user's subclass of it, and the pure-Python Task
# (see tests/conftest.py).
pytestmark = pytest.mark.loop_backends("asyncio", "asyncio-task-subclass", "asyncio-py-task")


HERE = Path(__file__).resolve()
SOURCE = HERE.read_text().splitlines()


def line_of(marker: str) -> int:
    """The line number of the one line of this file that ends with ``# <marker>``."""
    (found,) = [i for i, line in enumerate(SOURCE, 1) if line.rstrip().endswith(f"# {marker}")]
    return found


def running_at(marker: str) -> str:
    return f"coro=<greenback_shim() running at {HERE}:{line_of(marker)}>"


def sync_code(reprs: List[str], task: Any) -> None:
    greenback.await_(asyncio.sleep(0))
    reprs.append(repr(task))  # the task is running here: asyncio shows no location


async def user_coroutine(reprs: List[str]) -> str:  # defined-at
    await asyncio.sleep(0)  # plain-await
    sync_code(reprs, asyncio.current_task())  # sync-call
    return "done"


def test_a_bestowed_portal_shows_greenback_shim_at_the_users_line(run: Any) -> None:
    reprs: List[str] = []
    seen: Dict[str, str] = {}

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(user_coroutine(reprs))
        greenback.bestow_portal(task)
        # Not started: the coroutine's frame is at its first line.
        seen["new"] = repr(task)
        await asyncio.sleep(0)  # task: first step, parks in the plain await
        seen["plain await"] = repr(task)
        await asyncio.sleep(0)  # task: into sync_code, parks in await_
        seen["in await_"] = repr(task)
        assert await task == "done"
        seen["finished"] = repr(task)

    run(main)
    assert running_at("defined-at") in seen["new"]
    assert running_at("plain-await") in seen["plain await"]
    assert running_at("sync-call") in seen["in await_"]
    assert f"coro=<greenback_shim() done, defined at {HERE}:{line_of('defined-at')}>" in seen["finished"]
    # From inside the task itself asyncio says only that it is running.
    (inside,) = reprs
    assert "coro=<greenback_shim() running" in inside
    for shown in list(seen.values()) + reprs:
        assert re.search(r"<\w*Task \w+ name='[^']*' coro=<greenback_shim\(\)", shown), shown


def test_ensure_portal_shows_the_same(run: Any) -> None:
    async def user_task() -> None:
        await greenback.ensure_portal()
        await asyncio.sleep(0)  # ensure-portal-await

    async def main() -> str:
        task = asyncio.get_running_loop().create_task(user_task())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        shown = repr(task)
        await task
        return shown

    assert running_at("ensure-portal-await") in run(main)


def test_a_portal_is_a_coroutine_to_asyncio(run: Any) -> None:
    """asyncio.iscoroutine() holds (its repr asserts it), and the coroutine's
    name and code are what asyncio reads."""

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(user_coroutine([]))
        greenback.bestow_portal(task)
        portal = task.get_coro()
        assert asyncio.iscoroutine(portal)
        assert portal.__name__ == "greenback_shim"  # type: ignore[union-attr]
        assert portal.cr_code is user_coroutine.__code__  # type: ignore[union-attr]
        await task

    run(main)


def test_tasks_without_a_portal_are_shown_as_before(run: Any) -> None:
    async def main() -> str:
        task = asyncio.get_running_loop().create_task(user_coroutine([]))
        shown = repr(task)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return shown

    assert f"coro=<user_coroutine() running at {HERE}:{line_of('defined-at')}>" in run(main)
