"""Keeping greenback's own frames out of the tracebacks users read.

An error that passes through a portal goes through frames of the engine on
its way: the worker's loop, the generator stepping an awaited portal, the
switch where a parked worker gets what the loop throws in. A native
``await`` adds none of these, so neither should we. The engine registers the
code objects of those frames in the sets below as it defines them; this
module only knows how to cut them out of a traceback.
"""

from __future__ import annotations

import sys
import types

from greenlet import greenlet

__all__ = [
    "ENGINE_CODES",
    "PORTAL_CODES",
    "SWITCH_CODES",
    "strip_engine_frames",
    "thrown_in",
    "without_portal_frames",
]

# Frames a worker runs its job under (its loop, and the step of a coroutine
# body): at the top of the traceback of whatever the job raised.
ENGINE_CODES: set[types.CodeType] = set()

# Frames a portal adds when it re-raises its body's error in whoever awaited it.
PORTAL_CODES: set[types.CodeType] = set()

# The frames where a parked worker gets what the driver throws in, and those
# it went through on its way there: the generator stepping an awaited portal
# (Python 3.14 adds its frame as the first, where the error was raised).
SWITCH_CODES: set[types.CodeType] = set()
if sys.implementation.name == "pypy":
    # PyPy's greenlet is Python code: its switch and throw frames come next.
    SWITCH_CODES.update(f.__code__ for f in vars(greenlet).values() if isinstance(f, types.FunctionType))


def strip_engine_frames(exc: BaseException) -> BaseException:
    """*exc*, as a job raised it, without the worker's frames above the job's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code in ENGINE_CODES:
        tb = tb.tb_next
    return exc.with_traceback(tb)


def without_portal_frames(exc: BaseException) -> BaseException:
    """*exc* as caught in the frame that awaited a portal, minus the portal's frames.

    The first traceback entry is the catching frame itself (re-raising adds it
    back); the portal's own frames follow it, then the body's frames.
    """
    tb = exc.__traceback__
    if tb is not None:
        tb = tb.tb_next
    while tb is not None and tb.tb_frame.f_code in PORTAL_CODES:
        tb = tb.tb_next
    return exc.with_traceback(tb)


def thrown_in(exc: BaseException) -> BaseException:
    """*exc*, just thrown into a worker where it parked, without that frame.

    Thrown on into the awaitable, it then starts where it lands there, as an
    error passed in by a native ``await`` does; otherwise every traceback of
    a cancellation ends in a frame of greenback's (IPython cannot hide it: it
    always shows the last frame). Only on the path of thrown-in errors.
    """
    tb = exc.__traceback__
    if tb is None or tb.tb_frame.f_code not in SWITCH_CODES:
        return exc
    while tb is not None and tb.tb_frame.f_code in SWITCH_CODES:
        tb = tb.tb_next
    exc.__traceback__ = tb
    return exc
