"""The portal switching engine.

A :class:`Portal` stands where an event loop expects a coroutine. It runs the
code it wraps (a coroutine, any awaitable, or a plain function) in a *worker*
greenlet, and passes every event-loop trap that code produces out to the
*driver*, the greenlet that is stepping the portal (normally the event loop's).
Because the wrapped code runs in its own greenlet, synchronous functions it
calls can suspend the whole stack with :func:`await_`: ``await_`` steps the
awaitable right there, in the worker, and switches each trap out to the driver
directly. There is no message to decode on the way, so one trap costs one
greenlet switch round trip in each direction, and nothing is allocated for it.

Workers are reused through a small per-thread pool, because starting a greenlet
is far more expensive than switching to one (CPython 3.11+ allocates a frame
stack per greenlet).

This module knows nothing about asyncio or Trio: a loop integration (see
:class:`greenback.lowlevel.LoopIntegration`) decides where a Portal goes; the
engine only switches.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import Any, Awaitable, Callable, Generator, Optional, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

from . import _errors
from ._loops import current_integration
from ._native import as_exception, await_iterator, chain_thrown, close_quietly, has_started
from ._tracebacks import ENGINE_CODES, PORTAL_CODES, SWITCH_CODES, strip_engine_frames, thrown_in

T = TypeVar("T")

# What a worker switches to its driver when the job it ran has finished; the
# job's outcome is then on the Portal. A trap is never this object.
_DONE: Any = type("_JobDone", (), {"__repr__": lambda self: "<greenback job done>"})()
# The state of a portal whose worker has not been started (see Portal._steps).
_UNSTARTED: Any = object()

# -- workers, parking and the pool --------------------------------------------

# Parking, and why a parked worker holds nothing of its task
# ------------------------------------------------------------
# A worker *parks* when it switches a trap out to its driver (in _step,
# await_ or _await_nested) and waits to be stepped again. To Python's garbage
# collector a parked greenlet is a root: greenlet keeps every started,
# unfinished greenlet alive and does not show the collector what its frames
# reference. So whatever a parked worker's frames (or attributes) reference
# can never be collected, and since an awaited future refers back to its task
# (through its callbacks), a task dropped while its portal was parked (its
# loop closed, say) would be kept alive forever: its finally blocks would
# never run and the worker would leak. That is how greenback 1.3.0 behaves.
#
# So while parked, no frame of ours holds the portal, the body, the
# awaitable being stepped or the trap, and the worker's `_greenback_portal`
# is None: the trap is handed over in Portal._trap, the awaitable waits in
# Portal._awaiting, and whoever resumes the worker (Portal.send, throw,
# _steps, detach_from) first puts the portal back on `_greenback_portal`.
# The task then refers to its portal and the portal to everything else, all
# visible to the collector, which finds the whole cycle unreachable and
# finalizes it: TaskPortal.__del__ (or, for an awaited portal, the generator
# stepping it) closes the portal: every finally block runs, as when a native
# coroutine is collected, and the worker goes back to the pool.
# (Frames of the user's sync code are not ours: a sync frame that keeps the
# awaitable in a variable, or, before Python 3.11, whose call to await_ is in
# progress (the caller's stack holds the argument), still pins it.)
#
# On PyPy none of this is needed, and all of it is harmless: its collector
# sees into suspended greenlets (continulets), so an unreachable parked
# worker is garbage like any other. But PyPy's greenlet throws nothing into a
# greenlet it frees (no GreenletExit: the worker's own finally blocks never
# run), so there too it is TaskPortal.__del__ (or the generator stepping an
# awaited portal) that closes the body, and the body's cleanup runs. PyPy
# does not close a suspended native coroutine it collects; a portal's body
# it does.

# Idle workers kept per thread. A worker costs about one C stack slice plus a
# frame; past this many, the driver lets go of a worker whose job is done,
# and the worker ends (greenlet throws GreenletExit into it as it is freed;
# on PyPy it is simply freed, with nothing left to run in it).
POOL_LIMIT = 64


class _Worker(greenlet):
    """A greenlet that runs portal jobs one after another (see :func:`_serve`)."""

    # The portal this worker is serving right now; None while idle, and
    # while parked (see "Parking" above). A slot: it is read and written on
    # every trap, and a slot is three times as fast as the instance dict.
    # _greenback_parent: the greenlet's real parent, kept here because only
    # the engine sets it, and checking a slot when a worker is leased is
    # cheaper than greenlet's descriptor (which a bridged worker overrides).
    __slots__ = ("_greenback_portal", "_greenback_parent")

    def __init__(self, run: Any, parent: Any) -> None:
        super().__init__(run, parent)
        self._greenback_portal: Optional["Portal"] = None
        self._greenback_parent: greenlet = parent


# The class of new workers; greenback._bridges swaps in a subclass that also
# speaks another library's greenlet protocol.
_worker_class: Any = _Worker

# PyPy brings its own greenlet module: pure Python on top of PyPy's
# continulets, not the greenlet distribution. Where it behaves differently,
# the engine picks its way once, here at import, so that CPython's paths test
# nothing per call. (See each use of _PYPY.)
_PYPY = sys.implementation.name == "pypy"

def _get_parent_on_pypy(gr: greenlet) -> Optional[greenlet]:
    return gr.__dict__["parent"]  # type: ignore[no-any-return]


def _set_parent_on_pypy(gr: greenlet, parent: greenlet) -> None:
    # PyPy's greenlet keeps `parent` as a plain instance attribute (so a
    # bridged worker's class property hides it), and accepts any value: a
    # parent chain that loops back would make a finishing greenlet switch
    # around that loop forever. Refuse that as greenlet 3 does.
    if not isinstance(parent, greenlet):
        raise TypeError("parent must be a greenlet")
    link: Optional[greenlet] = parent
    while link is not None:
        if link is gr:
            raise ValueError("cyclic parent chain")
        link = link.__dict__["parent"]
    gr.__dict__["parent"] = parent


# A greenlet's real parent, whatever a bridged worker's `parent` property says.
_get_parent: Callable[[greenlet], Optional[greenlet]]
_set_parent: Callable[[greenlet, greenlet], None]
if _PYPY:
    _get_parent, _set_parent = _get_parent_on_pypy, _set_parent_on_pypy
else:
    _parent_descriptor: Any = greenlet.__dict__["parent"]
    _get_parent = _parent_descriptor.__get__
    _set_parent = _parent_descriptor.__set__


def reparent(worker: Any, parent: greenlet) -> None:
    """Set a worker's parent greenlet (the only way the engine's code does)."""
    _set_parent(worker, parent)  # ValueError if that would make a cycle
    worker._greenback_parent = parent


def set_worker_class(cls: type) -> None:
    """Make new portals use workers of *cls* (a subclass of _Worker)."""
    global _worker_class
    if not (isinstance(cls, type) and issubclass(cls, _Worker)):
        raise TypeError("worker classes must subclass greenback._engine._Worker")
    _worker_class = cls


# A greenlet's stack lives below the point where it first started, and the
# pool lets a worker started under one driver serve others. Before Python 3.11
# every Python call nests a C call, so a driver that is deeper (in Python
# frames) than where a worker started overlaps that worker's stack, and
# greenlet copies the overlap out and back on every switch. So on those
# versions workers start this many calls deeper than the driver that makes
# them. (From 3.11 on, Python-to-Python calls no longer nest in C.) The
# price: code in such a worker has that many frames less recursion headroom.
# PyPy's interpreter nests a C call per Python call whatever its Python
# version, and its continulets save and restore overlapping stack the same
# lazy way greenlet does, so there workers start deep too.
_START_DEEP = 64 if sys.version_info < (3, 11) or _PYPY else 0


def _start_deep(worker: Any, job: Optional[list[Any]], depth: int) -> Any:
    if depth:
        return _start_deep(worker, job, depth - 1)
    return worker.switch() if job is None else worker.switch(job)


def _adopt(worker: Any, driver: greenlet, idle: list[Any]) -> Any:
    """A pooled worker that can serve *driver*: *worker* (just popped from
    *idle*) or the next one that can, or None."""
    while True:
        if type(worker) is _worker_class:  # else made before a bridge was installed: let it go
            if worker._greenback_parent is driver:
                return worker
            try:
                reparent(worker, driver)
                return worker
            except ValueError:  # the driver descends from this worker
                pass
        if not idle:
            return None
        worker = idle.pop()


_CoroutineType = types.CoroutineType

# sys.exception() (3.11+) is sys.exc_info()[1] without building a tuple.
_handled_exception: Callable[[], Optional[BaseException]] = getattr(sys, "exception", None) or (
    lambda: sys.exc_info()[1]
)


class _ThreadPool(threading.local):
    def __init__(self) -> None:
        self.idle: list[_Worker] = []


_pools = _ThreadPool()


# -- the portal: what the loop steps ------------------------------------------


class Portal:
    """A coroutine-shaped object that runs its body in a worker greenlet.

    It implements the coroutine protocol (``send``, ``throw``, ``close``) so it
    can replace a task's coroutine, and ``__await__`` so a coroutine can await
    it; both step the body the same way. A portal that replaces a task's
    coroutine must come from :func:`make_task_portal` (it closes itself if
    dropped while suspended); one that is awaited is closed, if dropped while
    suspended, by the generator ``__await__`` returned.
    """

    __slots__ = (
        "_body",
        "_call",
        "_worker",
        "_resume",
        "_driver",
        "_context",
        "_result",
        "_error",
        "_finished",
        "_trap",
        "_awaiting",
        "_idle",
        "integration",
        "__weakref__",
    )

    # For a coroutine job, _body is something with send() and throw(): a
    # coroutine, or the iterator an awaitable's __await__ returned. For a
    # function job, _body is the function and _call its (args, kwargs).
    _body: Any
    _call: Optional[tuple[Any, Any]]
    # The greenlet to switch into on the next step: the worker, or a greenlet
    # below it that called await_ (another library's greenlet). None until
    # the first step, and again once finished.
    _resume: Optional[greenlet]
    _finished: bool
    # The loop integration that installed this portal, if any.
    integration: Any
    # The slots below are first written by _begin() (or, for _trap, _result
    # and _error, by the worker before the driver reads them): a new portal
    # pays for five stores, not twelve.
    _worker: Optional[_Worker]
    # The greenlet that last stepped this portal, where traps go back to.
    # Usually the event loop's, but not always: an eager asyncio task takes
    # its first step inside whichever task created it.
    _driver: Optional[greenlet]
    # The contextvars.Context last given to the greenlet we resume.
    _context: Any
    # How the job ended (written by the worker before it reports _DONE).
    _result: Any
    _error: Optional[BaseException]
    # The trap a parked worker hands out, and the awaitable it is stepping
    # (see "Parking" above).
    _trap: Any
    _awaiting: Any
    # This thread's pool of idle workers, where the worker goes back when
    # the job is done (saves looking the thread-local up again).
    _idle: Any  # list[_Worker], or None once finished

    def __init__(self, body: Any, call: Optional[tuple[Any, Any]] = None) -> None:
        self._body = body
        self._call = call
        self._resume = None
        self._finished = False
        self.integration = None

    # -- stepping: send() is the per-trap path for a task's portal -----------

    def send(self, value: Any = None) -> Any:
        target = self._resume
        if target is None:
            state = self._begin(value)
        else:
            # The task's context follows each step (Trio lets a task replace
            # its context); writing it only when it changed saves a setattr.
            # twin(resume): _steps repeats these lines, as a generator's step
            # is cheaper than a method call (tests/greenback-core/test_twins.py).
            driver = getcurrent()
            self._driver = driver
            context = driver.gr_context
            if context is not self._context:
                target.gr_context = self._context = context
            self._worker._greenback_portal = self  # type: ignore[union-attr] # unpark
            state = target.switch(value)
            # end twin(resume)
        if state is _DONE:
            raise StopIteration(self._outcome())
        return self._trap

    # A bare `await portal` steps with None through __next__.
    __next__ = send

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if self._throw_in(as_exception(typ, val, tb)) is _DONE:
            raise StopIteration(self._outcome())
        return self._trap

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._steps(_UNSTARTED)

    def _steps(self, state: Any) -> Generator[Any, Any, Any]:
        """The steps of send() and throw() as a generator, from *state* on.

        *state* is what the worker last switched out (_DONE, or anything
        else: parked on a trap), or _UNSTARTED. Resuming a generator is
        cheaper than calling a method, it returns without raising
        StopIteration, and if the awaiting coroutine is dropped, closing the
        generator closes this portal.
        """
        if state is _UNSTARTED:
            state = self._begin(None)
        while state is not _DONE:
            try:
                value = yield self._trap
            except BaseException as exc:  # thrown in by the loop: pass it on
                state = self._throw_in(exc)
            else:
                target = self._resume
                # twin(resume): as in send()
                driver = getcurrent()
                self._driver = driver
                context = driver.gr_context
                if context is not self._context:
                    target.gr_context = self._context = context  # type: ignore[union-attr]
                self._worker._greenback_portal = self  # type: ignore[union-attr] # unpark
                state = target.switch(value)  # type: ignore[union-attr]
                # end twin(resume)
        return self._outcome()

    def close(self) -> None:
        if self._finished:
            return
        try:
            self.throw(GeneratorExit)
        except (GeneratorExit, StopIteration):
            return
        raise RuntimeError("coroutine ignored GeneratorExit")

    async def detach_from(self, integration: Any, task: Any) -> None:
        """Give *task* back the coroutine this portal wraps, and free the worker.

        Must be awaited from that coroutine, running in this portal. After
        one uncancellable checkpoint the coroutine runs directly under the
        loop again, and the worker that ran it returns to the pool.
        """
        integration.set_coro(task, self._body)
        await integration.uncancellable_checkpoint()
        # We are now stepped by the loop itself; the worker still waits in
        # _step for a next step that will never come. Release it.
        worker = self._worker
        if worker is not None and not self._finished:
            self._driver = getcurrent()
            worker._greenback_portal = self  # unpark
            if worker.throw(_Detach) is _DONE:  # the job ended, returning None
                self._outcome()  # which pools the worker
        self._finished = True
        self._worker = self._resume = self._driver = self._context = None
        self._result = self._error = None

    # -- introspection, so tasks show the user's coroutine ------------------

    @property
    def wrapped(self) -> Any:
        """The coroutine or function this portal runs: the user's code."""
        return self._body

    @property
    def worker(self) -> Optional[greenlet]:
        """The greenlet running the wrapped code, from its first step until it finishes.

        While the portal is suspended, the worker's ``gr_frame`` is the
        innermost frame of the wrapped code's stack (for a debugger to walk):
        the frame that awaits, or, if the code is waiting in
        :func:`greenback.await_`, that call's frame, with the synchronous
        frames that called it outside it. None before the first step and
        once finished.
        """
        return self._worker

    @property
    def awaiting(self) -> Any:
        """What a suspended :func:`greenback.await_` in this portal is waiting on.

        The coroutine (or ``__await__`` iterator) that the innermost pending
        ``await_`` call steps, or None if the wrapped code is not waiting in
        ``await_`` (it awaits directly, or runs). Follow its ``cr_await``
        chain for the frames below.
        """
        if self._resume is None or self._finished:
            return None
        return self._awaiting

    @property
    def cr_await(self) -> Any:
        return getattr(self._body, "cr_await", None)

    @property
    def cr_frame(self) -> Any:
        frame = getattr(self._body, "cr_frame", None)
        if _PYPY and frame is not None and frame.f_back is not None and getcurrent() is not self._worker:
            # The body is inside a call, in a worker that is suspended (see
            # _WorkerFrame). In the running worker the frame itself is safe,
            # and code there may compare it by identity (Trio's Ctrl-C
            # handler looks for the task's frame on the stack).
            return _WorkerFrame(frame)
        return frame

    @property
    def cr_running(self) -> bool:
        if self._resume is None:  # not stepped yet: the body may run on its own
            return bool(getattr(self._body, "cr_running", False))
        return getcurrent() is self._resume

    @property
    def cr_suspended(self) -> bool:
        # inspect.getcoroutinestate() reads this on 3.11+ (anyio does, to know
        # whether a task has started). A portal is suspended once its body has
        # started and is not running right now, even while its body's frame
        # is inside a sync call that is waiting in await_.
        if self._finished:
            return False
        if self._resume is not None:
            return getcurrent() is not self._resume
        body = self._body
        return bool(getattr(body, "cr_suspended", None) or getattr(body, "gi_suspended", None))

    @property
    def cr_state(self) -> str:
        # inspect.getcoroutinestate() reads this on 3.15+; before, it derived
        # the state from the three properties above, in this order.
        if self.cr_running:
            return "CORO_RUNNING"
        if self.cr_suspended:
            return "CORO_SUSPENDED"
        if self.cr_frame is None:
            return "CORO_CLOSED"
        return "CORO_CREATED"

    @property
    def cr_code(self) -> Any:
        body = self._body
        return getattr(body, "cr_code", None) or getattr(body, "__code__", None)

    # How asyncio shows a task whose coroutine is a portal (Python 3.9-3.13,
    # C and pure-Python Task alike: asyncio.coroutines._format_coroutine):
    # "coro=<NAME() running at FILE:LINE>", NAME from __qualname__, else
    # __name__ (a portal has no __qualname__: in a class body that name sets
    # the class's own); FILE from cr_code, LINE from cr_frame. As with
    # greenback 1.3.0, whose task coroutine was a function of that name, NAME
    # is "greenback_shim" (logs and tools such as tractor's tests match it),
    # while cr_code and cr_frame are the user's coroutine's, so the location
    # is the line of user code the task is at, not a line of greenback.
    __name__ = "greenback_shim"

    def __repr__(self) -> str:
        return f"<greenback portal running {self._body!r}>"

    # -- once per portal -------------------------------------------------------

    def _begin(self, value: Any) -> Any:
        """First step: lease a worker and start the body in it.

        call_in_portal repeats the lease inline (see why there).
        """
        if self._finished:
            # What a finished native coroutine says when stepped again.
            raise RuntimeError("cannot reuse already awaited coroutine")
        driver = getcurrent()
        portal = self
        # The exception the driver is handling (`handled`), if any. A new
        # greenlet starts with none, but code run through a portal from an
        # except block must see it (sys.exc_info(), a bare `raise`, the
        # __context__ of what it raises), as a called function or an awaited
        # coroutine would.
        # twin(lease): call_in_portal repeats these lines
        idle = _pools.idle
        worker: Any = idle.pop() if idle else None
        if worker is not None and (type(worker) is not _worker_class or worker._greenback_parent is not driver):
            worker = _adopt(worker, driver, idle)
        start = worker is None
        if start:
            worker = _worker_class(_serve, driver)
        worker._greenback_portal = portal
        portal._worker = portal._resume = worker
        portal._driver = driver
        worker.gr_context = portal._context = driver.gr_context
        handled = _handled_exception()
        # end twin(lease)
        self._idle = idle
        # The job as _serve takes it: nothing for the usual first step (send
        # None, with nothing being handled), else [first value, handled].
        # (The portal itself is on _greenback_portal.)
        job = None if value is None and handled is None else [value, handled]
        if start and _START_DEEP:
            try:
                return _start_deep(worker, job, _START_DEEP)
            except RecursionError:  # too deep already: start it here
                pass
        # switch() without an argument is a little cheaper.
        return worker.switch() if job is None else worker.switch(job)

    def _throw_in(self, exc: BaseException) -> Any:
        """Deliver *exc* where the body is suspended; return its next trap."""
        target = self._resume
        if target is None:
            if self._finished:
                # As for a finished native coroutine (only close() is silent),
                # so that a task stepping a closed portal fails the same way.
                raise RuntimeError("cannot reuse already awaited coroutine")
            if self._call is None and has_started(self._body):
                # Not stepped yet, but the body is suspended mid-way: a portal
                # given to a running task (bestow_portal, ensure_portal). The
                # body may catch the error and go on, so it must get it inside
                # a worker, like any later step.
                return self._begin(_Thrown(exc))
            # Never started: no frame of the body is running, so the error is
            # raised at its top right here, as for a native coroutine.
            self._finished = True
            body, self._body = self._body, None
            if self._call is not None:
                raise exc
            try:
                self._trap = body.throw(exc)
                return None
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        driver = getcurrent()
        self._driver = driver
        target.gr_context = self._context = driver.gr_context
        # Unpark. Also what lets TaskPortal.__del__, called by the garbage
        # collector after it has cleared every weak reference, close us.
        self._worker._greenback_portal = self  # type: ignore[union-attr]
        # With its traceback: PyPy's greenlet.throw() given the exception
        # alone raises it afresh, losing where it was raised (as _outcome
        # notes for greenlet's own).
        return target.throw(type(exc), exc, exc.__traceback__)

    def _outcome(self) -> Any:
        """After the worker reported _DONE: return the body's result or raise its error."""
        worker = self._worker
        idle = self._idle
        # twin(pool): call_in_portal repeats these lines
        if worker is not None:  # None: the worker was interrupted, and ended
            worker.gr_context = None  # never pin a finished task's context variables
            if len(idle) < POOL_LIMIT:
                idle.append(worker)
        # end twin(pool)
        self._finished = True
        # Drop what the last step left. _driver and _context, the loop's
        # greenlet and the task's context, live as long as the task anyway.
        self._worker = self._resume = self._trap = self._awaiting = self._idle = worker = None
        error = self._error
        if error is None:
            result, self._result = self._result, None
            return result
        self._error = None
        # Re-raised as is: greenlet.throw() does not chain it to what the
        # driver is handling. Where native `await` would have, it already is:
        # the job ran inside that exception (see _begin).
        # The traceback must be passed explicitly: greenlet.throw() given only
        # the exception raises it with a fresh traceback, which would drop
        # every frame of the code that ran in the portal.
        if _PYPY:
            # PyPy's greenlet.throw() into the current greenlet chains the
            # error to what is being handled, as a raise does: undo that.
            context = error.__context__
            try:
                raise error
            finally:
                error.__context__ = context
        getcurrent().throw(type(error), error, error.__traceback__)
        raise AssertionError("unreachable")  # pragma: no cover


class TaskPortal(Portal):
    """A Portal that replaces a task's coroutine.

    The loop steps it with send() and throw() directly, so nothing else
    closes it if the task is dropped while suspended: its finalizer does, as
    a native coroutine's does (see "Parking"). Awaited portals skip this
    finalizer (a Python-level __del__ costs every portal a call as it is
    freed); the generator stepping them closes them instead.
    """

    __slots__ = ()

    def __del__(self) -> None:
        # A portal dropped while suspended still owes its code the cleanup a
        # native coroutine would get: close() runs every finally block.
        if self._resume is not None and not self._finished:
            try:
                self.close()
            except BaseException:  # noqa: B036 - nothing can be reported from here
                pass


# -- the worker's side: running a job -----------------------------------------


def _serve(first_job: Optional[list[Any]] = None) -> Any:
    """The body of every worker greenlet: run portal jobs until discarded.

    The job's portal is on ``here._greenback_portal``; no local variable here
    refers to it while the job runs, since the job may park (see "Parking").
    A job is [first value, handled exception], or empty (None or (), what
    switch() with no argument gives) for a first step sending None with no
    exception being handled; see Portal._begin.
    """
    job: Any = None
    if first_job:
        # greenlet keeps the arguments a greenlet started with for as long as
        # it lives, and a pooled worker lives on: keep only a copy.
        job = first_job[:]
        first_job.clear()
    del first_job
    here: Any = getcurrent()
    while True:
        reusable = True
        result: Any = None
        error: Optional[BaseException] = None
        try:
            call = here._greenback_portal._call
            if call is not None and not job:
                # The common function job, without _run_job's frame: this is
                # the whole of with_portal_run_sync's work in the worker.
                # (`**{}` would copy the empty dict: skip it.)
                if call[1]:
                    result = here._greenback_portal._body(*call[0], **call[1])
                else:
                    result = here._greenback_portal._body(*call[0])
            else:
                call = None
                result = _run_job(here, job)
        except StopIteration as exc:
            # Only a function job gets here (_step returns a coroutine's
            # StopIteration as its result). As PEP 479 does for generators:
            # escaping, it would read as the portal returning normally.
            body = getattr(here._greenback_portal, "_body", None)
            error = RuntimeError(f"{body!r} raised StopIteration in a greenback portal")
            error.__cause__ = exc
            del body
        except (GreenletExit, KeyboardInterrupt, SystemExit) as exc:
            # Interrupted: this greenlet may have been stopped anywhere, so it
            # does not go back to the pool.
            error = strip_engine_frames(exc)
            reusable = False
        except BaseException as exc:
            error = strip_engine_frames(exc)
        portal: Any = here._greenback_portal
        if portal is None:
            # Killed by greenlet while parked: its portal was freed without
            # being closed, so there is nobody to report to.
            return None
        portal._result = result
        portal._error = error
        driver: Any = portal._driver
        if not reusable:
            portal._worker = None  # so that the driver does not pool us
        portal = job = result = error = call = None
        here._greenback_portal = None
        if reusable:
            # Wait for the next job; the driver puts us back in the pool (see
            # Portal._outcome). No frame of an idle worker may refer to the worker
            # itself or to the pool: a suspended greenlet's frames are
            # invisible to the garbage collector, so the pool and its workers
            # would outlive the thread that owns them. Dropped from the pool,
            # or with its thread gone, an idle worker is freed like any
            # unreferenced greenlet.
            del here
            job = driver.switch(_DONE)  # its portal is on _greenback_portal
            here = getcurrent()
            continue
        if here._greenback_parent is not driver:
            reparent(here, driver)
        del here
        return _DONE  # a finished greenlet returns to its parent: the driver


def _run_job(here: Any, job: Any) -> Any:
    """Run the job of *here*'s portal; *job* is empty or [first value, handled
    exception], emptied so that no caller's frame keeps them."""
    handled = job.pop() if job else None
    if handled is not None:
        # Run the job while handling what the driver was handling (see
        # Portal._begin). Raising it adds our frame to its traceback: undo that.
        tb = handled.__traceback__
        try:
            raise handled
        except BaseException:
            handled.__traceback__ = tb
            del handled, tb
            job.append(None)
            return _run_job(here, job)
    call = here._greenback_portal._call
    if call is None:
        return _step(here, job)
    del job
    return here._greenback_portal._body(*call[0], **call[1])


def _step(here: Any, job: Any) -> Any:
    """Step the coroutine-like body of *here*'s portal to completion, passing its traps out.

    *job* is empty (send None first) or holds the first value to send (or a
    _Thrown); we empty it, so that no caller's frame keeps it.
    """
    value: Any = job.pop() if job else None
    del job
    try:
        if value.__class__ is _Thrown:
            exc = value.exc
            value = None
            trap = here._greenback_portal._body.throw(exc)
            del exc
        else:
            trap = here._greenback_portal._body.send(value)
        while True:
            # Park (see above): hand the trap over on the portal and keep no
            # reference to it, the portal or the body until resumed.
            portal: Any = here._greenback_portal
            portal._trap = trap
            driver = portal._driver
            here._greenback_portal = portal = trap = value = None
            try:
                value = driver.switch()  # no argument: a little cheaper
            except BaseException as exc:
                thrown = exc
            else:
                trap = here._greenback_portal._body.send(value)  # pyright: ignore[reportAttributeAccessIssue]  (resumed: unparked)
                continue
            if thrown.__class__ is _Detach:
                return None  # the body now runs without us; see Portal.detach_from
            if here._greenback_portal is None:
                raise thrown  # killed by greenlet (see _serve): no body to throw into
            # Thrown outside the except block, so the coroutine's own errors
            # do not get this one as a spurious __context__.
            trap = here._greenback_portal._body.throw(thrown_in(thrown))
            del thrown
    except StopIteration as stop:
        return stop.value


class _Detach(BaseException):
    """Thrown into a worker whose coroutine a task has taken back."""


class _Thrown:
    """A first step that throws *exc* into the body instead of sending a value."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


ENGINE_CODES.update({_serve.__code__, _run_job.__code__, _step.__code__})


class _WorkerFrame:
    """PyPy: a frame of a portal's body as seen from outside its worker.

    While a PyPy greenlet is suspended, its frames' ``f_back`` chain does not
    end: the frame it started in links back to the frame it switched out
    from, a loop (that is how continulets keep a suspended stack). Whatever
    walks ``f_back`` from a body suspended in await_ (asyncio's
    Task.get_stack() and print_stack(), debuggers) would never stop. This
    view of the frame reads as the frame itself, but its chain ends where
    the worker began, at _serve, as it does on CPython.
    """

    __slots__ = ("_frame",)

    def __init__(self, frame: types.FrameType) -> None:
        self._frame = frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._frame, name)

    @property
    def f_back(self) -> Optional[_WorkerFrame]:
        frame = self._frame
        back = frame.f_back
        if back is None or frame.f_code is _serve.__code__:
            return None
        return _WorkerFrame(back)

    def __repr__(self) -> str:
        return repr(self._frame)


# -- with_portal_run_sync's fast path -----------------------------------------


# What call_in_portal returns when the function parked in await_.
PARKED: Any = type("_Parked", (), {"__repr__": lambda self: "<greenback call parked>"})()

# A Portal not yet initialized: call_in_portal's caller makes one as
# blank_portal(Portal), without an __init__ frame.
blank_portal = object.__new__


def call_in_portal(portal: Portal, fn: Any, call: tuple[Any, Any]) -> Any:
    """Run ``fn(*call[0], **call[1])`` in *portal*, a blank_portal(Portal):
    the heart of with_portal_run_sync.

    Returns what it returned or raises what it raised, or, if it parked in
    await_, returns PARKED: await ``await_steps(portal, None)`` for the rest.
    This is Portal(), _begin() and _outcome() in one frame, for the
    commonest way to make a portal: a call that awaits nothing costs no
    generator, no trap and three frames fewer. Where a portal is running
    already, this is just the call, and *portal* stays unused.

    The lease (and, on success, the return to the pool) repeats _begin's
    (and _outcome's) on purpose: calling a shared helper instead measured
    0.17-0.20 us more per call on 3.13 (about 9% of the whole of
    with_portal_run_sync). The copies are marked ``twin(...)``, and
    tests/greenback-core/test_twins.py fails when they differ.
    """
    driver = getcurrent()
    # A thread's root greenlet (where event loops usually run) is never in a
    # portal: skip the search for one there.
    if driver.parent is not None and current_portal() is not None:
        return fn(*call[0], **call[1])
    portal._body = fn
    portal._call = call
    portal._finished = False
    portal.integration = None
    # twin(lease): as in Portal._begin
    idle = _pools.idle
    worker: Any = idle.pop() if idle else None
    if worker is not None and (type(worker) is not _worker_class or worker._greenback_parent is not driver):
        worker = _adopt(worker, driver, idle)
    start = worker is None
    if start:
        worker = _worker_class(_serve, driver)
    worker._greenback_portal = portal
    portal._worker = portal._resume = worker
    portal._driver = driver
    worker.gr_context = portal._context = driver.gr_context
    handled = _handled_exception()
    # end twin(lease)
    if start and _START_DEEP:
        try:
            state = _start_deep(worker, None if handled is None else [None, handled], _START_DEEP)
        except RecursionError:  # too deep already: start it here
            state = worker.switch() if handled is None else worker.switch([None, handled])
    else:
        state = worker.switch() if handled is None else worker.switch([None, handled])
    if state is not _DONE:
        portal._idle = idle  # for _outcome, when await_steps gets _DONE
        return PARKED
    if portal._error is not None:
        # Leave no reference to the worker here: the error's traceback holds
        # this frame for as long as anything keeps the traceback whole.
        portal._idle = idle
        worker = None
        return portal._outcome()  # raises it
    # Portal._outcome's success, with the pool already at hand.
    worker = portal._worker
    # twin(pool): as in Portal._outcome
    if worker is not None:  # None: the worker was interrupted, and ended
        worker.gr_context = None  # never pin a finished task's context variables
        if len(idle) < POOL_LIMIT:
            idle.append(worker)
    # end twin(pool)
    portal._finished = True
    portal._worker = portal._resume = worker = None
    return portal._result


# Portal._steps for `await` in a coroutine: with_portal_run_sync begins its
# portal itself (most calls finish right there, with no generator at all) and
# awaits the remaining steps only if the function parked in await_. The same
# code, flagged as a @types.coroutine generator so that `await` takes it.
await_steps: Callable[[Portal, Any], Awaitable[Any]] = types.coroutine(
    types.FunctionType(Portal._steps.__code__, globals(), "await_steps")
)

# The code of the generators that step an awaited portal (two code objects:
# types.coroutine gives await_steps a copy with its own flags).
_STEPS_CODES = frozenset((Portal._steps.__code__, await_steps.__code__))

# Frames a portal adds when it re-raises its body's error in whoever awaited it.
PORTAL_CODES.update(
    f.__code__
    for f in (
        Portal._steps,
        await_steps,
        call_in_portal,
        Portal._outcome,
        Portal._throw_in,
        Portal.send,
        Portal.throw,
    )
)


# -- await_ -------------------------------------------------------------------


def await_(aw: Awaitable[T]) -> T:
    """Run ``await aw`` from synchronous code, through the current task's portal.

    ``greenback.await_(foo())`` is equivalent to ``await foo()``, and can be
    written in a plain function: any function called, directly or not, by
    code running in a greenback portal (see :func:`ensure_portal`,
    :func:`with_portal_run`, :func:`with_portal_run_sync`,
    :func:`bestow_portal`). It returns what the await would return, and raises
    what it would raise.
    """
    __tracebackhide__ = True  # IPython and pytest leave this frame out, as they would an await
    try:
        here: Any = getcurrent()
    except RuntimeError:  # at exit: "greenlet is being finalized" (or the recursion limit)
        if sys.is_finalizing():
            close_quietly(aw)
            raise _errors.no_portal_error(_bestowed_unstarted) from None
        raise
    try:
        portal: Any = here._greenback_portal
    except AttributeError:  # not one of our workers
        portal = None
    if portal is None:
        # Handed over in a list the callee empties, so that this frame keeps
        # no reference to it if it parks below (see "Parking").
        box = [aw]
        del aw
        return _await_elsewhere(here, box)  # type: ignore[no-any-return]
    if here.gr_context is not portal._context and _runs_another_task(portal, here):
        close_quietly(aw)
        raise _errors.no_portal_error(_bestowed_unstarted)
    portal = None  # see "Parking"

    # Step the awaitable right here, so its frames sit below the caller's in
    # tracebacks; each trap goes straight out to the portal's driver.
    it: Any
    if type(aw) is _CoroutineType:
        it = aw
    else:
        it = await_iterator(aw)
    del aw  # see "Parking": from here on only `it` refers to it
    try:
        trap = it.send(None)
        while True:
            # Park (see above): the trap and the awaitable go on the portal,
            # and no local refers to them or to the portal until resumed.
            portal = here._greenback_portal
            portal._trap = trap
            portal._awaiting = it
            driver = portal._driver
            here._greenback_portal = portal = trap = it = value = None
            try:
                value = driver.switch()  # no argument: a little cheaper
            except BaseException as exc:
                thrown = exc
            else:
                it = here._greenback_portal._awaiting  # pyright: ignore[reportAttributeAccessIssue]  (resumed: unparked)
                trap = it.send(value)
                continue
            if here._greenback_portal is None:
                raise thrown  # killed by greenlet (see _serve): nothing to throw into
            it = here._greenback_portal._awaiting
            # Thrown outside the except block, so the coroutine's own errors
            # do not get this one as a spurious __context__.
            handled = sys.exc_info()[1]
            try:
                trap = it.throw(thrown_in(thrown))
            except StopIteration:
                raise
            except BaseException as error:
                if handled is not None:
                    chain_thrown(error, handled)
                raise
            del thrown, handled
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# -- await_ elsewhere: greenlets below a worker, and fallbacks -------------


# Hooks that await_ tries where no portal is reachable (greenlet bridges, see
# greenback._bridges): each gets the current greenlet and the awaitable, and
# returns NOT_HANDLED unless it awaited it.
NOT_HANDLED: Any = type("_NotHandled", (), {"__repr__": lambda self: "greenback.lowlevel.NOT_HANDLED"})()
_fallbacks: list[Callable[[greenlet, Any], Any]] = []


def add_await_fallback(fallback: Callable[[greenlet, Any], Any]) -> None:
    """Have :func:`greenback.await_` try *fallback* where no portal is reachable.

    ``fallback(current_greenlet, awaitable)`` either awaits *awaitable* its
    own way and returns the result (or raises), or returns
    :data:`NOT_HANDLED` without touching it. Fallbacks are tried in the order
    they were added, only where ``await_`` would otherwise raise its "no
    portal" error, so they cost nothing on the usual path. Adding one twice
    changes nothing.
    """
    if fallback not in _fallbacks:
        _fallbacks.append(fallback)


def remove_await_fallback(fallback: Callable[[greenlet, Any], Any]) -> None:
    """Undo :func:`add_await_fallback` (no-op if *fallback* was not added)."""
    if fallback in _fallbacks:
        _fallbacks.remove(fallback)


def _await_elsewhere(here: greenlet, box: list[Any]) -> Any:
    """await_ outside a worker: below one (another library's greenlet), or no portal.

    *box* holds the awaitable; whoever awaits it empties the box.
    """
    gr = here.parent
    while gr is not None:
        portal = getattr(gr, "_greenback_portal", None)
        if portal is not None:
            if _runs_another_task(portal, here):
                break
            portal = None  # see "Parking": _await_nested finds it on the worker
            return _await_nested(gr, here, box)
        gr = gr.parent
    aw = box.pop()
    for fallback in _fallbacks:
        result = fallback(here, aw)
        if result is not NOT_HANDLED:
            return result
    close_quietly(aw)
    raise _errors.no_portal_error(_bestowed_unstarted)


def _await_nested(worker: Any, here: greenlet, box: list[Any]) -> Any:
    """await_ from a greenlet that runs below a portal's worker, *worker*.

    The traps go out to the driver as usual, but the next step must come back
    here rather than to the worker, which is suspended in our parent chain.
    While parked, the worker's _greenback_portal is None, and no frame of
    ours, this one's callers included, refers to the awaitable (taken out of
    *box*) or the portal (see "Parking").
    """
    aw = box.pop()
    it = aw if type(aw) is types.CoroutineType else await_iterator(aw)
    aw = None
    portal: Any = worker._greenback_portal
    outer = portal._resume
    portal = None
    try:
        trap = it.send(None)
        while True:
            portal = worker._greenback_portal
            portal._resume = here
            portal._context = None  # make the next step hand its context here
            portal._trap = trap
            portal._awaiting = it
            driver: Any = portal._driver
            worker._greenback_portal = portal = trap = it = value = None
            thrown: Optional[BaseException] = None
            try:
                value = driver.switch()  # no argument: a little cheaper
            except BaseException as exc:
                thrown = exc
            portal = worker._greenback_portal
            if portal is None:  # killed by greenlet (see _serve)
                raise thrown if thrown is not None else GreenletExit()
            portal._resume = outer
            portal._context = None
            it = portal._awaiting
            portal = None
            if thrown is None:
                trap = it.send(value)
            else:
                trap = it.throw(thrown_in(thrown))
                thrown = None
    except StopIteration as stop:
        return stop.value
    finally:
        portal = worker._greenback_portal
        if portal is not None:
            portal._resume = outer
            portal._context = None


# The frames where a parked worker gets what the driver throws in (see
# greenback._tracebacks.thrown_in).
SWITCH_CODES.update((await_.__code__, _step.__code__, _await_nested.__code__) + tuple(_STEPS_CODES))


# -- finding portals ----------------------------------------------------------


def current_portal() -> Optional[Portal]:
    """Return the portal whose code is running now, or None.

    That is the portal whose worker greenlet is the current greenlet, or an
    ancestor of it (another library's greenlet started inside the portal),
    provided the code running is the portal's own task's (an eager asyncio
    task's first step, run inside its creator's portal, is not).
    """
    here = getcurrent()
    gr: Optional[greenlet] = here
    while gr is not None:
        portal = getattr(gr, "_greenback_portal", None)
        if portal is not None:
            if _runs_another_task(portal, here):
                return None
            return portal  # type: ignore[no-any-return]
        gr = gr.parent
    return None


def _runs_another_task(portal: Portal, here: greenlet) -> bool:
    """Whether *here*, a portal's worker or a greenlet below it, is running
    code of a task other than the one stepping the portal.

    That happens with eager asyncio tasks (Python 3.12+): one created by code
    running in a portal takes its first step inside ``create_task()``, in this
    very greenlet, as asyncio's current task. Awaiting through the portal
    there would hand the new task's trap to the creating task's step (asyncio
    then fails with "Leaving task ... does not match the current task", and
    the tasks hang), and ensure_portal() would think the new task has a portal.

    Every task step runs in the task's own contextvars.Context, so while the
    current context is the one the portal is stepped in, this is the portal's
    task: a single comparison on the usual path. Only otherwise (code inside
    ``ctx.run()``, a greenlet with a context of its own, an eager task) do we
    ask the loop which task is running, and compare its context.
    """
    context = here.gr_context
    if context is portal._context:
        return False
    driver = portal._driver
    if driver is None:
        return False
    stepped_in = driver.gr_context  # the driver is suspended in the portal's step
    if context is stepped_in:
        return False
    integration = portal.integration
    try:
        if integration is None:
            integration = current_integration()
        task = integration.current_task()
        task_context = integration.task_context(task) if task is not None else None
    except Exception:
        return False  # no loop we know of: nothing to tell the tasks apart by
    return task_context is not None and task_context is not stepped_in


def find_portal_in(coro: Any) -> Optional[Portal]:
    """Return the :class:`Portal` that is *coro*, or that *coro* awaits, directly or not.

    Follows ``cr_await`` (and ``gi_yieldfrom``) from *coro*; None if no
    portal is on the way.
    """
    seen = 0
    while coro is not None and seen < 10000:
        if isinstance(coro, Portal):
            return coro
        stepped = stepped_portal(coro)
        if stepped is not None:
            return stepped
        seen += 1
        nxt = getattr(coro, "cr_await", None)
        if nxt is None:
            nxt = getattr(coro, "gi_yieldfrom", None)
        coro = nxt
    return None


def stepped_portal(gen: Any) -> Optional[Portal]:
    """The portal that *gen*, a suspended generator of ours, steps: awaiting a
    portal (``await portal``, with_portal_run, with_portal_run_sync) awaits
    such a generator, which holds the portal as ``self``. None for any other
    object."""
    if getattr(gen, "gi_code", None) not in _STEPS_CODES:
        return None
    frame = gen.gi_frame
    portal = frame.f_locals.get("self") if frame is not None else None
    return portal if isinstance(portal, Portal) else None


def _bestowed_unstarted(coro: Any) -> bool:
    """Whether *coro* is a portal given to a running task that has not yet stepped it."""
    return isinstance(coro, Portal) and coro._resume is None and not coro._finished


def make_task_portal(coro: Any, integration: Any) -> Portal:
    """Return a portal wrapping *coro*, to be installed as a task's coroutine.

    A task factory (or anything else that gives tasks portals) passes the
    result to :meth:`LoopIntegration.set_coro`, or creates the task with it,
    so that the task steps the portal instead of *coro*. *integration* is the
    :class:`LoopIntegration` of the task's loop.
    Unlike a portal that is awaited, this one closes itself (running the
    wrapped code's ``finally`` blocks) if it is dropped while suspended, as a
    native coroutine does.
    """
    portal = TaskPortal(coro)
    portal.integration = integration
    return portal


def is_portal_worker(gr: Any) -> bool:
    """Return whether *gr* is a worker greenlet, one that runs portals' code.

    Workers are pooled: one serves many portals over its life.
    """
    return isinstance(gr, _Worker)


def make_awaitable_portal(aw: Any) -> Portal:
    """A portal that awaits *aw* (checked like native await) when stepped."""
    if type(aw) is types.CoroutineType:
        return Portal(aw)
    return Portal(await_iterator(aw))


def drain_pool() -> int:
    """Let go of this thread's idle workers (for tests and leak checks)."""
    idle = _pools.idle
    count = len(idle)
    idle.clear()
    return count


def pool_size() -> int:
    """How many idle workers this thread's pool holds."""
    return len(_pools.idle)

