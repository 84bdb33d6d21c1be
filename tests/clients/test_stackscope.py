"""stackscope sees through greenback portals (greenback._stackscope).

stackscope (on PyPI) extracts the stack of a suspended task for debugging
(tractor dumps its task trees with it). These tests need it installed: it is
a test dependency only (``pip install stackscope``), and the tests are
skipped without it.

For each program the test extracts the stack of a task parked somewhere
inside a portal and checks the names of the frames shown (stackscope hides
those marked ``hide``: the engine's), outermost first, down to the innermost
await. Under Trio it extracts ``stackscope.extract(task)``; under asyncio
``stackscope.extract(task.get_coro())``, since stackscope 0.2 has no glue
for asyncio.Task itself (it extracts no frames from any asyncio task).

greenback 1.3.0 with stackscope 0.2.2 showed the same frames for the
ensure_portal() programs (plus a visible ``greenback_shim`` frame on top),
and stopped at ``_greenback_shim_sync`` for with_portal_run_sync, at
``spawn_child`` for await_ from a child greenlet, and at the shim for a task
given a portal that has not run since.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any, Callable, Dict, List

import greenlet
import pytest

import greenback

stackscope = pytest.importorskip("stackscope", reason="stackscope is a test dependency: pip install stackscope")
trio = pytest.importorskip("trio")

# Tests taking `loop` run under asyncio and under Trio (tests/clients/conftest.py).
# The engine's frames, which every extraction through a portal passes.
ENGINE = {"_serve", "_run_job", "_step", "_steps", "await_steps", "await_", "_await_elsewhere", "_await_nested"}


def shown(stack: Any) -> List[str]:
    return [frame.pyframe.f_code.co_name for frame in stack.frames if not frame.hide]


def hidden(stack: Any) -> List[str]:
    return [frame.pyframe.f_code.co_name for frame in stack.frames if frame.hide]


class Parking:
    """Where a task waits forever: ``await parking.park()`` in the task."""

    def __init__(self, library: str) -> None:
        self.library = library
        self.parked = False

    async def park(self) -> None:
        self.parked = True
        if self.library == "trio":
            await trio.sleep_forever()
        else:
            await asyncio.Event().wait()


def extract_parked(loop: Any, make_program: Callable[[Parking], Callable[[], Any]]) -> Any:
    """Run the program a task, wait until it parks, extract its stack, cancel it."""
    parking = Parking(loop.library)
    program = make_program(parking)

    if loop.library == "trio":

        async def trio_main() -> Any:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(program)
                with trio.fail_after(10):
                    while not parking.parked:
                        await trio.sleep(0.001)
                await trio.sleep(0.001)
                (task,) = nursery.child_tasks
                stack = stackscope.extract(task)
                nursery.cancel_scope.cancel()
            return stack

        return loop.run(trio_main)

    async def asyncio_main() -> Any:
        task = asyncio.get_running_loop().create_task(program())
        for _ in range(10000):
            if parking.parked:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.001)
        assert parking.parked
        stack = stackscope.extract(task.get_coro())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return stack

    return loop.run(asyncio_main)


def check(stack: Any, expected: List[str]) -> None:
    names = shown(stack)
    assert stack.error is None, stack.error
    # The user's frames, then the event's wait and what the loop shows of it.
    assert names[: len(expected)] == expected, names
    assert names[len(expected)] in ("wait", "sleep_forever"), names
    assert not ENGINE & set(names), names
    assert ENGINE & set(hidden(stack)), hidden(stack)


# -- the programs -------------------------------------------------------------------------


def in_with_portal_run_sync(parking: Parking) -> Callable[[], Any]:
    async def leaf() -> None:
        await parking.park()

    def helper() -> None:
        greenback.await_(leaf())

    def sync_fn() -> None:
        helper()

    async def program() -> None:
        await greenback.with_portal_run_sync(sync_fn)

    return program


def ensure_portal_then_plain_await(parking: Parking) -> Callable[[], Any]:
    async def leaf() -> None:
        await parking.park()

    async def child() -> None:
        await leaf()

    async def program() -> None:
        await greenback.ensure_portal()
        await child()

    return program


def nested_await_in_await(parking: Parking) -> Callable[[], Any]:
    async def leaf() -> None:
        await parking.park()

    def inner_sync() -> None:
        greenback.await_(leaf())

    async def middle() -> None:
        inner_sync()

    def outer_sync() -> None:
        greenback.await_(middle())

    async def program() -> None:
        await greenback.ensure_portal()
        outer_sync()

    return program


def ensure_portal_then_await_(parking: Parking) -> Callable[[], Any]:
    async def leaf() -> None:
        await parking.park()

    def helper() -> None:
        greenback.await_(leaf())

    async def program() -> None:
        await greenback.ensure_portal()
        helper()

    return program


def in_with_portal_run(parking: Parking) -> Callable[[], Any]:
    async def leaf() -> None:
        await parking.park()

    def helper() -> None:
        greenback.await_(leaf())

    async def body() -> None:
        helper()

    async def program() -> None:
        await greenback.with_portal_run(body)

    return program


def await_from_a_child_greenlet(parking: Parking) -> Callable[[], Any]:
    async def leaf() -> None:
        await parking.park()

    def in_child() -> None:
        greenback.await_(leaf())

    def spawn_child() -> None:
        greenlet.greenlet(in_child).switch()

    async def program() -> None:
        await greenback.ensure_portal()
        spawn_child()

    return program


PROGRAMS: Dict[str, Any] = {
    "with_portal_run_sync, parked in await_": (
        in_with_portal_run_sync,
        ["program", "with_portal_run_sync", "sync_fn", "helper", "leaf", "park"],
    ),
    "ensure_portal, parked in a plain await": (
        ensure_portal_then_plain_await,
        ["program", "child", "leaf", "park"],
    ),
    "await_ nested in await_": (
        nested_await_in_await,
        ["program", "outer_sync", "middle", "inner_sync", "leaf", "park"],
    ),
    "ensure_portal, parked in await_": (
        ensure_portal_then_await_,
        ["program", "helper", "leaf", "park"],
    ),
    "with_portal_run, parked in await_": (
        in_with_portal_run,
        ["program", "with_portal_run", "body", "helper", "leaf", "park"],
    ),
    "await_ from a greenlet started in the portal": (
        await_from_a_child_greenlet,
        ["program", "spawn_child", "in_child", "leaf", "park"],
    ),
}


@pytest.mark.parametrize("case", list(PROGRAMS))
def test_extract_goes_through_portals_down_to_the_innermost_await(case: str, loop: Any) -> None:
    make_program, expected = PROGRAMS[case]
    check(extract_parked(loop, make_program), expected)


def test_a_task_given_a_portal_that_has_not_run_since(loop: Any) -> None:
    """bestow_portal() of a parked task: the stack is its coroutine's, as before."""
    parking = Parking(loop.library)

    async def leaf() -> None:
        await parking.park()

    async def program() -> None:
        await leaf()

    async def trio_main() -> Any:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(program)
            while not parking.parked:
                await trio.sleep(0.001)
            (task,) = nursery.child_tasks
            greenback.bestow_portal(task)
            stack = stackscope.extract(task)
            nursery.cancel_scope.cancel()
        return stack

    async def asyncio_main() -> Any:
        task = asyncio.get_running_loop().create_task(program())
        while not parking.parked:
            await asyncio.sleep(0.001)
        greenback.bestow_portal(task)
        stack = stackscope.extract(task.get_coro())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return stack

    stack = loop.run(trio_main if loop.library == "trio" else asyncio_main)
    assert stack.error is None
    assert shown(stack)[:3] == ["program", "leaf", "park"]


def test_extract_from_inside_the_portal(loop: Any) -> None:
    """A task extracting its own stack from sync code run in its portal."""
    seen: List[Any] = []

    def look() -> None:
        if loop.library == "trio":
            seen.append(stackscope.extract(trio.lowlevel.current_task()))
        else:
            seen.append(stackscope.extract(asyncio.current_task().get_coro()))  # type: ignore[union-attr]

    def sync_fn() -> None:
        look()

    async def program() -> None:
        await greenback.with_portal_run_sync(sync_fn)

    loop.run(program)
    (stack,) = seen
    assert stack.error is None
    names = shown(stack)
    assert names[names.index("program") :] == ["program", "with_portal_run_sync", "sync_fn", "look"]
    assert not ENGINE & set(names), names


def _stackscope_sees_context_managers() -> bool:
    """Whether stackscope can list the context managers a frame is inside,
    here, without greenback involved: stackscope 0.2.2 reads CPython 3.11-3.13
    frames, and on 3.14 warns ("Inspection trickery doesn't work on this
    interpreter") and lists none."""
    import warnings

    class Plain:
        def __enter__(self) -> "Plain":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

    seen: List[Any] = []

    def inside() -> None:
        with Plain():
            seen.append(stackscope.extract(sys._getframe(0), with_contexts=True))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inside()
    (stack,) = seen
    return any(type(c.obj).__name__ == "Plain" for f in stack.frames for c in f.contexts)


def test_async_context_shows_the_context_manager_it_wraps(loop: Any) -> None:
    if not _stackscope_sees_context_managers():
        pytest.skip(
            f"stackscope {stackscope.__version__} cannot list context managers on Python "
            f"{sys.version_info[0]}.{sys.version_info[1]}, with or without greenback (its "
            "frame inspection knows CPython 3.11-3.13's layout)"
        )

    class Resource:
        async def __aenter__(self) -> "Resource":
            return self

        async def __aexit__(self, *exc: Any) -> None:
            pass

    def make_program(parking: Parking) -> Callable[[], Any]:
        def sync_fn() -> None:
            with greenback.async_context(Resource()):
                greenback.await_(parking.park())

        async def program() -> None:
            await greenback.with_portal_run_sync(sync_fn)

        return program

    stack = extract_parked(loop, make_program)
    (frame,) = [f for f in stack.frames if f.pyframe.f_code.co_name == "sync_fn"]
    assert [type(context.obj).__name__ for context in frame.contexts] == ["Resource"]


@pytest.mark.parametrize("order", ["greenback, stackscope", "stackscope, greenback"])
def test_import_in_either_order_with_warnings_as_errors(order: str) -> None:
    """stackscope runs its own glue for greenback 1.x at import when greenback
    came first: it must find what it looks for, and then ours replaces it."""
    program = (
        f"import {order}\n"
        "import trio\n"
        "async def leaf():\n"
        "    await trio.sleep_forever()\n"
        "def helper():\n"
        "    greenback.await_(leaf())\n"
        "async def program():\n"
        "    await greenback.with_portal_run_sync(helper)\n"
        "async def main():\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        nursery.start_soon(program)\n"
        "        await trio.sleep(0.01)\n"
        "        (task,) = nursery.child_tasks\n"
        "        stack = stackscope.extract(task)\n"
        "        assert stack.error is None, stack.error\n"
        "        print([f.pyframe.f_code.co_name for f in stack.frames if not f.hide])\n"
        "        nursery.cancel_scope.cancel()\n"
        "trio.run(main)\n"
    )
    result = subprocess.run(
        # stackscope's own glue for builtins makes two async generator
        # awaitables it never awaits (a RuntimeWarning on Python 3.13+, raised
        # as an ignored exception): not ours, so not made an error here.
        # stackscope 0.2.2 also warns, on Python 3.14+, that its frame
        # inspection does not know this interpreter (it then lists no context
        # managers): stackscope's own limitation, with or without greenback.
        [
            sys.executable,
            "-W", "error",
            "-W", "ignore:coroutine method:RuntimeWarning",
            "-W", "ignore:Inspection trickery doesn't work on this interpreter",
            "-c", program,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if _stackscope_sees_context_managers():
        assert result.stderr == ""
    else:
        # Where its frame inspection fails, stackscope prints why: only that,
        # a traceback whose every frame is stackscope's.
        files = re.findall(r'File "([^"]+)"', result.stderr)
        assert files and all("/stackscope/" in name for name in files), result.stderr
    assert result.stdout.strip().startswith("['program', 'with_portal_run_sync', 'helper', 'leaf'")
