"""autoawait, decorate_as_sync, async_context and async_iter: sync faces for async objects."""

from __future__ import annotations

import functools
import sys
from contextlib import asynccontextmanager

import pytest

import greenback


class Failure(Exception):
    pass


@pytest.fixture(params=["ensure_portal", "with_portal_run_sync"])
def in_portal(request):
    """Run sync code in a portal: the task's own, or one for a single call."""

    async def call(fn, *args):
        if request.param == "ensure_portal":
            await greenback.ensure_portal()
            return fn(*args)
        return await greenback.with_portal_run_sync(fn, *args)

    return call


# -- autoawait ------------------------------------------------------------------------------


async def test_autoawait_makes_a_sync_function_that_awaits(in_portal, checkpoint):
    @greenback.autoawait
    async def add(a, b, *, scale=1):
        await checkpoint()
        return (a + b) * scale

    assert add.__name__ == "add"
    assert await in_portal(lambda: add(1, 2, scale=3)) == 9


async def test_autoawait_works_as_property_getter_and_setter(in_portal, checkpoint):
    class Record:
        def __init__(self):
            self._value = 0

        @property
        @greenback.autoawait
        async def value(self):
            await checkpoint()
            return self._value

        @value.setter
        @greenback.autoawait
        async def value(self, new):
            await checkpoint()
            self._value = new

    def use(record):
        record.value = 41
        record.value += 1
        return record.value

    assert await in_portal(use, Record()) == 42


async def test_autoawait_works_as_magic_methods(in_portal, checkpoint):
    class Store:
        def __init__(self):
            self._data = {}

        @greenback.autoawait
        async def __getitem__(self, key):
            await checkpoint()
            return self._data[key]

        @greenback.autoawait
        async def __setitem__(self, key, value):
            await checkpoint()
            self._data[key] = value

        @greenback.autoawait
        async def __len__(self):
            await checkpoint()
            return len(self._data)

        @greenback.autoawait
        async def __eq__(self, other):
            await checkpoint()
            return isinstance(other, Store) and self._data == other._data

        __hash__ = None

    def use():
        store, other = Store(), Store()
        store["a"] = 1
        store["b"] = 2
        other["a"] = 1
        with pytest.raises(KeyError):
            store["missing"]
        return store["a"] + store["b"], len(store), store == other, bool(store)

    assert await in_portal(use) == (3, 2, False, True)


async def test_autoawait_without_a_portal_raises_and_closes_the_coroutine():
    import warnings
    import gc

    @greenback.autoawait
    async def never():
        raise AssertionError("ran")  # pragma: no cover

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="ensure_portal"):
            never()
        gc.collect()
    assert [w for w in caught if "never awaited" in str(w.message)] == []


# -- decorate_as_sync -------------------------------------------------------------------------


@pytest.mark.parametrize("decorator", [functools.lru_cache, functools.lru_cache(maxsize=8)], ids=["bare", "called"])
async def test_decorate_as_sync_lru_cache_caches_results_not_coroutines(decorator, checkpoint):
    calls = []

    @greenback.decorate_as_sync(decorator)
    async def double(x):
        calls.append(x)
        await checkpoint()
        return 2 * x

    assert double.__name__ == "double"
    # Awaiting a cached coroutine twice would fail; cached results do not.
    assert [await double(1), await double(1), await double(2), await double(1)] == [2, 2, 4, 2]
    assert calls == [1, 2]
    # Also from inside a portal, and from sync code through autoawait.
    await greenback.ensure_portal()
    assert await double(2) == 4
    assert greenback.await_(double(3)) == 6
    assert calls == [1, 2, 3]


async def test_decorate_as_sync_passes_exceptions_and_arguments(checkpoint):
    def log_calls(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            log.append(("call", args, kwargs))
            try:
                return fn(*args, **kwargs)
            finally:
                log.append("returned")

        return wrapper

    log = []

    @greenback.decorate_as_sync(log_calls)
    async def maybe_fail(x, *, fail=False):
        await checkpoint()
        if fail:
            raise Failure(x)
        return x

    assert await maybe_fail(1) == 1
    with pytest.raises(Failure):
        await maybe_fail(2, fail=True)
    assert log == [("call", (1,), {}), "returned", ("call", (2,), {"fail": True}), "returned"]


# -- async_context ------------------------------------------------------------------------------


class RecordingContext:
    def __init__(self, checkpoint, suppress=False):
        self.checkpoint = checkpoint
        self.suppress = suppress
        self.log = []

    async def __aenter__(self):
        await self.checkpoint()
        self.log.append("enter")
        return "entered value"

    async def __aexit__(self, typ, value, tb):
        await self.checkpoint()
        self.log.append(("exit", typ, value, tb is not None))
        return self.suppress


async def test_async_context_enters_and_exits(in_portal, checkpoint):
    cm = RecordingContext(checkpoint)

    def use():
        with greenback.async_context(cm) as value:
            cm.log.append(("body", value))
        return cm.log

    assert await in_portal(use) == ["enter", ("body", "entered value"), ("exit", None, None, False)]


async def test_async_context_passes_the_exception_to_aexit_and_reraises_it(in_portal, checkpoint):
    cm = RecordingContext(checkpoint)
    error = Failure("in the body")

    def use():
        with greenback.async_context(cm):
            raise error

    with pytest.raises(Failure) as info:
        await in_portal(use)
    assert info.value is error
    assert cm.log == ["enter", ("exit", Failure, error, True)]


async def test_async_context_honours_suppression_by_aexit(in_portal, checkpoint):
    cm = RecordingContext(checkpoint, suppress=True)

    def use():
        with greenback.async_context(cm):
            raise Failure("suppressed")
        return "after the with block"

    assert await in_portal(use) == "after the with block"
    assert cm.log[-1][:2] == ("exit", Failure)


async def test_async_context_works_with_asynccontextmanager(in_portal, checkpoint):
    log = []

    @asynccontextmanager
    async def managed():
        await checkpoint()
        log.append("setup")
        try:
            yield "resource"
        except Failure:
            log.append("handled")
        finally:
            await checkpoint()
            log.append("teardown")

    def use():
        with greenback.async_context(managed()) as resource:
            log.append(resource)
        with greenback.async_context(managed()):
            raise Failure
        return log

    assert await in_portal(use) == ["setup", "resource", "teardown", "setup", "handled", "teardown"]


class SyncOnlyContext:
    def __enter__(self):
        raise AssertionError("entered")  # pragma: no cover

    def __exit__(self, *exc_info):
        raise AssertionError("exited")  # pragma: no cover


@pytest.mark.parametrize(
    "obj", [object(), 42, SyncOnlyContext()], ids=["object", "int", "sync context manager"]
)
async def test_async_context_of_a_non_async_context_manager_raises_what_async_with_raises(in_portal, obj):
    # TypeError from Python 3.11 on, AttributeError before: what `async with`
    # raises there (and greenback 1.3.0 did).
    expected = TypeError if sys.version_info >= (3, 11) else AttributeError

    def use():
        with greenback.async_context(obj):
            raise AssertionError("entered")  # pragma: no cover

    with pytest.raises(expected, match="needs an asynchronous context manager"):
        await in_portal(use)


# -- async_iter ---------------------------------------------------------------------------------


async def test_async_iter_runs_a_for_loop_over_an_async_generator(in_portal, checkpoint):
    finished = []

    async def numbers(n):
        try:
            for i in range(n):
                await checkpoint()
                yield i
        finally:
            finished.append(n)

    def use():
        return [i * 10 for i in greenback.async_iter(numbers(5))], list(greenback.async_iter(numbers(0)))

    assert await in_portal(use) == ([0, 10, 20, 30, 40], [])
    assert finished == [5, 0]


async def test_async_iter_runs_a_for_loop_over_an_async_iterator_class(in_portal, checkpoint):
    class Countdown:
        def __init__(self, start):
            self.current = start

        def __aiter__(self):
            return self

        async def __anext__(self):
            await checkpoint()
            if self.current == 0:
                raise StopAsyncIteration
            self.current -= 1
            return self.current + 1

    assert await in_portal(lambda: list(greenback.async_iter(Countdown(3)))) == [3, 2, 1]


async def agen_protocol(log, checkpoint):
    try:
        received = yield "first"
        log.append(("sent", received))
        try:
            received = yield "second"
        except Failure as exc:
            log.append(("thrown", exc))
            received = yield "recovered"
        log.append(("sent", received))
        await checkpoint()
        yield "third"
    finally:
        await checkpoint()
        log.append("closed")


async def test_async_iter_send_throw_and_close_reach_the_async_generator(in_portal, checkpoint):
    log = []
    error = Failure("thrown in")

    def use():
        it = greenback.async_iter(agen_protocol(log, checkpoint))
        results = [next(it), it.send("hello"), it.throw(error), it.send("again")]
        it.close()
        return results

    assert await in_portal(use) == ["first", "second", "recovered", "third"]
    assert log == [("sent", "hello"), ("thrown", error), ("sent", "again"), "closed"]


async def test_async_iter_throw_of_an_unhandled_exception_comes_back_out(in_portal, checkpoint):
    log = []

    def use():
        it = greenback.async_iter(agen_protocol(log, checkpoint))
        next(it)
        with pytest.raises(KeyError):
            it.throw(KeyError("unhandled"))
        with pytest.raises(StopIteration):
            next(it)

    await in_portal(use)
    assert log == ["closed"]


async def test_async_iter_works_with_yield_from(in_portal, checkpoint):
    log = []

    def delegate():
        result = yield from greenback.async_iter(agen_protocol(log, checkpoint))
        log.append(("delegation returned", result))
        return "done"

    def use():
        gen = delegate()
        results = [next(gen), gen.send("x"), gen.throw(Failure("via yield from")), gen.send("y")]
        with pytest.raises(StopIteration) as info:
            next(gen)
        return results, info.value.value

    assert await in_portal(use) == (["first", "second", "recovered", "third"], "done")
    assert log[0] == ("sent", "x") and log[2] == ("sent", "y")
    assert log[-2:] == ["closed", ("delegation returned", None)]


@pytest.mark.parametrize("obj", [42, [1, 2], iter([1])], ids=["int", "list", "sync iterator"])
async def test_async_iter_of_a_non_async_iterable_raises_type_error(obj):
    with pytest.raises(TypeError):
        greenback.async_iter(obj)


async def test_async_iter_of_an_object_whose_aiter_returns_a_non_async_iterator_raises_type_error():
    class Bad:
        def __aiter__(self):
            return iter([1])

    with pytest.raises(TypeError):
        greenback.async_iter(Bad())


def test_async_iter_is_a_sync_iterator_type():
    async def agen():
        yield 1  # pragma: no cover

    it = greenback.async_iter(agen())
    assert iter(it) is it
    assert hasattr(it, "send") and hasattr(it, "throw") and hasattr(it, "close")
