"""Measurement subprocess for ``compare.py``.

Each invocation measures exactly one row on one event loop with whichever
``greenback`` the interpreter running it can import, then prints a single
result line (prefixed with ``RESULT_MARK``) holding JSON.  Every failure,
including a failed ``import greenback``, is reported in that JSON instead of
as a traceback, so the driver can show it in the table and carry on.

This file is deliberately self-contained (standard library + whatever is
being measured): it is run by path under interpreters that know nothing
about this repository.  Keep it compatible with Python 3.8.
"""

import argparse
import functools
import gc
import json
import os
import sys
import time

RESULT_MARK = "@@greenback-bench-result@@"

perf_counter = time.perf_counter

# Rows that report a memory figure (KiB per task) rather than a time.
MEMORY_ROWS = ("9.bare", "9.portal")

# Reference rows that never call into greenback.  They still import it when
# it is importable, so both sides run with the same modules loaded, but they
# also work (as a baseline) when it is not.
BARE_ROWS = ("1", "7.bare", "9.bare")

# What users would do without greenback: sync code in a worker thread that
# calls back into the event loop.  One operation is one call-back, the
# figure to set against row 3 (one await_ from sync code in a portal).
# Greenback plays no part in them.
THREAD_ROWS = {
    "alt.asyncio_to_thread": "asyncio",
    "alt.anyio_to_thread": None,  # both loops
    "alt.trio_to_thread": "trio",
}

# One SELECT 1 on an in-memory SQLite database through aiosqlite (asyncio
# only): a sync Session through a portal, and SQLAlchemy's own async API.
SQLALCHEMY_ROWS = ("sqlalchemy.portal", "alt.sqlalchemy_execute")

NO_GREENBACK_ROWS = BARE_ROWS + tuple(THREAD_ROWS) + ("alt.sqlalchemy_execute",)

# Spawn rows create tasks in batches of this many per nursery / gather.
SPAWN_BATCH = 500


# --------------------------------------------------------------------------
# Event-loop adapters: the few loop-specific operations the rows need.


class TrioLoop:
    name = "trio"

    def __init__(self):
        import trio

        self.trio = trio
        self.checkpoint = trio.lowlevel.checkpoint

    def run(self, async_fn):
        return self.trio.run(async_fn)

    def make_event(self):
        return self.trio.Event()

    async def spawn_many(self, async_fn, count):
        """Start ``count`` tasks running ``async_fn()`` and wait for all."""
        async with self.trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(async_fn)

    async def hold_many(self, async_fn, count, until_ready, while_held):
        """Start ``count`` tasks, wait for ``until_ready()``, call
        ``while_held()`` and return its result once all tasks finished."""
        async with self.trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(async_fn)
            while not until_ready():
                await self.checkpoint()
            result = while_held()
        return result


class AsyncioLoop:
    name = "asyncio"

    def __init__(self):
        import asyncio

        self.asyncio = asyncio
        # A C-level partial: no extra Python frame compared to calling
        # asyncio.sleep(0) inline.
        self.checkpoint = functools.partial(asyncio.sleep, 0)

    def run(self, async_fn):
        return self.asyncio.run(async_fn())

    def make_event(self):
        return self.asyncio.Event()

    async def spawn_many(self, async_fn, count):
        create_task = self.asyncio.get_running_loop().create_task
        tasks = [create_task(async_fn()) for _ in range(count)]
        for task in tasks:
            await task

    async def hold_many(self, async_fn, count, until_ready, while_held):
        create_task = self.asyncio.get_running_loop().create_task
        tasks = [create_task(async_fn()) for _ in range(count)]
        while not until_ready():
            await self.checkpoint()
        result = while_held()
        for task in tasks:
            await task
        return result


LOOPS = {"trio": TrioLoop, "asyncio": AsyncioLoop}


# --------------------------------------------------------------------------
# Helpers for the deep-stack rows.


async def arecurse(depth, async_fn):
    """Await ``async_fn()`` underneath ``depth`` extra coroutine frames."""
    if depth <= 0:
        return await async_fn()
    return await arecurse(depth - 1, async_fn)


def srecurse(depth, fn):
    """Call ``fn()`` underneath ``depth`` extra plain Python frames."""
    if depth <= 0:
        return fn()
    return srecurse(depth - 1, fn)


def noop():
    pass


async def async_noop():
    pass


# --------------------------------------------------------------------------
# Timing rows.  Each builder returns ``async def sample(n) -> seconds`` that
# performs the measured operation ``n`` times, timing only the operations
# themselves (set-up such as ensure_portal() or recursion stays outside the
# timed region wherever the row's definition allows it).


def build_timing_row(row, loop, gb, depth):
    checkpoint = loop.checkpoint

    if row == "1":

        async def sample(n):
            t0 = perf_counter()
            for _ in range(n):
                await checkpoint()
            return perf_counter() - t0

        return sample

    if row in ("2", "8.2"):
        row_depth = depth if row == "8.2" else 0

        async def inner(n):
            await gb.ensure_portal()
            t0 = perf_counter()
            for _ in range(n):
                await checkpoint()
            return perf_counter() - t0

        async def sample(n):
            return await arecurse(row_depth, lambda: inner(n))

        return sample

    if row in ("3", "8.3"):
        row_depth = depth if row == "8.3" else 0
        await_ = gb.await_

        def sync_loop(n):
            t0 = perf_counter()
            for _ in range(n):
                await_(checkpoint())
            return perf_counter() - t0

        async def inner(n):
            await gb.ensure_portal()
            return srecurse(row_depth, lambda: sync_loop(n))

        async def sample(n):
            return await arecurse(row_depth, lambda: inner(n))

        return sample

    if row in ("4", "8.4"):
        row_depth = depth if row == "8.4" else 0
        with_portal_run_sync = gb.with_portal_run_sync

        async def inner(n):
            t0 = perf_counter()
            for _ in range(n):
                await with_portal_run_sync(noop)
            return perf_counter() - t0

        async def sample(n):
            return await arecurse(row_depth, lambda: inner(n))

        return sample

    if row == "5":
        with_portal_run = gb.with_portal_run

        async def sample(n):
            t0 = perf_counter()
            for _ in range(n):
                await with_portal_run(async_noop)
            return perf_counter() - t0

        return sample

    if row == "6.sync":
        with_portal_run_sync = gb.with_portal_run_sync
        await_ = gb.await_

        def fn():
            await_(checkpoint())

        async def sample(n):
            t0 = perf_counter()
            for _ in range(n):
                await with_portal_run_sync(fn)
            return perf_counter() - t0

        return sample

    if row == "6.async":
        with_portal_run = gb.with_portal_run
        await_ = gb.await_

        def sync_part():
            await_(checkpoint())

        async def afn():
            sync_part()

        async def sample(n):
            t0 = perf_counter()
            for _ in range(n):
                await with_portal_run(afn)
            return perf_counter() - t0

        return sample

    if row in ("7.bare", "7.portal"):
        if row == "7.bare":
            child = async_noop
        else:
            ensure_portal = gb.ensure_portal

            async def child():
                await ensure_portal()

        spawn_many = loop.spawn_many

        async def sample(n):
            t0 = perf_counter()
            left = n
            while left > 0:
                batch = min(left, SPAWN_BATCH)
                await spawn_many(child, batch)
                left -= batch
            return perf_counter() - t0

        return sample

    if row in THREAD_ROWS:
        return build_thread_row(row, loop)

    if row in SQLALCHEMY_ROWS:
        return build_sqlalchemy_row(row, loop, gb)

    raise ValueError("unknown timing row {!r}".format(row))


def check_loop(row, loop, wanted):
    if loop.name != wanted:
        raise ValueError("row {} runs under {} only".format(row, wanted))


def build_thread_row(row, loop):
    """The sync function runs in a worker thread and calls back into the
    loop ``n`` times; only those call-backs are timed (the thread hand-off
    that starts the sample happens once per sample, as portal set-up does
    in row 3)."""
    checkpoint = loop.checkpoint
    wanted = THREAD_ROWS[row]
    if wanted is not None:
        check_loop(row, loop, wanted)

    if row == "alt.asyncio_to_thread":
        asyncio = loop.asyncio
        run_coroutine_threadsafe = asyncio.run_coroutine_threadsafe

        def sync_loop(n, event_loop):
            t0 = perf_counter()
            for _ in range(n):
                run_coroutine_threadsafe(checkpoint(), event_loop).result()
            return perf_counter() - t0

        async def sample(n):
            return await asyncio.to_thread(sync_loop, n, asyncio.get_running_loop())

        return sample

    if row == "alt.anyio_to_thread":
        import anyio.from_thread
        import anyio.to_thread

        return _call_backs_from_a_thread(anyio.to_thread.run_sync, anyio.from_thread.run, checkpoint)
    # alt.trio_to_thread
    trio = loop.trio
    return _call_backs_from_a_thread(trio.to_thread.run_sync, trio.from_thread.run, checkpoint)


def _call_backs_from_a_thread(to_thread, from_thread, checkpoint):
    """A sample for a library whose thread API is a pair: run a sync function
    in a thread (*to_thread*), and from there, await in the loop (*from_thread*)."""

    def sync_loop(n):
        t0 = perf_counter()
        for _ in range(n):
            from_thread(checkpoint)
        return perf_counter() - t0

    async def sample(n):
        return await to_thread(sync_loop, n)

    return sample


def check_answer(value):
    if value != 1:
        raise AssertionError("check failed: SELECT 1 returned {!r}".format(value))


def build_sqlalchemy_row(row, loop, gb):
    """One ``SELECT 1``, executed and its scalar fetched, in an open
    transaction on one pooled connection. The untimed first statement of
    each sample begins the transaction and checks the answer (the portal
    row fails there if greenback_sqlalchemy does not do its job)."""
    check_loop(row, loop, "asyncio")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
    from sqlalchemy.orm import Session

    statement = text("SELECT 1")
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")

    if row == "sqlalchemy.portal":
        import greenback_sqlalchemy

        greenback_sqlalchemy.install()

        async def sample(n):
            await gb.ensure_portal()
            with Session(engine.sync_engine) as session:
                check_answer(session.execute(statement).scalar())
                t0 = perf_counter()
                for _ in range(n):
                    session.execute(statement).scalar()
                return perf_counter() - t0

    else:

        async def sample(n):
            async with AsyncSession(engine) as session:
                check_answer((await session.execute(statement)).scalar())
                t0 = perf_counter()
                for _ in range(n):
                    (await session.execute(statement)).scalar()
                return perf_counter() - t0

    # aiosqlite runs each connection in a thread of its own: close it
    # before the loop ends, or the process waits for it at exit.
    sample.aclose = engine.dispose
    return sample


async def check_semantics(row, loop, gb):
    """A quick functional check before timing, so that an implementation that
    merely fails to do the work can't post a flattering figure."""
    if row in THREAD_ROWS:
        await check_thread_row(row, loop)
        return
    if gb is None or row in BARE_ROWS:
        return
    checkpoint = loop.checkpoint
    has_portal = getattr(gb, "has_portal", None)
    sentinel = object()

    async def produce():
        await checkpoint()
        return sentinel

    def sync_await():
        return gb.await_(produce())

    if row in ("2", "3", "8.2", "8.3", "9.portal"):
        await gb.ensure_portal()
        if has_portal is not None and not has_portal():
            raise AssertionError("check failed: no portal after ensure_portal()")
        if row in ("3", "8.3", "9.portal") and sync_await() is not sentinel:
            raise AssertionError("check failed: await_() lost the result")
    elif row in ("4", "8.4", "6.sync"):
        if await gb.with_portal_run_sync(sync_await) is not sentinel:
            raise AssertionError("check failed: with_portal_run_sync result")
    elif row in ("5", "6.async"):

        async def afn():
            return sync_await()

        if await gb.with_portal_run(afn) is not sentinel:
            raise AssertionError("check failed: with_portal_run result")
    elif row == "7.portal":
        seen = []

        async def child():
            await gb.ensure_portal()
            seen.append(has_portal() if has_portal is not None else True)
            seen.append(sync_await() is sentinel)

        await loop.spawn_many(child, 2)
        if seen != [True] * 4:
            raise AssertionError("check failed: spawned task portal/await_")


async def check_thread_row(row, loop):
    """The call-back of a thread row hands back the coroutine's result."""
    sentinel = object()

    async def produce():
        await loop.checkpoint()
        return sentinel

    if row == "alt.asyncio_to_thread":
        asyncio = loop.asyncio
        event_loop = asyncio.get_running_loop()
        got = await asyncio.to_thread(
            lambda: asyncio.run_coroutine_threadsafe(produce(), event_loop).result())
    elif row == "alt.anyio_to_thread":
        import anyio.from_thread
        import anyio.to_thread

        got = await anyio.to_thread.run_sync(anyio.from_thread.run, produce)
    else:
        trio = loop.trio
        got = await trio.to_thread.run_sync(trio.from_thread.run, produce)
    if got is not sentinel:
        raise AssertionError("check failed: the call-back lost the result")


async def measure_timing(sample, target, samples):
    """Warm up, pick an iteration count so that one sample takes about
    ``target`` seconds, then return ``samples`` figures in us/op."""
    n = 1
    # Calibration doubles as warm-up: keep growing n until a run takes at
    # least a fifth of the target, then scale n to the target.
    while True:
        elapsed = await sample(n)
        if elapsed >= target / 5 or n >= 1 << 30:
            break
        if elapsed <= 0:
            n *= 10
        else:
            n = max(n * 2, min(n * 10, int(n * (target / 4) / elapsed)))
    n = max(1, int(n * target / max(elapsed, 1e-9)))
    await sample(max(1, n // 4))  # one more warm run at close to full size
    results = []
    for _ in range(samples):
        gc.collect()
        elapsed = await sample(n)
        results.append(elapsed / n * 1e6)
    return n, results


# --------------------------------------------------------------------------
# Memory rows.


def rss_bytes():
    """Current resident set size in bytes (peak RSS where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


async def measure_memory(row, loop, gb, tasks):
    """RSS growth per task while ``tasks`` tasks are parked at once, in KiB."""
    use_portal = row == "9.portal"

    async def one_round(count):
        event = loop.make_event()
        ready = [0]

        if use_portal:
            ensure_portal = gb.ensure_portal
            await_ = gb.await_

            def sync_wait():
                ready[0] += 1
                await_(event.wait())

            async def child():
                await ensure_portal()
                sync_wait()

        else:

            async def child():
                ready[0] += 1
                await event.wait()

        def held():
            # Every child has bumped the counter and, in the same step,
            # suspended inside event.wait(); measure now, then release them.
            gc.collect()
            after = rss_bytes()
            event.set()
            return after

        gc.collect()
        before = rss_bytes()
        after = await loop.hold_many(
            child, count, lambda: ready[0] >= count, held
        )
        return before, after

    # A small warm-up round so one-time costs (lazy imports, per-loop
    # set-up, code paths run for the first time) are not charged per task.
    await one_round(min(200, tasks))
    before, after = await one_round(tasks)
    return [(after - before) / tasks / 1024.0]


# --------------------------------------------------------------------------
# Entry points.


def version_of(dist):
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return metadata.version(dist)
    except Exception:
        return None


def short_error(exc):
    message = str(exc).strip()
    if isinstance(exc, (ImportError, AttributeError, AssertionError)) and message:
        # "No module named 'x'", "module 'greenback' has no attribute 'y'"
        # and our own check failures say it all without the type name.
        text = message
    elif message:
        text = "{}: {}".format(type(exc).__name__, message)
    else:
        text = type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def info():
    import platform

    out = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "versions": {},
    }
    # The last three matter to the rows of alternatives (ours only).
    for dist in ("greenback", "greenlet", "trio", "sniffio", "outcome",
                 "anyio", "sqlalchemy", "aiosqlite"):
        out["versions"][dist] = version_of(dist)
    try:
        import greenback

        out["greenback_file"] = getattr(greenback, "__file__", None)
        out["greenback_version"] = getattr(
            greenback, "__version__", out["versions"]["greenback"]
        )
    except BaseException as exc:  # report, don't crash
        out["greenback_error"] = short_error(exc)
    return out


def run_row(args):
    loop = LOOPS[args.loop]()
    try:
        import greenback as gb
    except ImportError:
        if args.row not in NO_GREENBACK_ROWS:
            raise
        gb = None

    if args.row in MEMORY_ROWS:
        unit = "KiB/task"

        async def main():
            await check_semantics(args.row, loop, gb)
            return await measure_memory(args.row, loop, gb, args.mem_tasks)

        values = loop.run(main)
        return {"unit": unit, "values": values, "n": args.mem_tasks}

    sample = build_timing_row(args.row, loop, gb, args.depth)

    async def main():
        try:
            await check_semantics(args.row, loop, gb)
            return await measure_timing(sample, args.target_ms / 1000.0, args.samples)
        finally:
            aclose = getattr(sample, "aclose", None)
            if aclose is not None:
                await aclose()

    n, values = loop.run(main)
    return {"unit": "us/op", "values": values, "n": n}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--info", action="store_true")
    parser.add_argument("--row")
    parser.add_argument("--loop", choices=sorted(LOOPS))
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--mem-tasks", type=int, default=10000)
    args = parser.parse_args(argv)

    if args.info:
        result = {"ok": True, "info": info()}
    else:
        try:
            result = {"ok": True}
            result.update(run_row(args))
        except BaseException as exc:  # report, don't crash
            result = {"ok": False, "error": short_error(exc)}
    sys.stdout.flush()
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
