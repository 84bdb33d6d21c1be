"""Instructions per operation, counted by callgrind: engine changes compared on a busy machine.

compare.py times operations, and on a shared machine the times of two runs
differ by more than most engine changes do. Instruction counts do not: for
the same interpreter, packages and inputs, callgrind (valgrind's
instruction counter) gives the same total run after run, whatever else the
machine is doing. They are not times (a cache miss counts as one
instruction), but an edit that makes the hot path do more work shows up
here at once. (Run twice, the same build gives figures within about 1% of
each other: allocation still varies a little.)

Each operation runs N and 2N times in two processes under callgrind; the
difference divided by N is what one operation costs, with start-up and
loop set-up cancelled out. Two interpreters, each with its own greenback
installed, are compared in one invocation:

    python benchmarks/instructions.py --before /path/to/old/venv/bin/python \\
        --after /path/to/new/venv/bin/python

``--after`` defaults to the interpreter running this script. Needs valgrind
on PATH (Debian: ``apt-get install valgrind``); slow (valgrind runs Python
about 50 times slower), so N is small.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# What one process runs: sys.argv[1] names the row, sys.argv[2] is N.
PROGRAM = r"""
import gc
import sys
import greenback

# A collection lands in one of the two runs and not the other: none at all.
gc.disable()

row, n = sys.argv[1], int(sys.argv[2])
loop, op = row.split(":")
if loop == "trio":
    import trio
    checkpoint = trio.lowlevel.checkpoint
else:
    import asyncio

    async def checkpoint():
        await asyncio.sleep(0)

def noop():
    pass

async def async_noop():
    pass

def await_once():
    greenback.await_(checkpoint())

async def main():
    await greenback.ensure_portal()
    if op == "checkpoint":
        for _ in range(n):
            await checkpoint()
    elif op == "await_":
        for _ in range(n):
            greenback.await_(checkpoint())
    elif op == "run_sync":
        for _ in range(n):
            await greenback.with_portal_run_sync(noop)
    elif op == "run":
        for _ in range(n):
            await greenback.with_portal_run(async_noop)
    elif op == "run_sync_await_":
        for _ in range(n):
            await greenback.with_portal_run_sync(await_once)
    else:
        raise SystemExit("unknown operation " + op)

if loop == "trio":
    trio.run(main)
else:
    asyncio.run(main())
"""

ROWS = [
    ("checkpoint", "checkpoint in a task with a portal (compare.py row 2)"),
    ("await_", "await_(checkpoint()) from sync code (row 3)"),
    ("run_sync", "with_portal_run_sync(noop) (row 4)"),
    ("run", "with_portal_run(async_noop) (row 5)"),
    ("run_sync_await_", "with_portal_run_sync(fn that calls await_ once) (row 6.sync)"),
]
LOOPS = ("asyncio", "trio")
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(python: str, script: str, row: str, n: int) -> int:
    # The same hash seed in every run: set iteration orders, dict layouts and
    # so the instructions they take are then the same too.
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python, script, row, str(n)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    found = COLLECTED.search(out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"{python} {row}: failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return int(found.group(1))


def per_operation(python: str, script: str, row: str, n: int) -> float:
    return (instructions(python, script, row, 2 * n) - instructions(python, script, row, n)) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="interpreter with the greenback to compare against")
    parser.add_argument("--after", default=sys.executable, help="interpreter with the greenback under test")
    parser.add_argument("-n", type=int, default=2000, help="operations in the shorter run (default 2000)")
    parser.add_argument("--loops", default=",".join(LOOPS), help="asyncio, trio or both (default both)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (Debian: apt-get install valgrind)")
    loops = [loop for loop in args.loops.split(",") if loop]
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "operation.py")
        with open(script, "w") as f:
            f.write(PROGRAM)
        print(f"before  {args.before}\nafter   {args.after}\ninstructions per operation (callgrind), N={args.n} vs {2 * args.n}\n")
        print(f"{'row':<62} {'loop':<8} {'before':>9} {'after':>9} {'after/before':>12}")
        for key, label in ROWS:
            for loop in loops:
                row = f"{loop}:{key}"
                before = per_operation(args.before, script, row, args.n)
                after = per_operation(args.after, script, row, args.n)
                print(f"{label:<62} {loop:<8} {before:>9.0f} {after:>9.0f} {after / before:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
