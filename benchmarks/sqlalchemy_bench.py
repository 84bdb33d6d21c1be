#!/usr/bin/env python3
"""Per-statement cost of SQLAlchemy's async paths versus a sync Session in a portal.

For each database (aiosqlite, and PostgreSQL through asyncpg), times
``SELECT 1`` run and fetched, one statement at a time, by:

* ``AsyncSession.execute``: the usual asyncio API (a new SQLAlchemy greenlet
  per call);
* ``AsyncSession.run_sync``: one ``run_sync`` call per statement;
* a sync ``Session(async_engine.sync_engine)`` called from plain async code in
  a task with a greenback portal (greenback_sqlalchemy installed);
* for reference, the same sync Session inside a single ``run_sync`` for the
  whole loop (SQLAlchemy's own floor: no per-statement greenlet).

and prints microseconds per statement (wall clock, and CPU time of the event
loop's thread) and their ratios to ``AsyncSession.execute``. The target for
the portal path is <= 1.0x (wall clock). Methods take turns, in short timed
samples, and the median sample is reported. The process is pinned to one CPU
(``--no-pin`` to not), which makes the aiosqlite figures far steadier.

    python benchmarks/sqlalchemy_bench.py
    python benchmarks/sqlalchemy_bench.py --pg-url postgresql+asyncpg://postgres@127.0.0.1/test
    python benchmarks/sqlalchemy_bench.py --quick      # smoke run, a few seconds

PostgreSQL defaults to ``GREENBACK_TEST_POSTGRES_URL`` (as the tests use) or
``postgresql://postgres@127.0.0.1:5432/test``; if it cannot be reached, its
rows say so and the SQLite rows are still measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import greenback
import greenback_sqlalchemy

STATEMENT = text("SELECT 1")

METHODS = [
    ("execute", "AsyncSession.execute"),
    ("run_sync", "AsyncSession.run_sync, one per statement"),
    ("portal", "sync Session through a portal"),
    ("floor", "sync Session in one run_sync (reference)"),
]
BASELINE = "execute"
TARGET = "portal"


class Clock:
    """Wall time, and CPU time of the event loop's thread (a driver's own
    threads, like aiosqlite's, and waiting for the server are not in it)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.thread_time()

    def stop(self) -> Tuple[float, float]:
        return time.perf_counter() - self.wall, time.thread_time() - self.cpu


async def time_execute(engine: AsyncEngine, n: int) -> Tuple[float, float]:
    async with AsyncSession(engine) as session:
        await session.execute(STATEMENT)  # begin the transaction outside the timing
        clock = Clock()
        for _ in range(n):
            (await session.execute(STATEMENT)).scalar()
        return clock.stop()


async def time_run_sync(engine: AsyncEngine, n: int) -> Tuple[float, float]:
    def one(session: Session) -> Any:
        return session.execute(STATEMENT).scalar()

    async with AsyncSession(engine) as session:
        await session.execute(STATEMENT)
        clock = Clock()
        for _ in range(n):
            await session.run_sync(one)
        return clock.stop()


async def time_portal(engine: AsyncEngine, n: int) -> Tuple[float, float]:
    async def body() -> Tuple[float, float]:
        await greenback.ensure_portal()
        with Session(engine.sync_engine) as session:
            session.execute(STATEMENT)
            clock = Clock()
            for _ in range(n):
                session.execute(STATEMENT).scalar()
            return clock.stop()

    # A task of its own, as a request handler would be, so that every
    # measurement starts without a portal.
    return await asyncio.ensure_future(body())


async def time_floor(engine: AsyncEngine, n: int) -> Tuple[float, float]:
    def loop(session: Session) -> Tuple[float, float]:
        session.execute(STATEMENT)
        clock = Clock()
        for _ in range(n):
            session.execute(STATEMENT).scalar()
        return clock.stop()

    async with AsyncSession(engine) as session:
        return await session.run_sync(loop)


TIMERS: Dict[str, Callable[[AsyncEngine, int], Awaitable[Tuple[float, float]]]] = {
    "execute": time_execute,
    "run_sync": time_run_sync,
    "portal": time_portal,
    "floor": time_floor,
}


async def measure(url: str, n: int, rounds: int) -> Dict[str, Dict[str, List[float]]]:
    """Microseconds per statement (wall and loop-thread CPU), one figure per round."""
    engine = create_async_engine(url)
    try:
        for key in TIMERS:  # warm up: connect, fill caches
            await TIMERS[key](engine, max(10, n // 10))
        samples: Dict[str, Dict[str, List[float]]] = {key: {"wall": [], "cpu": []} for key in TIMERS}
        keys = list(TIMERS)
        for round_ in range(rounds):
            # Rotate the order so that slow drift favours no method.
            shift = round_ % len(keys)
            for key in keys[shift:] + keys[:shift]:
                gc.collect()
                wall, cpu = await TIMERS[key](engine, n)
                samples[key]["wall"].append(wall / n * 1e6)
                samples[key]["cpu"].append(cpu / n * 1e6)
        return samples
    finally:
        await engine.dispose()


def pin_to_one_cpu() -> Optional[int]:
    """Run this process's threads on one CPU, where the OS allows it.

    aiosqlite hands every operation to a thread of its own; with the two
    threads free to run on different CPUs, the wake-up latency between them
    varies by a factor of three from run to run and swamps what is measured.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu


def reachable(url: str) -> Optional[str]:
    """None if a connection to *url* works, else why not."""

    async def probe() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.execute(STATEMENT)
        finally:
            await engine.dispose()

    try:
        asyncio.run(asyncio.wait_for(probe(), 10))
    except Exception as exc:  # report, and go on with the other database
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def main() -> int:
    default_pg = os.environ.get("GREENBACK_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-url", default="sqlite+aiosqlite:///:memory:")
    parser.add_argument("--pg-url", default=default_pg, help="PostgreSQL URL; the driver is forced to asyncpg")
    parser.add_argument("--no-pg", action="store_true", help="measure SQLite only")
    parser.add_argument("-n", "--statements", type=int, default=200, help="statements per timed sample")
    parser.add_argument("--rounds", type=int, default=25, help="timed samples per method (median reported)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 statements, 3 rounds")
    parser.add_argument("--json", metavar="FILE", help="also write all samples to FILE")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the process (its event loop and driver threads) to one CPU",
    )
    args = parser.parse_args()
    pinned = None if args.no_pin else pin_to_one_cpu()
    if args.quick:
        args.statements, args.rounds = 50, 3

    greenback_sqlalchemy.install()
    databases = [("aiosqlite", args.sqlite_url)]
    if not args.no_pg:
        pg = make_url(args.pg_url).set(drivername="postgresql+asyncpg")
        databases.append(("postgresql+asyncpg", pg.render_as_string(hide_password=False)))

    print(
        f"SELECT 1, {args.statements} statements x {args.rounds} rounds per method; "
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, "
        f"greenback {greenback.__version__}; "
        + (f"pinned to CPU {pinned}" if pinned is not None else "not pinned")
    )
    report: Dict[str, Any] = {"settings": vars(args), "results": {}}
    label_width = max(len(label) for _, label in METHODS)
    verdicts = []
    for name, url in databases:
        print(f"\n{name}")
        problem = reachable(url)
        if problem is not None:
            print(f"  not measured: {problem}")
            report["results"][name] = {"error": problem}
            continue
        samples = asyncio.run(measure(url, args.statements, args.rounds))
        wall = {key: statistics.median(v["wall"]) for key, v in samples.items()}
        cpu = {key: statistics.median(v["cpu"]) for key, v in samples.items()}
        print(f"  {'method':<{label_width}}  {'wall us':>8}  {'ratio':>6}  {'loop CPU us':>11}  {'ratio':>6}")
        for key, label in METHODS:
            print(
                f"  {label:<{label_width}}  {wall[key]:8.1f}  {wall[key] / wall[BASELINE]:5.2f}x"
                f"  {cpu[key]:11.1f}  {cpu[key] / cpu[BASELINE]:5.2f}x"
            )
        ratio = wall[TARGET] / wall[BASELINE]
        cpu_ratio = cpu[TARGET] / cpu[BASELINE]
        verdicts.append(
            f"{name}: portal {ratio:.2f}x wall, {cpu_ratio:.2f}x loop CPU "
            f"({'met' if ratio <= 1.0 else 'MISSED'})"
        )
        report["results"][name] = {"samples_us": samples, "median_wall_us": wall, "median_cpu_us": cpu}

    print("\ntarget: sync Session through a portal <= 1.0x AsyncSession.execute")
    for line in verdicts:
        print("  " + line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
