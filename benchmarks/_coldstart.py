"""The whole process that ``compare.py``'s cold-start rows time.

    python _coldstart.py asyncio    # or: trio

It imports the event loop and greenback, runs the loop, and in its main task
opens a portal and makes one ``await_`` call: what a program that uses
greenback pays once before its first ``await_`` returns. The parent times
the process from start to exit and reads its peak RSS from ``os.wait4``.

Nothing else is imported here (no argparse, no json: the worker's own
imports would be charged to both sides and blur the difference), and the
result travels as the exit status: 0 when the portal worked, else 1 with
the reason on stderr. Keep it compatible with Python 3.8.
"""

import sys

if sys.argv[1:] == ["asyncio"]:
    import asyncio

    import greenback

    async def checkpoint():
        await asyncio.sleep(0)

    def run(async_fn):
        return asyncio.run(async_fn())

elif sys.argv[1:] == ["trio"]:
    import trio

    import greenback

    checkpoint = trio.lowlevel.checkpoint
    run = trio.run
else:
    sys.exit("usage: _coldstart.py asyncio|trio")


async def answer():
    await checkpoint()
    return 42


async def main():
    await greenback.ensure_portal()
    if not greenback.has_portal():
        return "no portal after ensure_portal()"
    got = greenback.await_(answer())
    return None if got == 42 else "await_() returned {!r}".format(got)


problem = run(main)
if problem is not None:
    sys.exit("check failed: " + problem)
