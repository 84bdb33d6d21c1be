"""A scaled-down benchmarks/stress.py, in the suite: many tasks, many portals, threads.

Checks are by results and object counts, never by time: the machine may be
slow and busy. The full-size runs (10,000 tasks x 100 await_, 1,000,000
portal creations, 4 threads) are ``python benchmarks/stress.py``; see
docs/reliability.md for their last figures.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

import greenback_reliability_support as support
from greenback import _engine

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "stress.py"
_spec = importlib.util.spec_from_file_location("greenback_stress_script", _path)
assert _spec is not None and _spec.loader is not None
stress: Any = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = stress
_spec.loader.exec_module(stress)

# Objects the collector tracks may grow this much over a run of portal
# creations that leaks nothing (caches settling: asyncio's, Trio's, ours).
OBJECT_SLACK = 300


# The scenarios count the objects the collector tracks; counting only those
# the test creates makes each count cheap (see the fixture).
pytestmark = pytest.mark.usefixtures("only_new_objects")


def test_1000_concurrent_portal_tasks_x_10_await_(loop: Any) -> None:
    with support.nothing_left_behind():
        result = stress.tasks_scenario(stress.Loop(loop.library), tasks=1_000, awaits=10)
    assert result["wrong_results"] == 0
    assert result["ok"]


def test_20000_portal_creations_leave_object_counts_flat(loop: Any) -> None:
    stress_loop = stress.Loop(loop.library)
    with support.nothing_left_behind():
        stress.creations_scenario(stress_loop, 2_000, samples=1)  # warm up: caches, the pool
        result = stress.creations_scenario(stress_loop, 20_000, samples=5)
    counts = [objects for _, _, objects in result["samples"]]
    assert result["creations"] == 20_000
    assert max(counts) - counts[0] <= OBJECT_SLACK, counts
    assert _engine.pool_size() <= _engine.POOL_LIMIT


@pytest.mark.xfail(
    sys.implementation.name == "pypy",
    strict=False,
    reason="on PyPy 7.3.11 a few idle workers of the finished threads are sometimes (about every "
    "other run under pytest) never freed, even after more collections, a second and another "
    "thread's exit; not reproduced outside pytest, cause not found yet (see the PyPy report). "
    "test_idle_workers_of_a_thread_that_exited_are_freed passes there",
)
def test_4_threads_each_with_its_own_loop(loop: Any) -> None:
    stress_loop = stress.Loop(loop.library)
    with support.nothing_left_behind():
        stress.in_threads(4, lambda i: stress.creations_scenario(stress_loop, 500, samples=1))  # warm up
        before = stress.tracked_objects()
        tasks = stress.in_threads(4, lambda i: stress.tasks_scenario(stress_loop, tasks=250, awaits=10))
        creations = stress.in_threads(4, lambda i: stress.creations_scenario(stress_loop, 5_000, samples=1))
        del creations[:]  # their samples hold nothing, but keep the count honest
        after = stress.tracked_objects()
    assert [t["wrong_results"] for t in tasks] == [0, 0, 0, 0]
    assert after - before <= OBJECT_SLACK, (before, after)


@pytest.mark.loop_backends("uvloop")
def test_uvloop_tasks(loop: Any) -> None:
    with support.nothing_left_behind():
        result = stress.tasks_scenario(stress.Loop(loop.name), tasks=500, awaits=10)
    assert result["ok"]
