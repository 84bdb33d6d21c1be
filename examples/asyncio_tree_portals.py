"""Tree portals on asyncio: every task started under with_portal_run_tree can await_.

    python examples/asyncio_tree_portals.py
"""

import asyncio

import greenback


def sync_helper(n):
    # A plain function: it can await because its task has a portal.
    return greenback.await_(asyncio.sleep(0.01, result=n * 2))


async def worker(n):
    # Created by a task inside the tree: started with a portal.
    grandchild = asyncio.create_task(asyncio.sleep(0, result=greenback.has_portal()))
    return sync_helper(n), await grandchild


async def main():
    return await asyncio.gather(*(worker(n) for n in range(3)))


async def entry():
    tree = await greenback.with_portal_run_tree(main)
    # Tasks created outside the scope get no portal.
    outside = await asyncio.create_task(asyncio.sleep(0, result=greenback.has_portal()))
    return tree, outside


if __name__ == "__main__":
    print(asyncio.run(entry()))  # ([(0, True), (2, True), (4, True)], False)
