"""Tree portals under Trio, with greenback 1.3.0's semantics.

* ``with_portal_run_tree(async_fn)``: *async_fn* and every task spawned into a
  nursery opened under it, recursively, can use ``await_``; tasks spawned into
  nurseries opened before (outside) it cannot. It adds no checkpoint.
* ``portals_for_children()`` (sync): the entering task gets no portal; children
  of nurseries opened inside the scope do; children of nurseries that existed
  before do not.
* ``portals_for_tree()`` (async): the entering task has a portal inside the
  block (and none after, if it had none before); entry and exit are schedule
  points but not cancellation points.
* ``AutoPortalInstrument()``: every task of the run, system tasks included.
"""

from __future__ import annotations

import types
from typing import Any, List, Set, Tuple

import pytest
import trio
import trio.testing

import greenback

# -- helpers -------------------------------------------------------------------


def sync_sleep0() -> str:
    """Sync code that awaits: only works where a portal is."""
    greenback.await_(trio.sleep(0))
    return "awaited"


async def report(tag: str, out: List[Tuple[str, bool]], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Record whether this task has a portal, and prove it by awaiting through it."""
    portal = greenback.has_portal()
    if portal:
        assert sync_sleep0() == "awaited"
    else:
        with pytest.raises(RuntimeError, match="greenback"):
            sync_sleep0()
    out.append((tag, portal))
    task_status.started()


def greenback_instruments() -> Set[Any]:
    """The greenback instruments installed in the running Trio run (reads Trio internals)."""
    runner = trio.lowlevel.current_task()._runner  # type: ignore[attr-defined]
    instruments = runner.instruments
    data = getattr(instruments, "data", instruments)
    try:
        hooks = list(data.values())
    except AttributeError:  # pragma: no cover - Trio's internals changed
        pytest.skip("cannot read Trio's instrument registry on this version")
    found: Set[Any] = set()
    for by_hook in hooks:
        found.update(i for i in by_hook if isinstance(i, greenback.AutoPortalInstrument))
    return found


# -- with_portal_run_tree ------------------------------------------------------


async def test_run_tree_covers_every_task_spawned_under_it() -> None:
    out: List[Tuple[str, bool]] = []

    async def grandchild_spawner() -> None:
        async with trio.open_nursery() as inner:
            inner.start_soon(report, "great-grandchild", out)
        await report("grandchild-spawner", out)

    async def child_spawner() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(grandchild_spawner)
            nursery.start_soon(report, "grandchild", out)
        await report("child-spawner", out)

    async def body(outer: trio.Nursery) -> int:
        await report("body", out)
        # A nursery opened before the tree began is outside it.
        outer.start_soon(report, "outside-child", out)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "child", out)
            nursery.start_soon(child_spawner)
            await nursery.start(report, "started-child", out)
        return 42

    async with trio.open_nursery() as outer:
        assert await greenback.with_portal_run_tree(body, outer) == 42
    assert dict(out) == {
        "body": True,
        "child": True,
        "started-child": True,
        "child-spawner": True,
        "grandchild": True,
        "grandchild-spawner": True,
        "great-grandchild": True,
        "outside-child": False,
    }
    assert not greenback.has_portal()
    # Once the tree is done, new tasks are on their own again.
    out.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(report, "after", out)
    assert out == [("after", False)]
    assert greenback_instruments() == set()


async def test_run_tree_adds_no_checkpoint() -> None:
    async def no_checkpoints() -> str:
        assert greenback.has_portal()
        return "done"

    with trio.CancelScope() as scope:
        scope.cancel()
        with trio.testing.assert_no_checkpoints():
            assert await greenback.with_portal_run_tree(no_checkpoints) == "done"
    assert not scope.cancelled_caught


async def test_run_tree_passes_arguments_and_errors() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert await greenback.with_portal_run_tree(add, 1, 2) == 3

    async def fails() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "child", [])
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await greenback.with_portal_run_tree(fails)
    # The scope was cleaned up on the way out.
    out: List[Tuple[str, bool]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(report, "after-error", out)
    assert out == [("after-error", False)]
    assert greenback_instruments() == set()


async def test_run_tree_in_a_task_that_already_has_a_portal() -> None:
    await greenback.ensure_portal()
    out: List[Tuple[str, bool]] = []

    async def body() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "child", out)

    await greenback.with_portal_run_tree(body)
    assert out == [("child", True)]
    assert greenback.has_portal()  # still ours


def test_trio_run_with_portal_run_tree() -> None:
    out: List[Tuple[str, bool]] = []

    async def main(tag: str) -> str:
        await report(tag, out)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "child", out)
        # Sync code deep down can await.
        return sync_sleep0()

    assert trio.run(greenback.with_portal_run_tree, main, "main") == "awaited"
    assert sorted(out) == [("child", True), ("main", True)]


async def test_nested_trees_and_the_instrument_going_away() -> None:
    out: List[Tuple[str, bool]] = []

    async def inner() -> None:
        assert len(greenback_instruments()) == 1  # one shared scoped instrument
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "inner-child", out)

    async def outer() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "outer-child", out)
            await greenback.with_portal_run_tree(inner)
            nursery.start_soon(report, "outer-child-after-inner", out)
        assert len(greenback_instruments()) == 1

    await greenback.with_portal_run_tree(outer)
    assert sorted(out) == [
        ("inner-child", True),
        ("outer-child", True),
        ("outer-child-after-inner", True),
    ]
    assert greenback_instruments() == set()


async def test_concurrent_scopes_in_sibling_tasks() -> None:
    """One task leaving its scope does not end another task's scope."""
    out: List[Tuple[str, bool]] = []
    a_done = trio.Event()

    async def a() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "a-child", out)
        a_done.set()

    async def b() -> None:
        await a_done.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "b-child-after-a-left", out)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(greenback.with_portal_run_tree, a)
        nursery.start_soon(greenback.with_portal_run_tree, b)
        # Not in either tree: a sibling of the tree roots.
        nursery.start_soon(report, "root-sibling", out)
    assert sorted(out) == [("a-child", True), ("b-child-after-a-left", True), ("root-sibling", False)]
    assert greenback_instruments() == set()


# -- portals_for_children -----------------------------------------------------


async def test_portals_for_children() -> None:
    out: List[Tuple[str, bool]] = []
    async with trio.open_nursery() as before:
        with greenback.portals_for_children():
            # The task entering the scope gets nothing.
            assert not greenback.has_portal()
            with pytest.raises(RuntimeError):
                sync_sleep0()
            before.start_soon(report, "child-of-earlier-nursery", out)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(report, "child", out)

                async def spawner() -> None:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(report, "grandchild", out)

                nursery.start_soon(spawner)
            assert not greenback.has_portal()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "child-after-scope", out)
    assert sorted(out) == [
        ("child", True),
        ("child-after-scope", False),
        ("child-of-earlier-nursery", False),
        ("grandchild", True),
    ]
    assert greenback_instruments() == set()


async def test_portals_for_children_is_not_a_checkpoint() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        with trio.testing.assert_no_checkpoints():
            with greenback.portals_for_children():
                pass
    assert not scope.cancelled_caught


async def test_portals_for_children_nested_scopes() -> None:
    out: List[Tuple[str, bool]] = []
    async with trio.open_nursery() as before_both:
        with greenback.portals_for_children():
            async with trio.open_nursery() as first:
                with greenback.portals_for_children():
                    async with trio.open_nursery() as second:
                        second.start_soon(report, "inner", out)
                    # `first` existed before the inner scope began, but was
                    # opened inside the outer one, which still covers it.
                    first.start_soon(report, "outer-nursery-in-inner-scope", out)
                    before_both.start_soon(report, "nursery-before-both-scopes", out)
                    assert len(greenback_instruments()) == 1
                first.start_soon(report, "outer", out)
                assert len(greenback_instruments()) == 1
    assert sorted(out) == [
        ("inner", True),
        ("nursery-before-both-scopes", False),
        ("outer", True),
        ("outer-nursery-in-inner-scope", True),
    ]
    assert greenback_instruments() == set()


async def test_nursery_start_into_an_earlier_nursery() -> None:
    """nursery.start() runs the new task under the caller until it reports started.

    Called inside the scope, it gives the task a portal even if the nursery it
    ends up in was opened before the scope, and the task keeps that portal.
    Its own children get portals while the scope lasts, and not after: the
    scope's instrument goes away with the last scope (as in greenback 1.3.0).
    """
    out: List[Tuple[str, bool]] = []

    async def long_lived(go: trio.Event, tag: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await report(f"{tag}:started", out)
        task_status.started()
        await go.wait()
        await report(f"{tag}:after-move", out)  # now a child of `before`
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, f"{tag}:child-of-moved", out)

    async with trio.open_nursery() as before:
        with greenback.portals_for_children():
            go = trio.Event()
            await before.start(long_lived, go, "scope-active")
            go.set()
            await trio.testing.wait_all_tasks_blocked()
        assert sorted(out) == [
            ("scope-active:after-move", True),
            ("scope-active:child-of-moved", True),
            ("scope-active:started", True),
        ]
        out.clear()
        with greenback.portals_for_children():
            go = trio.Event()
            await before.start(long_lived, go, "scope-gone")
        assert greenback_instruments() == set()
        go.set()
    assert sorted(out) == [
        ("scope-gone:after-move", True),
        ("scope-gone:child-of-moved", False),
        ("scope-gone:started", True),
    ]


# -- portals_for_tree -------------------------------------------------------------


async def test_portals_for_tree() -> None:
    out: List[Tuple[str, bool]] = []
    async with trio.open_nursery() as before:
        assert not greenback.has_portal()
        async with greenback.portals_for_tree():
            await report("self", out)
            before.start_soon(report, "child-of-earlier-nursery", out)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(report, "child", out)
            await report("self-later", out)
        assert not greenback.has_portal()
        with pytest.raises(RuntimeError):
            sync_sleep0()
        # The task's own coroutine runs directly under Trio again.
        assert type(trio.lowlevel.current_task().coro) is types.CoroutineType
    assert sorted(out) == [
        ("child", True),
        ("child-of-earlier-nursery", False),
        ("self", True),
        ("self-later", True),
    ]
    assert greenback_instruments() == set()


async def test_portals_for_tree_keeps_an_existing_portal() -> None:
    await greenback.ensure_portal()
    async with greenback.portals_for_tree():
        assert greenback.has_portal()
    assert greenback.has_portal()
    assert sync_sleep0() == "awaited"


def schedule_points() -> int:
    """How many schedule points the current task has passed (Trio's own counter,
    the one trio.testing.assert_checkpoints reads)."""
    count = getattr(trio.lowlevel.current_task(), "_schedule_points", None)
    if count is None:  # pragma: no cover - Trio's internals changed
        pytest.skip("this Trio does not count schedule points")
    return count  # type: ignore[no-any-return]


async def test_portals_for_tree_entry_and_exit_are_schedule_points_not_cancel_points() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        cm = greenback.portals_for_tree()
        before = schedule_points()
        await cm.__aenter__()  # would raise Cancelled if it were a cancel point
        assert schedule_points() > before
        assert greenback.has_portal()
        before = schedule_points()
        await cm.__aexit__(None, None, None)
        assert schedule_points() > before
        assert not greenback.has_portal()
        # The cancellation is still there for the next real checkpoint.
        await trio.lowlevel.checkpoint()
        pytest.fail("the cancelled scope should have raised at the checkpoint")  # pragma: no cover
    assert scope.cancelled_caught


async def test_portals_for_tree_cleans_up_on_error_and_cancel() -> None:
    with pytest.raises(ValueError):
        async with greenback.portals_for_tree():
            assert greenback.has_portal()
            raise ValueError
    assert not greenback.has_portal()

    with trio.move_on_after(0.01) as scope:
        async with greenback.portals_for_tree():
            greenback.await_(trio.sleep(5))
    assert scope.cancelled_caught
    assert not greenback.has_portal()
    assert greenback_instruments() == set()


# -- AutoPortalInstrument ---------------------------------------------------------------


def all_tasks() -> List[Any]:
    tasks = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        tasks.append(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return tasks


def test_auto_portal_instrument_covers_every_task_including_system_tasks() -> None:
    out: List[Tuple[str, bool]] = []

    async def main() -> None:
        await report("main", out)
        trio.lowlevel.spawn_system_task(report, "system-task", out)
        trio.lowlevel.spawn_system_task(trio.sleep_forever, name="sleeping-system-task")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "child", out)
            nursery.start_soon(trio.sleep, 0.01)
            await nursery.start(report, "started", out)
            await trio.testing.wait_all_tasks_blocked()
            tasks = all_tasks()
            assert trio.lowlevel.current_root_task() in tasks
            assert len(tasks) >= 4
            without = [t.name for t in tasks if not greenback.has_portal(t)]
            assert without == []
        await report("main-after", out)

    trio.run(main, instruments=[greenback.AutoPortalInstrument()])
    assert sorted(out) == [
        ("child", True),
        ("main", True),
        ("main-after", True),
        ("started", True),
        ("system-task", True),
    ]


def test_auto_portal_instrument_with_scoped_trees() -> None:
    """A run-wide instrument and a scoped one together: every task keeps its portal."""
    out: List[Tuple[str, bool]] = []

    async def main() -> None:
        async with greenback.portals_for_tree():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(report, "in-tree", out)
        # The run-wide portal survives leaving the tree: main had it before.
        await report("main-after-tree", out)
        assert greenback_instruments() == {auto}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "after-tree", out)

    auto = greenback.AutoPortalInstrument()
    trio.run(main, instruments=[auto])
    assert sorted(out) == [("after-tree", True), ("in-tree", True), ("main-after-tree", True)]


def test_auto_portal_instrument_added_mid_run() -> None:
    """Tasks spawned while an AutoPortalInstrument is installed get portals.

    (greenback 1.3.0's instrument did nothing when added after the run began;
    giving portals while it is installed is the obvious meaning.)
    """
    out: List[Tuple[str, bool]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "before", out)
        instrument = greenback.AutoPortalInstrument()
        trio.lowlevel.add_instrument(instrument)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "while-installed", out)
        trio.lowlevel.remove_instrument(instrument)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report, "after", out)

    trio.run(main)
    assert sorted(out) == [("after", False), ("before", False), ("while-installed", True)]
