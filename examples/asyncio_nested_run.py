"""Re-entrant asyncio.run(): call a sync library that runs its own event loop from async code.

    python examples/asyncio_nested_run.py
"""

import asyncio

import greenback_asyncio


def library_function(depth=0):
    """A sync API that is async inside, as many libraries' are."""
    return asyncio.run(fetch(depth))


async def fetch(depth):
    await asyncio.sleep(0.01)
    if depth < 2:
        return [depth] + library_function(depth + 1)  # nested again
    return [depth]


async def main():
    # Other tasks keep running while library_function waits.
    ticker = asyncio.create_task(asyncio.sleep(0.001, result="ticker ran"))
    return library_function(), await ticker


if __name__ == "__main__":
    greenback_asyncio.enable_nested_run()
    # greenback_asyncio.run gives every task a portal; with plain asyncio.run,
    # add `await greenback.ensure_portal()` at the top of main().
    print(greenback_asyncio.run(main()))  # ([0, 1, 2], 'ticker ran')
    greenback_asyncio.disable_nested_run()
