"""Each mistake raises an instance of the class greenback 1.3.0 raised for it.

Code written for 1.3.0 catches what 1.3.0 raised: ``except
sniffio.AsyncLibraryNotFoundError`` around ``await_`` outside any loop (1.3.0's
own test suite does), ``except AssertionError`` around ``bestow_portal()``
of something that is not a task, ``except AttributeError`` around
``async_context.__exit__`` misuse. Ours raises a class that is a
subclass of 1.3.0's *and* of the class that describes the mistake (so
``except RuntimeError`` / ``except TypeError`` keep working), with our own
message. The classes 1.3.0 raised were found by running the same programs
against it (see the report of the clients branch); cases where both raise a
plain RuntimeError or TypeError are covered by tests/reliability.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, List, Optional

import pytest
import sniffio

import greenback

trio = pytest.importorskip("trio")

NoLibrary = sniffio.AsyncLibraryNotFoundError


async def _one() -> int:
    return 1


def _await_one() -> Any:
    return greenback.await_(_one())


def _raised(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: B036 - returned for inspection
        return exc
    raise AssertionError(f"{fn} raised nothing")


def _in_thread(fn: Callable[[], Any]) -> BaseException:
    box: List[BaseException] = []
    thread = threading.Thread(target=lambda: box.append(_raised(fn)))
    thread.start()
    thread.join()
    return box[0]


def _step(coro: Any) -> None:
    """Drive an API coroutine by hand, outside any loop."""
    try:
        coro.send(None)
    finally:
        coro.close()


# -- no async library here: 1.3.0 asked sniffio first, so it raised sniffio's error ------


def _no_loop_cases() -> Any:
    def in_asyncio_callback() -> BaseException:
        loop = asyncio.new_event_loop()
        box: List[BaseException] = []

        def callback() -> None:
            box.append(_raised(_await_one))
            loop.stop()

        loop.call_soon(callback)
        loop.run_forever()
        loop.close()
        return box[0]

    def in_asyncio_worker_thread() -> BaseException:
        async def main() -> BaseException:
            await greenback.ensure_portal()
            return await asyncio.get_running_loop().run_in_executor(None, _raised, _await_one)

        return asyncio.run(main())

    def in_trio_worker_thread() -> BaseException:
        async def main() -> BaseException:
            await greenback.ensure_portal()
            return await trio.to_thread.run_sync(_raised, _await_one)  # type: ignore[no-any-return]

        return trio.run(main)  # type: ignore[no-any-return]

    class Ones:
        def __aiter__(self) -> "Ones":
            return self

        def __anext__(self) -> Any:
            return _one()

    def next_of_async_iter() -> None:
        next(greenback.async_iter(Ones()))

    return {
        "await_ in a thread with no loop": lambda: _in_thread(_await_one),
        "await_ in the main thread, no loop": lambda: _raised(_await_one),
        "await_ of a non-awaitable, no loop": lambda: _raised(lambda: greenback.await_(5)),
        "await_ in an asyncio callback": in_asyncio_callback,
        "await_ in an asyncio worker thread": in_asyncio_worker_thread,
        "await_ in a trio worker thread": in_trio_worker_thread,
        "autoawait(fn)() with no loop": lambda: _raised(greenback.autoawait(_one)),
        "next(async_iter(...)) with no loop": lambda: _raised(next_of_async_iter),
        "ensure_portal() stepped with no loop": lambda: _raised(lambda: _step(greenback.ensure_portal())),
        "ensure_portal() stepped in a thread with no loop": lambda: _in_thread(
            lambda: _step(greenback.ensure_portal())
        ),
    }


NO_LOOP = _no_loop_cases()


@pytest.mark.parametrize("case", sorted(NO_LOOP))
def test_no_async_library_raises_sniffios_error_which_is_a_runtime_error(case: str) -> None:
    exc = NO_LOOP[case]()
    assert isinstance(exc, NoLibrary), repr(exc)
    assert isinstance(exc, RuntimeError)
    # Our message, naming the mistake and the fix, not sniffio's.
    assert str(exc).startswith("greenback"), str(exc)
    assert "ensure_portal" in str(exc) or "thread" in str(exc) or "callback" in str(exc)


def test_except_asynclibrarynotfounderror_around_await_outside_a_loop() -> None:
    """What 1.3.0's test suite does."""
    coro = _one()
    try:
        greenback.await_(coro)
    except sniffio.AsyncLibraryNotFoundError:
        caught = True
    else:  # pragma: no cover
        caught = False
    assert caught
    assert coro.cr_frame is None  # closed: no "never awaited" warning


def test_a_task_without_a_portal_gets_a_plain_runtime_error(loop: Any) -> None:
    """A library does run there: sniffio's error would be wrong (1.3.0 raised
    a plain RuntimeError too)."""

    async def main() -> BaseException:
        return _raised(_await_one)

    exc = loop.run(main)
    assert type(exc) is RuntimeError
    assert "ensure_portal" in str(exc)


def test_the_no_library_error_of_the_portal_tree_apis_is_still_a_runtime_error() -> None:
    """1.3.0 raised a plain RuntimeError for these; ours is one too."""

    async def tree() -> None:
        async with greenback.portals_for_tree():
            pass  # pragma: no cover

    def children() -> None:
        with greenback.portals_for_children():
            pass  # pragma: no cover

    for exc in (
        _raised(children),
        _raised(lambda: _step(tree())),
        _raised(lambda: _step(greenback.with_portal_run_tree(_one))),
    ):
        assert isinstance(exc, RuntimeError), repr(exc)


# -- bestow_portal() of a non-task: 1.3.0 asserted it was an asyncio.Task --------------


def _bestow_under(library: Optional[str], obj: Any) -> BaseException:
    async def main() -> BaseException:
        return _raised(lambda: greenback.bestow_portal(obj))

    if library is None:
        return _raised(lambda: greenback.bestow_portal(obj))
    return asyncio.run(main()) if library == "asyncio" else trio.run(main)  # type: ignore[no-any-return]


@pytest.mark.parametrize("library", ["asyncio", "trio", None])
@pytest.mark.parametrize("obj", [5, object(), "a coroutine"], ids=["int", "object", "coroutine"])
def test_bestow_portal_of_a_non_task_is_a_type_error_and_an_assertion_error(library: Optional[str], obj: Any) -> None:
    coro = _one() if obj == "a coroutine" else None
    try:
        exc = _bestow_under(library, coro if coro is not None else obj)
    finally:
        if coro is not None:
            coro.close()
    assert isinstance(exc, TypeError)
    assert isinstance(exc, AssertionError)
    assert "expects a task" in str(exc) and "ensure_portal" in str(exc)
    assert greenback.has_portal(obj) is False  # never raises


# -- async_context misuse: AttributeError in 1.3.0 (always, or on Python 3.9/3.10) -------


class OnlyEnter:
    async def __aenter__(self) -> int:
        return 1  # pragma: no cover


class OnlyExit:
    async def __aexit__(self, *exc: Any) -> None:
        pass  # pragma: no cover


@pytest.mark.parametrize("cm", [object(), OnlyEnter(), OnlyExit()], ids=["object", "no-aexit", "no-aenter"])
def test_async_context_of_a_non_async_context_manager_raises_what_async_with_raises(cm: Any) -> None:
    """The class native ``async with`` raises on this Python (TypeError from
    3.11 on, AttributeError before), as 1.3.0 did: its tests compare them."""

    async def main() -> Any:
        await greenback.ensure_portal()

        async def native() -> None:
            async with cm:  # type: ignore[attr-defined]
                pass  # pragma: no cover

        def use() -> None:
            with greenback.async_context(cm):
                pass  # pragma: no cover

        return _raised(lambda: greenback.await_(native())), _raised(use)

    native_error, ours = asyncio.run(main())
    assert type(native_error) in (TypeError, AttributeError)
    assert type(ours) is type(native_error)
    assert "asynchronous context manager" in str(ours)


def test_async_context_exit_without_enter() -> None:
    exc = _raised(lambda: greenback.async_context(OnlyEnter()).__exit__(None, None, None))
    assert isinstance(exc, RuntimeError) and isinstance(exc, AttributeError)
    assert "without __enter__" in str(exc)
