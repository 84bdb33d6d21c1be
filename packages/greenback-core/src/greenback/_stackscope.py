"""Glue for stackscope: extract a task's stack through its greenback portal.

stackscope (stack extraction for Trio and asyncio debugging, on PyPI) calls a
module's top-level ``_stackscope_install_glue_()`` once, the first time it
extracts a stack after that module was imported. ``greenback``'s calls
:func:`install`, which teaches stackscope three things:

* A :class:`~greenback._engine.Portal` (a Trio task's ``coro``, an asyncio
  task's ``get_coro()``, or what a ``with_portal_run*`` call awaits) unwraps
  to the frames of its worker greenlet, outermost first, then to what the
  innermost of them waits for: the coroutine ``await_`` is stepping, or the
  portal's own coroutine when that is parked in a plain ``await``. A portal
  not stepped yet unwraps to its coroutine. So a stack goes on through
  ``await_``, through nested ``await_`` calls, and through
  ``with_portal_run_sync``, down to the innermost await.
* The frame that awaits a portal (``Portal._steps``, ``await_steps``) leads
  to that portal.
* The engine's own frames are hidden, so that a printed stack shows only
  the user's code and greenback's API calls.

It also unwraps :class:`greenback.async_context` to the context manager it
wraps, as stackscope's built-in glue for greenback 1.x did.

What it reads of the engine (to move to a public ``greenback.lowlevel`` later):
``Portal`` and its ``_body``, ``_call``, ``_resume``, ``_worker``,
``_finished`` and ``_awaiting`` slots; ``Portal._steps`` and
``await_steps`` and their ``self`` local; and which engine functions run in a worker or driver
(:data:`_ENGINE_FUNCTIONS`).

Why this module also serves as ``greenback._impl``: stackscope 0.2 ships
glue for greenback 1.x, and when ``greenback`` is already imported as
stackscope is, it runs that glue at once (before any module's own glue). That
glue registers hooks for ``greenback._impl._greenback_shim`` (and for
``greenback._impl.trampoline`` if present), so without that name ``import
stackscope`` fails. :func:`_greenback_shim` below is the stand-in it finds;
the hooks it gets never apply, since no frame runs it, and ours replace those
stackscope registered for ``await_`` and ``async_context`` before its first
extraction.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

from greenlet import getcurrent

from . import _engine
from ._adapters import async_context
from ._engine import Portal

# Engine code that runs in a worker (or, while a portal is being stepped, in
# its driver): hidden from extracted stacks.
_ENGINE_FUNCTIONS: Sequence[Any] = (
    _engine._serve,
    _engine._run_job,
    _engine._step,
    _engine.await_,
    _engine._await_elsewhere,
    _engine._await_nested,
    _engine._start_deep,
    _engine.call_in_portal,
    Portal.send,
    Portal.throw,
    Portal._begin,
    Portal._throw_in,
    Portal._outcome,
)
# Where a parked worker's innermost frame tells what it waits for.
_PARKED_IN_BODY = _engine._step.__code__
_PARKED_IN_AWAIT = frozenset({_engine.await_.__code__, _engine._await_nested.__code__})


def _greenback_shim() -> None:
    """Never called: the name stackscope 0.2's glue for greenback 1.x looks up
    (see the module docstring)."""


def _frames_of(glet: Any) -> list[Any]:
    """The frames of a suspended greenlet's own stack, outermost first.

    On PyPy the ``f_back`` chain of a suspended greenlet does not end: its
    outermost frame links back to the innermost (see _engine._WorkerFrame),
    so the walk stops at the first frame it meets again.
    """
    frames = []
    seen = set()
    frame = glet.gr_frame
    while frame is not None and id(frame) not in seen:
        seen.add(id(frame))
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def unwrap_portal(portal: Portal) -> Any:
    """What stackscope finds inside *portal*: a coroutine, a running greenlet,
    or a parked worker's frames followed by what it waits for."""
    if portal._finished:
        return ()
    resume = portal._resume
    if resume is None:  # not stepped yet: the body waits where it was
        return () if portal._call is not None else portal._body
    if resume is getcurrent():  # extracting from inside the portal itself
        return resume  # stackscope's greenlet glue walks the running stack
    # Parked. The greenlet to resume is the worker, or one started below it
    # (await_ from another library's greenlet): its stack continues the
    # stacks of the greenlets between it and the worker.
    chain = [resume]
    while chain[-1] is not portal._worker and chain[-1].parent is not None:
        chain.append(chain[-1].parent)
    if chain[-1] is not portal._worker:
        chain = [resume]
    frames: list[Any] = []
    for glet in reversed(chain):
        frames.extend(_frames_of(glet))
    innermost = frames[-1].f_code if frames else None
    if innermost is _PARKED_IN_BODY:
        return [*frames, portal._body]
    if innermost in _PARKED_IN_AWAIT:
        return [*frames, portal._awaiting]
    return frames


def install() -> None:
    """Register greenback's hooks with stackscope (see the module docstring)."""
    # Imported by name: stackscope is an optional dependency, untyped for us.
    stackscope: Any = importlib.import_module("stackscope")
    Frame = stackscope.Frame

    stackscope.unwrap_stackitem.register(Portal)(unwrap_portal)

    def elaborate_portal_await(frame: Any, next_inner: object) -> object:
        # A coroutine awaiting a portal (with_portal_run*, or a portal awaited
        # directly). While the portal runs, the stack already goes on into its
        # worker; while it is parked, go on through the portal.
        frame.hide = True
        if isinstance(next_inner, Frame):
            return None
        portal = frame.pyframe.f_locals.get("self")
        return portal if isinstance(portal, Portal) else None

    # await_steps runs Portal._steps's code, flagged by types.coroutine (so a
    # code object of its own).
    for steps in (Portal._steps, _engine.await_steps):
        stackscope.elaborate_frame.register(steps)(elaborate_portal_await)
    for function in _ENGINE_FUNCTIONS:
        stackscope.customize(function, hide=True)

    def unwrap_async_context(manager: Any, context: Any) -> Any:
        return manager._cm

    stackscope.unwrap_context.register(async_context)(unwrap_async_context)
