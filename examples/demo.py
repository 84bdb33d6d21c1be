"""greenback in one screen: sync code that awaits, under asyncio and under Trio.

Run it with ``scripts/hatch run demo`` (or ``python examples/demo.py`` in an
environment where greenback and trio are installed).

The story: a small synchronous "library" (think of a template engine, an ORM
hook, a plugin API) calls a callback for each item. The callback we give it
needs to do async I/O. With a greenback portal on the task, the sync callback
can simply ``greenback.await_`` the async call.
"""

import asyncio
import contextvars
import time

import greenback
import trio

request_id = contextvars.ContextVar("request_id", default="-")


def render_report(items, lookup):
    """A sync library function: it calls `lookup` synchronously for each item."""
    return [f"{item}: {lookup(item)}" for item in items]


def make_lookup(sleep):
    def lookup(item):
        # Sync code, but it can await: the task has a portal.
        greenback.await_(sleep(0.01))
        return f"{len(item)} letters (request {request_id.get()})"

    return lookup


async def asyncio_main():
    request_id.set("aio-1")
    await greenback.ensure_portal()
    started = time.perf_counter()
    # Both reports interleave on the loop: each await_ really yields to it.
    first, second = await asyncio.gather(
        greenback.with_portal_run_sync(render_report, ["apple", "kiwi"], make_lookup(asyncio.sleep)),
        greenback.with_portal_run_sync(render_report, ["fig"], make_lookup(asyncio.sleep)),
    )
    elapsed = time.perf_counter() - started
    print("asyncio:", first + second, f"({elapsed * 1000:.0f} ms)")

    class Account:
        @property
        @greenback.autoawait
        async def balance(self):  # an async property, read with plain attribute syntax
            await asyncio.sleep(0)
            return 42

    print("asyncio: property that awaits ->", Account().balance)


async def trio_main():
    request_id.set("trio-1")
    print("trio:   ", await greenback.with_portal_run_sync(render_report, ["pear", "plum"], make_lookup(trio.sleep)))

    async def numbers():
        for n in range(3):
            await trio.sleep(0)
            yield n

    async def consumer():
        # A sync for-loop over an async generator, inside a portal.
        return sum(n for n in greenback.async_iter(numbers()))

    print("trio:    sum over an async generator from a sync loop ->", await greenback.with_portal_run(consumer))


if __name__ == "__main__":
    asyncio.run(asyncio_main())
    trio.run(trio_main)
    print(f"greenback {greenback.__version__}: done")
