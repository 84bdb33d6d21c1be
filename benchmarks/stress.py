#!/usr/bin/env python3
"""Stress and soak runs for greenback: many tasks, many portals, many threads.

    python benchmarks/stress.py                 # everything, full size (a few minutes)
    python benchmarks/stress.py --quick         # the same at 1/10 size
    python benchmarks/stress.py --only tasks --loops trio
    python benchmarks/stress.py --json out.json

Scenarios (each under every loop given by --loops; uvloop is used if
installed and asked for):

* ``tasks``: --tasks concurrent tasks (10,000), each opens a portal with
  ensure_portal() and makes --awaits (100) greenback.await_() calls from sync
  code, each of which yields to the loop; every result is checked.
* ``creations``: --creations (1,000,000) portals made one after another,
  alternating with_portal_run_sync(), with_portal_run() and short tasks that
  call ensure_portal(), each portal used by one await_(). Resident memory
  (RSS) and the number of objects the garbage collector tracks are sampled
  every tenth of the run; the run passes if neither grows after the first
  tenth beyond noise (RSS: 8 MiB; objects: 2,000).
* ``threads``: both of the above spread over --threads (4) threads, each
  running its own event loop at the same time.

Prints one line per sample and a summary table; exits 1 if a check failed.
Needs only greenback (with its asyncio and Trio integrations); nothing here
measures speed against anything: times are printed for information.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import greenback
from greenback import _engine

RSS_SLACK = 8 * 1024 * 1024
OBJECT_SLACK = 2_000


# -- measuring ---------------------------------------------------------------------------


def rss() -> int:
    """Resident set size of this process, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best we have
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


# PyPy keeps whatever an object with a finalizer refers to alive until that
# finalizer has run, so garbage made of a chain of them (a task, its portal,
# its coroutine, ...) goes one link per collection.
GC_PASSES = 6 if sys.implementation.name == "pypy" else 1


def tracked_objects() -> int:
    for _ in range(GC_PASSES):
        gc.collect()
    return len(gc.get_objects())


# -- the loops ---------------------------------------------------------------------------


class Loop:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, async_fn: Callable[..., Any], *args: Any) -> Any:
        if self.name == "trio":
            import trio

            return trio.run(async_fn, *args)
        if self.name == "uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
            try:
                return loop.run_until_complete(async_fn(*args))
            finally:
                loop.close()
        return asyncio.run(async_fn(*args))

    async def checkpoint(self) -> None:
        if self.name == "trio":
            import trio

            await trio.lowlevel.checkpoint()
        else:
            await asyncio.sleep(0)

    async def gather(self, fns: List[Callable[[], Any]]) -> List[Any]:
        """Run every fn() as a task, concurrently; their results in order."""
        if self.name == "trio":
            import trio

            results: List[Any] = [None] * len(fns)

            async def one(i: int) -> None:
                results[i] = await fns[i]()

            async with trio.open_nursery() as nursery:
                for i in range(len(fns)):
                    nursery.start_soon(one, i)
            return results
        return list(await asyncio.gather(*(fn() for fn in fns)))


# -- scenarios -----------------------------------------------------------------------------


def tasks_scenario(loop: Loop, tasks: int, awaits: int) -> Dict[str, Any]:
    """*tasks* concurrent portal tasks, each making *awaits* await_() calls."""

    async def value_after_checkpoint(value: int) -> int:
        await loop.checkpoint()
        return value

    def sync_work(task_id: int) -> int:
        total = 0
        for step in range(awaits):
            total += greenback.await_(value_after_checkpoint(task_id * awaits + step))
        return total

    async def portal_task(task_id: int) -> int:
        await greenback.ensure_portal()
        return sync_work(task_id)

    async def main() -> List[int]:
        return await loop.gather([lambda i=i: portal_task(i) for i in range(tasks)])

    started = time.perf_counter()
    results = loop.run(main)
    elapsed = time.perf_counter() - started
    expected = [sum(range(i * awaits, (i + 1) * awaits)) for i in range(tasks)]
    ok = results == expected
    return {
        "ok": ok,
        "tasks": tasks,
        "awaits": tasks * awaits,
        "seconds": elapsed,
        "us_per_await": elapsed / (tasks * awaits) * 1e6,
        "wrong_results": sum(1 for a, b in zip(results, expected) if a != b),
    }


def creations_scenario(
    loop: Loop, creations: int, samples: int, report: Optional[Callable[[str], None]] = None
) -> Dict[str, Any]:
    """*creations* portals, one after another, with memory sampled as we go."""

    async def one() -> int:
        await loop.checkpoint()
        return 1

    def sync_one() -> int:
        return greenback.await_(one())  # type: ignore[no-any-return]

    async def async_one() -> int:
        return sync_one()

    async def task_one() -> int:
        await greenback.ensure_portal()
        return sync_one()

    chunk = max(1, creations // samples)
    points: List[Tuple[int, int, int]] = []  # (done, rss, tracked objects)

    async def main() -> int:
        done = total = 0
        while done < creations:
            n = min(chunk, creations - done)
            for i in range(n):
                kind = (done + i) % 3
                if kind == 0:
                    total += await greenback.with_portal_run_sync(sync_one)
                elif kind == 1:
                    total += await greenback.with_portal_run(async_one)
                else:
                    total += (await loop.gather([task_one]))[0]
            done += n
            point = (done, rss(), tracked_objects())
            points.append(point)
            if report is not None:
                report(f"  {loop.name:8} {done:>9,} portals  RSS {mib(point[1]):>10}  objects {point[2]:>9,}")
        return total

    started = time.perf_counter()
    total = loop.run(main)
    elapsed = time.perf_counter() - started
    # Growth after the first sample (which pays one-time costs: imports,
    # caches, the idle pool filling up).
    base = points[0]
    rss_growth = max(p[1] for p in points) - base[1]
    object_growth = max(p[2] for p in points) - base[2]
    return {
        "ok": total == creations and rss_growth <= RSS_SLACK and object_growth <= OBJECT_SLACK,
        "creations": creations,
        "seconds": elapsed,
        "us_per_creation": elapsed / creations * 1e6,
        "rss_first": base[1],
        "rss_last": points[-1][1],
        "rss_growth_after_first_sample": rss_growth,
        "objects_first": base[2],
        "objects_last": points[-1][2],
        "object_growth_after_first_sample": object_growth,
        "pool_size_at_end": _engine.pool_size(),
        "samples": points,
    }


def in_threads(count: int, fn: Callable[[int], Dict[str, Any]]) -> List[Dict[str, Any]]:
    results: List[Any] = [None] * count
    errors: List[BaseException] = []

    def target(i: int) -> None:
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: B036 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,), name=f"stress-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# -- main -----------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default="asyncio,trio", help="comma-separated: asyncio, trio, uvloop")
    parser.add_argument("--only", default="tasks,creations,threads", help="comma-separated scenarios")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--awaits", type=int, default=100)
    parser.add_argument("--creations", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--samples", type=int, default=10, help="memory samples per creations run")
    parser.add_argument("--quick", action="store_true", help="a tenth of --tasks and --creations")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks //= 10
        args.creations //= 10
    loops = [Loop(name) for name in args.loops.split(",") if name]
    scenarios = set(args.only.split(","))

    import greenlet

    print(
        f"greenback {greenback.__version__}, greenlet {greenlet.__version__}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    rows: List[Tuple[str, str, bool, str]] = []
    results: Dict[str, Any] = {}
    failed = False

    def record(name: str, loop: Loop, result: Dict[str, Any], summary: str) -> None:
        nonlocal failed
        rows.append((name, loop.name, result["ok"], summary))
        results[f"{name}/{loop.name}"] = result
        failed = failed or not result["ok"]
        print(f"{'ok  ' if result['ok'] else 'FAIL'} {name:<22} {loop.name:<8} {summary}", flush=True)

    for loop in loops:
        if "tasks" in scenarios:
            r = tasks_scenario(loop, args.tasks, args.awaits)
            record(
                "tasks", loop, r,
                f"{r['tasks']:,} tasks x {args.awaits} await_: {r['seconds']:.1f} s "
                f"({r['us_per_await']:.2f} us per await_), wrong results: {r['wrong_results']}",
            )
        if "creations" in scenarios:
            print(f"  {args.creations:,} portal creations under {loop.name}:", flush=True)
            r = creations_scenario(loop, args.creations, args.samples, report=lambda s: print(s, flush=True))
            record(
                "creations", loop, r,
                f"{r['creations']:,} portals: {r['seconds']:.1f} s ({r['us_per_creation']:.2f} us each); "
                f"RSS {mib(r['rss_first'])} -> {mib(r['rss_last'])} "
                f"(max growth {mib(r['rss_growth_after_first_sample'])}); objects "
                f"{r['objects_first']:,} -> {r['objects_last']:,} "
                f"(max growth {r['object_growth_after_first_sample']:,})",
            )
        if "threads" in scenarios:
            n = args.threads
            per_thread_tasks = max(1, args.tasks // n)
            started = time.perf_counter()
            thread_results = in_threads(n, lambda i: tasks_scenario(loop, per_thread_tasks, args.awaits))
            r = {
                "ok": all(t["ok"] for t in thread_results),
                "seconds": time.perf_counter() - started,
                "per_thread": thread_results,
            }
            record(
                "threads: tasks", loop, r,
                f"{n} threads x {per_thread_tasks:,} tasks x {args.awaits} await_: {r['seconds']:.1f} s, "
                f"wrong results: {sum(t['wrong_results'] for t in thread_results)}",
            )
            per_thread = max(1, args.creations // n)
            print(f"  {n} threads x {per_thread:,} portal creations under {loop.name}:", flush=True)
            rss_before = rss()
            started = time.perf_counter()
            thread_results = in_threads(
                n,
                lambda i: creations_scenario(
                    loop, per_thread, args.samples,
                    report=(lambda s: print(s + "  (thread 0)", flush=True)) if i == 0 else None,
                ),
            )
            total_seconds = time.perf_counter() - started
            # Each thread samples the whole process: growth is judged once,
            # over all threads' samples after their first.
            firsts = [t["samples"][0] for t in thread_results]
            rss_growth = max(p[1] for t in thread_results for p in t["samples"]) - min(f[1] for f in firsts)
            r = {
                "ok": all(t["creations"] == per_thread for t in thread_results) and rss_growth <= RSS_SLACK * n,
                "seconds": total_seconds,
                "rss_before": rss_before,
                "rss_after": rss(),
                "rss_growth_after_first_samples": rss_growth,
                "per_thread": thread_results,
            }
            record(
                "threads: creations", loop, r,
                f"{n} threads x {per_thread:,} portals: {total_seconds:.1f} s; RSS {mib(rss_before)} -> "
                f"{mib(r['rss_after'])} (growth after the first samples {mib(rss_growth)})",
            )

    print()
    print(f"{'scenario':<22} {'loop':<8} result")
    for name, loop_name, ok, _ in rows:
        print(f"{name:<22} {loop_name:<8} {'ok' if ok else 'FAILED'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv[1:], "results": results}, f, indent=1, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
