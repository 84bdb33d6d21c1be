"""The engine's hand-kept copies stay copies, and every place a worker parks keeps the parking rule.

A few lines of the hot path exist twice because a shared helper measured
slower (see greenback._engine.call_in_portal): each copy sits between
``# twin(NAME)`` and ``# end twin(NAME)``. The first test fails as soon as
two copies of a twin differ in anything but indentation and comments.

The worker parks in three places (a task's body awaiting directly, await_,
and await_ from another library's greenlet below the worker), each with its
own loop, since each steps something different. What they must share is the
rule in greenback._engine's "Parking": while parked, no frame of ours refers
to the portal, to what it runs, to what await_ waits on, or to the trap. The
second test parks in each and looks at the frames.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from typing import Any, Dict, List

import greenlet
import pytest

import greenback
from greenback import _engine
from greenback.lowlevel import portal_for_task

MARK = re.compile(r"^\s*# (end )?twin\((\w+)\)")


def twins_in(source: str) -> Dict[str, List[List[str]]]:
    found: Dict[str, List[List[str]]] = {}
    current = None
    for line in source.splitlines():
        mark = MARK.match(line)
        if mark:
            name = mark.group(2)
            if mark.group(1):
                assert current is not None and current[0] == name, f"'end twin({name})' without its start"
                found.setdefault(name, []).append(current[1])
                current = None
            else:
                assert current is None, f"twin({name}) starts inside twin({current[0]})"
                current = (name, [])
        elif current is not None:
            code = re.sub(r"\s+#.*$", "", line).strip()  # comments and indentation may differ
            if code:
                current[1].append(code)
    assert current is None, f"twin({current[0]}) never ends"
    return found


def test_the_twins_of_the_hot_path_are_the_same_code():
    twins = twins_in(inspect.getsource(_engine))
    assert set(twins) == {"resume", "lease", "pool"}
    for name, copies in twins.items():
        assert len(copies) == 2, f"twin({name}) has {len(copies)} copies"
        first, second = copies
        assert first, f"twin({name}) is empty"
        assert first == second, f"the copies of twin({name}) differ"


def test_a_changed_copy_is_caught():
    # The check above, on a copy of the engine's source with one twin edited.
    source = inspect.getsource(_engine)
    changed = source.replace("worker.gr_context = None  # never pin", "worker.gr_context = ()  # never pin", 1)
    assert changed != source
    copies = twins_in(changed)["pool"]
    assert copies[0] != copies[1]


# -- parking -------------------------------------------------------------------

OURS = os.path.dirname(_engine.__file__) + os.sep


def our_frames(gr: Any) -> List[Any]:
    """The frames of greenback's own code on a suspended greenlet's stack."""
    frames = []
    seen = set()
    frame = gr.gr_frame
    # On PyPy a suspended greenlet's chain does not end: its first frame links
    # back to where it last switched out (see greenback._engine._WorkerFrame).
    while frame is not None and id(frame) not in seen:
        seen.add(id(frame))
        if frame.f_code.co_filename.startswith(OURS):
            frames.append(frame)
        if frame.f_code is _engine._serve.__code__:
            break  # where a worker's stack begins
        frame = frame.f_back
    return frames


def held_by_our_frames(greenlets: List[Any], *objects: Any) -> List[str]:
    wanted = {id(o): repr(o) for o in objects if o is not None}
    held = []
    for gr in greenlets:
        for frame in our_frames(gr):
            for name, value in frame.f_locals.items():
                if id(value) in wanted:
                    held.append(f"{frame.f_code.co_name}(): {name} = {wanted[id(value)]}")
    return held


async def sleep_directly(event: asyncio.Event) -> None:
    await greenback.ensure_portal()
    await event.wait()  # the body's own await: the worker parks in _step


async def sleep_in_await_(event: asyncio.Event) -> None:
    await greenback.ensure_portal()
    greenback.await_(event.wait())


async def sleep_in_a_greenlet_below(event: asyncio.Event) -> None:
    await greenback.ensure_portal()
    below = greenlet.greenlet(lambda: greenback.await_(event.wait()))
    below.switch()


@pytest.mark.parametrize(
    "body, park",
    [
        pytest.param(sleep_directly, "_step", id="body-awaits"),
        pytest.param(sleep_in_await_, "await_", id="await_"),
        pytest.param(sleep_in_a_greenlet_below, "_await_nested", id="await_-below-the-worker"),
    ],
)
def test_a_parked_worker_holds_nothing_of_its_task(body, park):
    async def main() -> None:
        event = asyncio.Event()
        task = asyncio.ensure_future(body(event))
        for _ in range(10):
            await asyncio.sleep(0)
        portal = portal_for_task(task)
        assert portal is not None
        worker = portal.worker
        assert worker is not None and worker.gr_frame is not None
        # Where it parked: the code that switched out last, on the stack that did.
        stacks = [worker]
        resume = portal._resume
        if resume is not worker:
            stacks.insert(0, resume)  # the greenlet below the worker, which called await_
        assert stacks[0].gr_frame.f_code.co_name == park
        assert worker._greenback_portal is None
        awaiting = getattr(portal, "_awaiting", None)  # set by the first await_
        held = held_by_our_frames(stacks, portal, portal.wrapped, awaiting, portal._trap, task)
        assert held == [], "\n".join(held)
        event.set()
        await task

    asyncio.run(main())
