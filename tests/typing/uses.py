"""The types users of greenback see: checked by mypy --strict and pyright
(`hatch run lint:all`), never run. Every assert_type here is a promise: a
caller's types go through greenback's functions unchanged.
"""

from __future__ import annotations

import functools
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Iterator, Optional

from typing_extensions import assert_type

import greenback
import greenback.lowlevel


async def fetch(url: str, *, retries: int = 0) -> bytes:
    return url.encode() * (retries + 1)


def sync_fetch(url: str) -> bytes:
    return greenback.await_(fetch(url))


async def numbers() -> AsyncIterator[int]:
    yield 1


@asynccontextmanager
async def session(name: str) -> AsyncIterator[dict[str, str]]:
    yield {"name": name}


class Account:
    @property
    @greenback.autoawait
    async def balance(self) -> int:
        return 42


async def uses() -> None:
    # await_ is `await`: its result has the awaitable's type.
    assert_type(greenback.await_(fetch("x")), bytes)
    aw: Awaitable[Optional[str]] = fetch_optional()
    assert_type(greenback.await_(aw), Optional[str])

    # Portal creation keeps the callee's signature and result type.
    assert_type(await greenback.with_portal_run(fetch, "x", retries=2), bytes)
    assert_type(await greenback.with_portal_run_sync(sync_fetch, "x"), bytes)
    assert_type(await greenback.with_portal_run_tree(fetch, "x"), bytes)
    assert_type(await greenback.ensure_portal(), None)
    assert_type(greenback.has_portal(), bool)
    assert_type(greenback.bestow_portal(object()), None)
    async with greenback.portals_for_tree():
        pass
    with greenback.portals_for_children():
        pass

    # Sync faces of async objects.
    sync_fetch_2 = greenback.autoawait(fetch)
    assert_type(sync_fetch_2("x", retries=1), bytes)
    assert_type(Account().balance, int)
    cached = greenback.decorate_as_sync(functools.lru_cache(maxsize=16))(fetch)
    assert_type(await cached("x", retries=1), bytes)
    with greenback.async_context(session("s")) as state:
        assert_type(state, dict[str, str])
    for number in greenback.async_iter(numbers()):
        assert_type(number, int)
    assert_type(iter(greenback.async_iter(numbers())), Iterator[int])


async def fetch_optional() -> Optional[str]:
    return None


def lowlevel_uses(task: object) -> None:
    portal = greenback.lowlevel.portal_for_task(task)
    assert_type(portal, Optional[greenback.lowlevel.Portal])
    assert_type(greenback.lowlevel.current_portal(), Optional[greenback.lowlevel.Portal])
    assert_type(greenback.lowlevel.integration_for_task(task), Optional[greenback.lowlevel.LoopIntegration])
    assert_type(greenback.lowlevel.is_portal_worker(object()), bool)
