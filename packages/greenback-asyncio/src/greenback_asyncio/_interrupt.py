"""Ctrl-C, and a kernel's interrupt, for an IPython cell that runs in a greenback portal.

A stock shell runs a cell's sync code under Python's default SIGINT handler:
KeyboardInterrupt is raised right where the code is. A cell with a portal
also *waits* (in ``greenback.await_``) while the event loop runs other
things; a KeyboardInterrupt raised then would land in the event loop, or in
a portal halfway through a switch, and break them instead of the cell. So
while such a cell runs, SIGINT goes to :class:`CellInterrupts`, which looks at
what the main thread is doing when the signal arrives:

* the cell's own code (what IPython's ``run_code`` runs, in the cell's
  greenlet, outside greenback's switching code): raise KeyboardInterrupt
  there, as the stock handler would; IPython reports it as the cell's error;
* anything else (the loop, another task, a portal mid-switch, IPython
  between two statements of the cell): once the loop has control, cancel the
  cell's task, as a stock kernel does for cells that ``await``; the
  CancelledError comes out of the ``await_`` (or ``await``) where the cell
  waits. If the cell's own code runs again first, without yielding, the
  signal is raised again shortly after: it is delivered whichever comes first.

Nested ``asyncio.run()`` turns that cancellation back into KeyboardInterrupt,
as a stock ``asyncio.run()`` does on Ctrl-C (see :func:`claim_interrupt`).
The handler is installed only in the main thread (the only one Python
delivers signals to) and only for the time the cell's code runs.
"""

from __future__ import annotations

import _thread
import asyncio
import os
import signal
import sys
import threading
from types import CodeType, FrameType, TracebackType
from typing import Any, List, Optional, Type

from greenlet import getcurrent

import greenback

# Code in these directories switches portals, or keeps our own bookkeeping:
# an exception raised in the middle of it could leave a task half-switched.
_MACHINERY = (
    os.path.dirname(greenback.__file__) + os.sep,
    os.path.dirname(__file__) + os.sep,
)
# How long a signal that caught a portal mid-switch waits to be raised again.
_RETRY_SECONDS = 0.05
# After this many signals raised again without the interrupt landing (about
# two seconds), it is raised wherever the main thread is, as Python's own
# handler would: Ctrl-C must never be ignored, and a portal interrupted
# mid-switch is still better than a shell that cannot be interrupted.
_RETRIES_BEFORE_FORCING = 40
# What the cancelled cell's CancelledError says.
CANCEL_MESSAGE = "the cell was interrupted (SIGINT: Ctrl-C or the kernel's interrupt) while it waited"

# The scopes of the cells running now in the main thread, innermost last.
_active: List["CellInterrupts"] = []


class CellInterrupts:
    """A context manager: SIGINT interrupts the cell that runs in the current task.

    Enter it inside the cell's portal, in the task that runs the cell.
    *runner* is the code object whose callees are the cell's own code
    (``InteractiveShell.run_code``'s). Where SIGINT cannot be handled (not
    the main thread, no running asyncio loop, or a handler that Python did not
    install and we cannot restore), it changes nothing.
    """

    def __init__(self, runner: CodeType) -> None:
        self._runner = runner
        self._installed = False
        # Re-entrant: the handler runs in the main thread between any two
        # bytecodes, also while the main thread holds the lock (in __exit__,
        # in _cancel_waiting_cell); a plain Lock would deadlock there. The
        # retry timer's thread holds it only briefly.
        self._lock = threading.RLock()
        self._active = False
        self._pending = False  # an interrupt waits to be delivered
        self._retry: Optional[threading.Timer] = None
        self._resignals = 0  # signals we raised again that the handler has not seen
        self._retried = 0  # signals raised again for the interrupt pending now
        self._cancels = 0  # cancellations we requested and nobody has claimed
        self._task: Any = None
        self._loop: Any = None
        self._greenlet: Any = None
        self._previous: Any = None

    def __enter__(self) -> "CellInterrupts":
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return self
        self._task = asyncio.current_task()
        if self._task is None:
            return self
        previous = signal.getsignal(signal.SIGINT)
        if previous is None:  # set from C: we could not put it back
            return self
        self._greenlet = getcurrent()
        self._previous = previous
        self._active = True
        signal.signal(signal.SIGINT, self._on_sigint)
        self._installed = True
        _active.append(self)
        return self

    def __exit__(
        self,
        typ: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not self._installed:
            return
        with self._lock:
            self._active = False
            self._pending = False
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
        _active.remove(self)
        # signal.signal() first runs any signal still pending, with our
        # handler: a signal we raised again is dropped there (see _on_sigint).
        signal.signal(signal.SIGINT, self._previous)
        self._installed = False
        # The cell is over: it no longer counts as cancelled (3.11+ counts
        # cancellation requests; the cell's task may go on, as a kernel's does).
        uncancel = getattr(self._task, "uncancel", None)
        while self._cancels and uncancel is not None and self._task.cancelling():
            uncancel()
            self._cancels -= 1
        self._cancels = 0
        self._task = self._loop = self._greenlet = self._previous = None

    # -- the handler ---------------------------------------------------------

    def _on_sigint(self, signum: int, frame: Optional[FrameType]) -> None:
        # (This frame ends the traceback of the KeyboardInterrupt it raises:
        # it must raise here, so that a blocking call such as time.sleep()
        # stops at once, as under Python's own handler.)
        with self._lock:
            resignal = self._resignals > 0
            if resignal:
                self._resignals -= 1
            active = self._active
            if resignal and active and not self._pending:
                return  # ours, and the loop delivered the interrupt meanwhile
        if not active:
            # Between leaving the cell and putting the previous handler back.
            if resignal:
                return  # ours, and the cell is over: nothing to interrupt
            previous = self._previous
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.default_int_handler or previous == signal.SIG_DFL:
                raise KeyboardInterrupt
            return
        with self._lock:
            forced = resignal and self._retried >= _RETRIES_BEFORE_FORCING
        if forced or self._in_cell_code(frame):
            with self._lock:
                self._pending = False
                self._retried = 0
            # The cell's own code was running: interrupt it right there.
            raise KeyboardInterrupt
        with self._lock:
            if self._pending and not resignal:
                return  # already on its way
            first = not self._pending
            if first:
                self._retried = 0
            self._pending = True
            self._schedule_retry()
        if first:
            self._loop.call_soon_threadsafe(self._cancel_waiting_cell)

    def _in_cell_code(self, frame: Optional[FrameType]) -> bool:
        """Whether the main thread was running the cell's own code, where
        IPython catches a KeyboardInterrupt (not a portal's switch)."""
        if frame is None or frame.f_code.co_filename.startswith(_MACHINERY):
            return False
        mine = self._greenlet
        gr: Any = getcurrent()
        while gr is not mine:  # the cell's greenlet, or one it started
            if gr is None:
                return False
            gr = gr.parent
        caller = frame.f_back
        while caller is not None:
            if caller.f_code is self._runner:
                return True
            caller = caller.f_back
        return False

    def _schedule_retry(self) -> None:
        # Called with the lock held.
        if self._retry is None:
            retry = threading.Timer(_RETRY_SECONDS, self._raise_again)
            retry.daemon = True
            self._retry = retry
            retry.start()

    def _raise_again(self) -> None:
        with self._lock:
            self._retry = None
            if not (self._active and self._pending):
                return
            self._resignals += 1
            self._retried += 1
            main = threading.main_thread().ident
            if hasattr(signal, "pthread_kill") and main is not None:
                # A real signal: it also wakes a main thread blocked in a
                # system call (time.sleep(), a read), which _thread's
                # interrupt_main() would leave blocked until the call returns.
                signal.pthread_kill(main, signal.SIGINT)
            elif sys.version_info >= (3, 10):  # pragma: no cover - Windows
                _thread.interrupt_main(signal.SIGINT)
            else:  # pragma: no cover - Windows, 3.9
                _thread.interrupt_main()

    def _cancel_waiting_cell(self) -> None:
        # A loop callback: the cell's task is suspended now, and if the cell
        # is still running, it is suspended inside the cell.
        with self._lock:
            if not (self._active and self._pending):
                return
            self._pending = False
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
        if self._task.cancel(CANCEL_MESSAGE):
            self._cancels += 1


def claim_interrupt() -> bool:
    """Whether the current task's cell was cancelled by an interrupt not yet claimed.

    For code that, like ``asyncio.run()``, answers an interrupt with
    KeyboardInterrupt rather than CancelledError: it calls this as the
    CancelledError passes, and raises KeyboardInterrupt if it returns True.
    The cancellation then no longer counts against the task.
    """
    task = asyncio.current_task()
    for scope in reversed(_active):
        if scope._task is task:
            if scope._cancels <= 0:
                return False
            scope._cancels -= 1
            uncancel = getattr(task, "uncancel", None)  # 3.11+
            cancelling = getattr(task, "cancelling", None)
            if uncancel is not None and cancelling is not None and cancelling():
                uncancel()
            return True
    return False
