"""greenback in one screen: sync code that awaits, under asyncio and under Trio.

Run it with ``scripts/hatch run demo`` (or ``python examples/demo.py`` where
greenback and trio are installed).

The story: a small synchronous "library" (think of a template engine, an ORM
hook, a plugin API) calls a callback for each item. The callback we give it
needs to do async I/O. With a greenback portal on the task, the sync callback
can simply ``greenback.await_`` the async call. Each line the demo prints says
what it shows.
"""

import asyncio
import contextvars
import time

import greenback
import trio

# A context variable each task sets: the sync callbacks read it, to show they
# run in the context of the task that called them.
request_id = contextvars.ContextVar("request_id", default="-")
LOOKUP_SECONDS = 0.05


def render_report(items, lookup):
    """A sync library function: it calls `lookup` synchronously for each item."""
    return [f"{item}: {lookup(item)}" for item in items]


def make_lookup(sleep):
    def lookup(item):
        # Sync code, but it can await: the task has a portal.
        greenback.await_(sleep(LOOKUP_SECONDS))
        return f"{len(item)} letters, for request {request_id.get()}"

    return lookup


async def asyncio_main():
    print("asyncio")
    request_id.set("aio-1")
    await greenback.ensure_portal()
    started = time.perf_counter()
    # Two reports in two tasks: each await_ in their sync callbacks yields to
    # the loop, so the reports run at the same time.
    first, second = await asyncio.gather(
        greenback.with_portal_run_sync(render_report, ["apple", "kiwi"], make_lookup(asyncio.sleep)),
        greenback.with_portal_run_sync(render_report, ["fig"], make_lookup(asyncio.sleep)),
    )
    elapsed = time.perf_counter() - started
    for line in first + second:
        print("  ", line)
    ms = LOOKUP_SECONDS * 1000
    print(
        f"   two reports, three sync lookups that each await_ a {ms:.0f} ms sleep: {elapsed * 1000:.0f} ms in all;\n"
        f"   one after another they would take {3 * ms:.0f} ms, but await_ lets the loop run the other\n"
        f"   report meanwhile. Each lookup read the request id its task set (aio-1): sync code\n"
        f"   called through a portal runs in its task's context."
    )

    class Account:
        @property
        @greenback.autoawait
        async def balance(self):  # an async property, read with plain attribute syntax
            await asyncio.sleep(0)
            return 42

    print(f"   Account().balance = {Account().balance}: a property that awaits (greenback.autoawait)")


async def trio_main():
    print("trio")
    request_id.set("trio-1")
    for line in await greenback.with_portal_run_sync(render_report, ["pear", "plum"], make_lookup(trio.sleep)):
        print("  ", line)
    print("   the same sync library and callback, now awaiting trio.sleep in a Trio task")

    async def numbers():
        for n in range(3):
            await trio.sleep(0)
            yield n

    async def consumer():
        # A sync for-loop over an async generator, inside a portal.
        return sum(n for n in greenback.async_iter(numbers()))

    total = await greenback.with_portal_run(consumer)
    print(f"   sum(greenback.async_iter(numbers())) = {total}: a sync for loop over an async generator (0, 1, 2)")


if __name__ == "__main__":
    asyncio.run(asyncio_main())
    trio.run(trio_main)
    print(f"greenback {greenback.__version__}: done")
