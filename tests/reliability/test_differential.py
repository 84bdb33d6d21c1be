"""Differential tests: random programs, run with native ``await`` and through portals.

Hypothesis generates a program: a tree of *layers*, each a function whose
body is a list of steps (call a child layer, spawn a child task running one,
checkpoint, set or read a context variable, raise). Every layer is marked
``async`` or ``sync``. The program is then run twice:

* **native**: every layer is an ``async def`` and every call is ``await``;
* **bridged**: ``sync`` layers are plain functions. A sync layer calls an
  async one with ``greenback.await_(child())``; an async layer reaches a sync
  one through a portal opened by one of the APIs (chosen per call site):
  ``ensure_portal()`` then a plain call, ``with_portal_run_sync(child)``,
  ``with_portal_run(wrapper)``, or a child task given a portal by
  ``bestow_portal(task)``.

``ensure_portal()`` is a checkpoint, so where the bridged program calls it the
native one awaits a plain checkpoint. Cancellation: the run is cancelled just
before its N-th checkpoint (N drawn too). Each run writes a trace (results,
exception types, messages and ``__context__``, ``finally`` blocks with the
exception passing through them, context variable values, the run's outcome);
the two traces must be identical. Under asyncio and under Trio.

The number of examples comes from the hypothesis profile (see
``_support.py``): a few derandomized ones in the normal suite, many random
ones with ``GREENBACK_HYPOTHESIS_PROFILE=nightly``.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, note, settings, strategies as st

import greenback
import greenback_reliability_support as support

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

MAX_DEPTH = 4
PORTAL_APIS = ("ensure_portal", "with_portal_run_sync", "with_portal_run")
CATCHABLE = ("ValueError", "KeyError", "Exception", "ExceptionGroup")


# -- the programs ------------------------------------------------------------------


@dataclass
class Step:
    op: str  # call, spawn, checkpoint, set, get, raise
    child: Optional["Layer"] = None
    api: str = ""  # call/spawn into a sync layer from an async one: how the portal is opened
    catch: Optional[str] = None  # call/spawn: exception class caught around it
    guard: bool = False  # call/spawn: wrapped in try/finally
    handling: bool = False  # call/spawn: made while handling an exception (in an except block)
    arg: int = 0  # set: the value; raise: the message number
    error: str = "ValueError"  # raise: the class

    def __repr__(self) -> str:
        if self.op in ("call", "spawn"):
            extra = f", api={self.api!r}" if self.api else ""
            extra += f", catch={self.catch!r}" if self.catch else ""
            extra += ", guard=True" if self.guard else ""
            extra += ", handling=True" if self.handling else ""
            return f"Step({self.op!r}, {self.child!r}{extra})"
        if self.op == "set":
            return f"Step('set', arg={self.arg})"
        if self.op == "raise":
            return f"Step('raise', error={self.error!r}, arg={self.arg})"
        return f"Step({self.op!r})"


@dataclass
class Layer:
    kind: str  # "async" or "sync"
    steps: List[Step] = field(default_factory=list)
    ident: int = 0

    def __repr__(self) -> str:
        return f"Layer({self.kind!r}, {self.steps!r})"


@dataclass
class Program:
    root: Layer
    root_api: str  # how the root task opens a portal when the root layer is sync
    cancel_at: Optional[int]  # cancel the run just before this checkpoint (1-based)

    def __post_init__(self) -> None:
        counter = iter(range(1, 10_000))

        def number(layer: Layer) -> None:
            layer.ident = next(counter)
            for step in layer.steps:
                if step.child is not None:
                    number(step.child)

        number(self.root)


def _steps(depth: int) -> st.SearchStrategy[List[Step]]:
    simple = st.one_of(
        st.just(Step("checkpoint")),
        st.just(Step("checkpoint")),
        st.builds(Step, op=st.just("set"), arg=st.integers(1, 99)),
        st.just(Step("get")),
        st.just(Step("exc_info")),
        st.builds(
            Step, op=st.just("raise"), arg=st.integers(1, 99), error=st.sampled_from(["ValueError", "KeyError"])
        ),
    )
    if depth >= MAX_DEPTH:
        return st.lists(simple, max_size=3)
    nested = st.builds(
        Step,
        op=st.sampled_from(["call", "call", "call", "spawn"]),
        child=st.deferred(lambda: _layers(depth + 1)),
        api=st.sampled_from(PORTAL_APIS + ("bestow_portal",)),
        catch=st.sampled_from((None,) + CATCHABLE + ("ValueError", "Exception")),
        guard=st.booleans(),
        handling=st.booleans(),
    )
    return st.lists(st.one_of(simple, nested, nested), min_size=1 if depth == 1 else 0, max_size=4)


def _layers(depth: int) -> st.SearchStrategy[Layer]:
    return st.builds(Layer, kind=st.sampled_from(["async", "sync"]), steps=_steps(depth))


programs = st.builds(
    Program,
    root=_layers(1),
    root_api=st.sampled_from(PORTAL_APIS + ("bestow_portal",)),
    cancel_at=st.none() | st.integers(1, 8),
)


# -- running them ------------------------------------------------------------------

var: contextvars.ContextVar[str] = contextvars.ContextVar("greenback_differential", default="unset")


class Loop:
    """What the interpreter needs from the event loop under test.

    *backend* is the test's ``loop`` fixture (tests/conftest.py), which starts
    the loop.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def run(self, main: Callable[[], Any]) -> None:
        raise NotImplementedError

    async def checkpoint(self) -> None:
        raise NotImplementedError

    def cancel_root(self) -> None:
        raise NotImplementedError

    async def spawn_and_wait(self, make_body: Callable[[], Any], bestow: bool) -> Any:
        raise NotImplementedError

    def outcome(self, exc: Optional[BaseException]) -> str:
        raise NotImplementedError


class AsyncioLoop(Loop):
    def run(self, main: Callable[[], Any]) -> None:
        async def root() -> None:
            self.root_task = asyncio.current_task()
            await main()

        self.backend.run(root)

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    def cancel_root(self) -> None:
        self.root_task.cancel()

    async def spawn_and_wait(self, make_body: Callable[[], Any], bestow: bool) -> Any:
        task = asyncio.get_running_loop().create_task(make_body())
        if bestow:
            greenback.bestow_portal(task)
        # Not `await task`: that throws the task's error into this coroutine,
        # and CPython does not link the exception state of coroutines that a
        # throw passes through, so natively code below an except block would
        # not see the handled exception (sys.exc_info(), __context__) that it
        # sees when resumed normally. Resumed normally, by asyncio.wait(),
        # we re-raise the error afresh. (Cancellation still arrives thrown;
        # see assert_same.)
        try:
            await asyncio.wait([task])
        except BaseException:
            task.cancel()
            await asyncio.wait([task])
            raise
        return task.result()


class TrioLoop(Loop):
    def run(self, main: Callable[[], Any]) -> None:
        import trio

        async def root() -> None:
            with trio.CancelScope() as self.scope:
                await main()

        self.backend.run(root)

    async def checkpoint(self) -> None:
        import trio

        await trio.lowlevel.checkpoint()

    def cancel_root(self) -> None:
        self.scope.cancel()

    async def spawn_and_wait(self, make_body: Callable[[], Any], bestow: bool) -> Any:
        import trio

        box: List[Any] = []

        async def child() -> None:
            box.append(await make_body())

        async with trio.open_nursery() as nursery:
            before = set(nursery.child_tasks)
            nursery.start_soon(child)
            if bestow:
                (task,) = set(nursery.child_tasks) - before
                greenback.bestow_portal(task)
        return box[0]


def describe(exc: BaseException) -> str:
    """An exception as the trace records it (class, message, and context)."""
    if isinstance(exc, BaseExceptionGroup):
        inner = ",".join(describe(e) for e in exc.exceptions)
        text = f"{type(exc).__name__}[{inner}]"
    else:
        text = f"{type(exc).__name__}({re.sub(' at 0x[0-9a-f]+', '', str(exc))})"
    if exc.__context__ is not None:
        text += f" from-context {type(exc.__context__).__name__}"
    return text


class Interpreter:
    """Runs a Program in one mode ("native" or "bridged") and records its trace."""

    def __init__(self, program: Program, mode: str, loop: Loop) -> None:
        self.program = program
        self.mode = mode
        self.loop = loop
        self.trace: List[str] = []
        self.checkpoints = 0

    def log(self, text: str) -> None:
        self.trace.append(text)

    # -- async layers -----------------------------------------------------------

    async def run_async_layer(self, layer: Layer) -> int:
        self.log(f"enter L{layer.ident}")
        total = layer.ident
        for step in layer.steps:
            if step.op == "checkpoint":
                await self.checkpoint()
            elif step.op in ("call", "spawn"):
                total += await self.guarded_async(layer, step)
            else:
                self.simple(layer, step)
        self.log(f"return L{layer.ident}={total}")
        return total

    async def guarded_async(self, layer: Layer, step: Step) -> int:
        if step.handling:
            try:
                raise LookupError(f"handled in L{layer.ident}")
            except LookupError:
                return await self.guarded_async(layer, Step(**{**vars(step), "handling": False}))
        try:
            try:
                result = await self.invoke_async(layer, step)
                self.log(f"L{layer.ident} got {result}")
                return result
            except BaseException as exc:
                if not self.caught(step, exc):
                    raise
                self.log(f"L{layer.ident} caught {describe(exc)}")
                return 0
        finally:
            if step.guard:
                self.log_finally(layer)

    async def invoke_async(self, caller: Layer, step: Step) -> Any:
        """A call or spawn made by a layer running as a coroutine: an async
        layer, or in the native run any layer."""
        child = step.child
        assert child is not None
        if step.op == "spawn":
            return await self.spawn(child, step.api)
        if child.kind == "async" or caller.kind == "sync":
            # Bridged: await child(), or a sync layer calling a sync one.
            return await self.run_async_layer(child)
        # Into a sync layer: through a portal. bestow_portal only serves
        # child tasks: at a call site it means ensure_portal.
        api = "ensure_portal" if step.api == "bestow_portal" else step.api
        return await self.enter_sync(child, api)

    async def enter_sync(self, child: Layer, api: str) -> int:
        """From async code into sync *child*, opening a portal with *api*
        (bridged), or what the same code does without greenback (native)."""
        if api == "ensure_portal":
            await self.checkpoint(ensure_portal=True)  # a checkpoint in both modes
        if self.mode == "native":
            return await self.run_async_layer(child)
        if api == "ensure_portal" or api == "bestow_portal":  # the portal is there
            return self.run_sync_layer(child)
        if api == "with_portal_run_sync":
            return await greenback.with_portal_run_sync(self.run_sync_layer, child)

        async def wrapper() -> int:
            return self.run_sync_layer(child)

        return await greenback.with_portal_run(wrapper)

    async def spawn(self, child: Layer, api: str) -> Any:
        """Run *child* in a child task and wait for it; a sync child opens its
        portal with *api* (bestow_portal: given by this task)."""

        async def body() -> int:
            if child.kind == "async":
                return await self.run_async_layer(child)
            return await self.enter_sync(child, api)

        bestow = self.mode == "bridged" and child.kind == "sync" and api == "bestow_portal"
        return await self.loop.spawn_and_wait(body, bestow)

    # -- sync layers (bridged mode only) ------------------------------------------

    def run_sync_layer(self, layer: Layer) -> int:
        self.log(f"enter L{layer.ident}")
        total = layer.ident
        for step in layer.steps:
            if step.op == "checkpoint":
                greenback.await_(self.checkpoint())
            elif step.op in ("call", "spawn"):
                total += self.guarded_sync(layer, step)
            else:
                self.simple(layer, step)
        self.log(f"return L{layer.ident}={total}")
        return total

    def guarded_sync(self, layer: Layer, step: Step) -> int:
        if step.handling:
            try:
                raise LookupError(f"handled in L{layer.ident}")
            except LookupError:
                return self.guarded_sync(layer, Step(**{**vars(step), "handling": False}))
        try:
            try:
                result = self.invoke_sync(step)
                self.log(f"L{layer.ident} got {result}")
                return result
            except BaseException as exc:
                if not self.caught(step, exc):
                    raise
                self.log(f"L{layer.ident} caught {describe(exc)}")
                return 0
        finally:
            if step.guard:
                self.log_finally(layer)

    def invoke_sync(self, step: Step) -> Any:
        """A call or spawn from a sync layer (bridged mode)."""
        child = step.child
        assert child is not None
        if step.op == "spawn":
            return greenback.await_(self.spawn(child, step.api))
        if child.kind == "sync":
            return self.run_sync_layer(child)
        return greenback.await_(self.run_async_layer(child))

    # -- shared ---------------------------------------------------------------------

    async def checkpoint(self, ensure_portal: bool = False) -> None:
        self.checkpoints += 1
        if self.checkpoints == self.program.cancel_at:
            self.log(f"cancelling at checkpoint {self.checkpoints}")
            self.loop.cancel_root()
        if ensure_portal and self.mode == "bridged":
            await greenback.ensure_portal()
        else:
            await self.loop.checkpoint()

    def simple(self, layer: Layer, step: Step) -> None:
        if step.op == "set":
            var.set(f"L{layer.ident}:{step.arg}")
        elif step.op == "get":
            self.log(f"L{layer.ident} reads {var.get()}")
        elif step.op == "exc_info":
            exc = sys.exc_info()[1]
            self.log(f"L{layer.ident} handling {describe(exc) if exc is not None else '-'}")
        elif step.op == "raise":
            error = ValueError if step.error == "ValueError" else KeyError
            raise error(f"L{layer.ident}#{step.arg}")
        else:  # pragma: no cover
            raise AssertionError(step.op)

    @staticmethod
    def caught(step: Step, exc: BaseException) -> bool:
        if step.catch is None:
            return False
        if step.catch == "ExceptionGroup":
            return isinstance(exc, BaseExceptionGroup) and isinstance(exc, Exception)
        return isinstance(exc, {"ValueError": ValueError, "KeyError": KeyError, "Exception": Exception}[step.catch])

    def log_finally(self, layer: Layer) -> None:
        exc = sys.exc_info()[1]
        self.log(f"finally L{layer.ident} with {type(exc).__name__ if exc is not None else '-'}")

    # -- the run ---------------------------------------------------------------------

    async def main(self) -> None:
        root = self.program.root
        try:
            var.set("root")
            if root.kind == "async":
                result = await self.run_async_layer(root)
            elif self.program.root_api == "bestow_portal":
                result = await self.spawn(root, "bestow_portal")
            else:
                result = await self.enter_sync(root, self.program.root_api)
            self.log(f"result {result}")
        except BaseException as exc:
            self.log(f"error {describe(exc)}")
            if not isinstance(exc, Exception):
                raise  # a cancellation: let the loop see it
        finally:
            self.log(f"context var at the end: {var.get()}")

    def run(self) -> List[str]:
        try:
            self.loop.run(self.main)
        except BaseException as exc:  # noqa: B036 - recorded
            self.log(f"run ended with {describe(exc)}")
        return self.trace


def traces(program: Program, loop: Loop) -> Tuple[List[str], List[str]]:
    return Interpreter(program, "native", loop).run(), Interpreter(program, "bridged", loop).run()


def assert_same(native: List[str], bridged: List[str], loop: Any) -> None:
    assert bridged == native, f"under {loop.name}"


def adapter(loop: Any) -> Loop:
    """The interpreter's view of the test's ``loop`` fixture."""
    return TrioLoop(loop) if loop.library == "trio" else AsyncioLoop(loop)


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind_by_the_module() -> Any:
    with support.nothing_left_behind():
        yield


# The `loop` fixture is function-scoped, but holds no state of a run: every
# example may share it.
@settings(support.PROFILE, suppress_health_check=[*support.PROFILE.suppress_health_check, HealthCheck.function_scoped_fixture])
@given(program=programs)
def test_native_and_bridged_runs_leave_the_same_trace(loop: Any, program: Program) -> None:
    native, bridged = traces(program, adapter(loop))
    note(f"native trace:  {native}")
    note(f"bridged trace: {bridged}")
    assert_same(native, bridged, loop)


# -- a few fixed programs, so that the interesting cases are always covered ----------


def layer(kind: str, *steps: Step) -> Layer:
    return Layer(kind, list(steps))


FIXED = {
    "error crosses sync layers and is caught above": Program(
        layer(
            "async",
            Step(
                "call",
                layer("sync", Step("call", layer("async", Step("checkpoint"), Step("raise", arg=1)))),
                api="with_portal_run_sync",
                catch="ValueError",
                guard=True,
            ),
            Step("get"),
        ),
        "ensure_portal",
        None,
    ),
    "cancelled deep in a sync layer": Program(
        layer(
            "sync",
            Step("call", layer("async", Step("call", layer("sync", Step("checkpoint"), Step("checkpoint")), api="ensure_portal", guard=True)), guard=True),
        ),
        "with_portal_run",
        2,
    ),
    "context variables set in sync code are seen above": Program(
        layer(
            "async",
            Step("set", arg=1),
            Step("call", layer("sync", Step("get"), Step("set", arg=2), Step("call", layer("async", Step("get"), Step("set", arg=3)))), api="with_portal_run"),
            Step("get"),
            Step("spawn", layer("sync", Step("get"), Step("set", arg=4)), api="bestow_portal"),
            Step("get"),
        ),
        "ensure_portal",
        None,
    ),
    "error in a bestowed child task, caught as a group under Trio": Program(
        layer(
            "sync",
            Step("spawn", layer("sync", Step("checkpoint"), Step("raise", error="KeyError", arg=7)), api="bestow_portal", catch="Exception", guard=True),
            Step("call", layer("async", Step("raise", arg=8)), catch="ValueError"),
        ),
        "bestow_portal",
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_programs(loop: Any, name: str) -> None:
    native, bridged = traces(FIXED[name], adapter(loop))
    assert_same(native, bridged, loop)
    assert any(line.startswith(("result", "error", "run ended")) for line in native)


# Found by the differential test: code run through a portal from an except
# block did not see the exception being handled (sys.exc_info(), bare raise,
# __context__), because a new greenlet starts with none.
HANDLING = {
    f"{api} from an except block sees the handled exception": Program(
        layer(
            "async",
            Step(
                "call",
                layer("sync", Step("exc_info"), Step("call", layer("async", Step("exc_info"), Step("raise", arg=5)), catch="ValueError")),
                api=api,
                handling=True,
            ),
            Step(
                "call",
                layer("sync", Step("checkpoint"), Step("exc_info"), Step("raise", error="KeyError", arg=6)),
                api=api,
                handling=True,
                catch="KeyError",
            ),
        ),
        "ensure_portal",
        None,
    )
    for api in PORTAL_APIS
}


# An asyncio cancellation is thrown into the task: leaving await_ into sync
# code that is handling an exception, it must be chained to that exception,
# as it would be leaving a coroutine that is (the traceback shows both).
HANDLING.update(
    {
        f"cancelled through {api} while handling an exception": Program(
            layer(
                "async",
                Step("call", layer("sync", Step("checkpoint"), Step("checkpoint")), api=api, handling=True, guard=True),
            ),
            "ensure_portal",
            1 if api != "ensure_portal" else 2,
        )
        for api in PORTAL_APIS
    }
)


@pytest.mark.parametrize("name", sorted(HANDLING))
def test_portal_opened_while_handling_an_exception(loop: Any, name: str) -> None:
    native, bridged = traces(HANDLING[name], adapter(loop))
    assert_same(native, bridged, loop)
    if name.startswith("cancelled"):
        assert any(line.startswith("error Cancelled") and line.endswith("from-context LookupError") for line in native)
    else:
        assert "L2 handling LookupError(handled in L1)" in native
        assert "L1 caught KeyError('L4#6') from-context LookupError" in native


def test_known_divergence_context_of_a_thrown_error_caught_below_the_handler() -> None:
    """The one difference in exception chaining we know of, and keep.

    asyncio throws some errors into a task (a cancellation; the error of a
    task or future it awaits). Natively, such an error gets as __context__
    the exception that each coroutine it passes on its way out is itself
    handling, and coroutines it has not reached yet play no part. Leaving
    await_, it enters sync frames, for which we cannot tell which of them is
    handling what: greenback chains it once, to the exception the sync code
    is handling at the await_ (as a raise there would). The result is the
    same unless the error is caught below the frame that handles that
    exception, as here: there it has a __context__ that natively it would
    not. (The chaining matters more than this difference: it keeps the
    handled exception in the traceback of a cancellation that interrupts
    cleanup code in an except block; see the HANDLING programs above.)
    """

    async def failing() -> None:
        raise ValueError("child task failed")

    def sync_inner() -> BaseException:
        try:
            greenback.await_(asyncio.ensure_future(failing()))
        except ValueError as exc:
            return exc
        raise AssertionError("unreachable")

    async def native_inner() -> BaseException:
        try:
            await asyncio.ensure_future(failing())
        except ValueError as exc:
            return exc
        raise AssertionError("unreachable")

    async def main(mode: str) -> Any:
        await greenback.ensure_portal()
        try:
            raise LookupError("being handled")
        except LookupError:
            caught = sync_inner() if mode == "bridged" else await native_inner()
        return caught.__context__

    bridged = asyncio.run(main("bridged"))
    assert repr(bridged) == "LookupError('being handled')"
    native = asyncio.run(main("native"))
    if sys.implementation.name == "pypy":
        # PyPy chains it natively too (it gives a thrown error the exception
        # being handled where it is thrown in): no divergence there.
        assert repr(native) == repr(bridged)
    else:
        assert native is None
    del bridged, native  # their tracebacks refer to the portal
