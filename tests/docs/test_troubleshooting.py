"""The troubleshooting page quotes greenback's error messages as they are.

Each test below makes greenback raise one of its errors and checks that the
message, word for word, is one of those the page (docs/troubleshooting.md)
quotes in its ``error-message`` blocks, where ``<...>`` stands for a value
that varies. A message changed in the code without the page fails here.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import types
from pathlib import Path
from typing import Any, Callable, List, Pattern

import pytest

import greenback
import greenback_asyncio
from greenback.lowlevel import (
    GreenletBridge,
    LoopIntegration,
    install_bridge,
    integration_for,
    register_integration,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
BLOCK = re.compile(r"```\{code-block\} text\n:class: error-message\n\n(.*?)\n```", re.S)


def _pattern(message: str) -> Pattern[str]:
    # "greenback._loops.MissingIntegrationError: ..." is raised as
    # MissingIntegrationError; <...> is any value; the entries quoting
    # greenback.await_() also stand for greenback.ensure_portal().
    message = re.sub(r"^[\w.]+\.(\w+(?:Error|Exception|Greenlet)):", r"\1:", message)
    parts = re.split(r"(<[^<>]+>)", message)
    regex = "".join(".+?" if part.startswith("<") and part.endswith(">") else re.escape(part) for part in parts)
    regex = regex.replace(re.escape("greenback.await_()"), r"greenback\.(?:await_|ensure_portal)\(\)")
    return re.compile(regex + r"\Z", re.S)


QUOTED: List[Pattern[str]] = [_pattern(m.strip()) for m in BLOCK.findall(PAGE.read_text(encoding="utf-8"))]


def test_the_page_quotes_messages() -> None:
    assert len(QUOTED) >= 50


def error_of(action: Callable[[], Any]) -> BaseException:
    """The exception *action* raises (running it on asyncio if it is async)."""
    try:
        result = action()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except BaseException as exc:  # noqa: B036 - any of them is what we want
        return exc
    raise AssertionError(f"{action} raised nothing")


def assert_quoted(exc: BaseException) -> None:
    # The page may name the exception's class or any class it derives from
    # (it says RuntimeError where greenback raises its NoLoopError, say:
    # what a user catches).
    texts = [f"{cls.__name__}: {exc}" for cls in type(exc).__mro__]
    assert any(p.match(text) for p in QUOTED for text in texts), f"docs/troubleshooting.md does not quote:\n{texts[0]}"


# -- no portal ------------------------------------------------------------------


async def _no_portal() -> None:
    greenback.await_(asyncio.sleep(0))


async def _bestowed_not_yet() -> None:
    greenback.bestow_portal(asyncio.current_task())
    greenback.await_(asyncio.sleep(0))


async def _in_callback(api: Callable[[], Any]) -> BaseException:
    loop = asyncio.get_running_loop()
    done: "asyncio.Future[BaseException]" = loop.create_future()
    loop.call_soon(lambda: done.set_result(error_of(api)))
    return await done


async def _in_to_thread(api: Callable[[], Any]) -> BaseException:
    return await asyncio.to_thread(error_of, api)


class _Resource:
    def __del__(self) -> None:
        greenback.await_(asyncio.sleep(0))


def _handler(signum: int, frame: Any) -> None:
    greenback.await_(asyncio.sleep(0))


def _sleep_coro() -> Any:
    coro = asyncio.sleep(0)
    return coro


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda: _no_portal(), id="no-portal"),
        pytest.param(lambda: _bestowed_not_yet(), id="bestowed-not-yet"),
        pytest.param(lambda: greenback.await_(_sleep_coro()), id="no-loop"),
        pytest.param(lambda: greenback.ensure_portal().send(None), id="ensure-portal-no-loop"),
    ],
)
def test_no_portal(action: Callable[[], Any]) -> None:
    assert_quoted(error_of(action))


@pytest.mark.parametrize("api", ["await_", "ensure_portal"])
def test_callback_and_worker_thread(api: str) -> None:
    def call() -> Any:
        if api == "await_":
            return greenback.await_(_sleep_coro())
        coro = greenback.ensure_portal()
        try:
            return coro.send(None)
        finally:
            coro.close()

    async def main() -> List[BaseException]:
        return [await _in_callback(call), await _in_to_thread(call)]

    for exc in asyncio.run(main()):
        assert_quoted(exc)


def test_trio_worker_thread() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> BaseException:
        return await trio.to_thread.run_sync(error_of, lambda: greenback.await_(trio.sleep(0)))

    assert_quoted(trio.run(main))


def test_finalizer_and_signal_handler() -> None:
    async def finalizer() -> None:  # a task without a portal, as most are
        # Run as a finalizer runs; on a stand-in, so that no real one runs later.
        _Resource.__del__(types.SimpleNamespace())  # type: ignore[arg-type]

    assert_quoted(error_of(finalizer))
    if not hasattr(signal, "SIGUSR1") or threading.current_thread() is not threading.main_thread():
        pytest.skip("needs SIGUSR1 and the main thread (to install a handler)")
    previous = signal.signal(signal.SIGUSR1, _handler)
    try:
        assert_quoted(error_of(lambda: _handler(signal.SIGUSR1, None)))
    finally:
        signal.signal(signal.SIGUSR1, previous)


# -- making portals, and giving them ----------------------------------------------


def _raises_stop() -> None:
    raise StopIteration


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda: greenback.with_portal_run(lambda: 5), id="run-sync-function"),
        pytest.param(lambda: greenback.with_portal_run(5), id="run-not-callable"),
        pytest.param(lambda: greenback.with_portal_run_sync(5), id="run-sync-not-callable"),
        pytest.param(lambda: greenback.with_portal_run_sync(_raises_stop), id="stop-iteration"),
        pytest.param(lambda: greenback.with_portal_run_sync(_no_portal), id="run-sync-async-function"),
        pytest.param(lambda: greenback.with_portal_run(_no_portal()), id="run-coroutine-object"),
        pytest.param(lambda: greenback.with_portal_run_tree(_no_portal()), id="run-tree-coroutine-object"),
        pytest.param(lambda: _call_async(lambda: greenback.bestow_portal(5)), id="bestow-not-a-task"),
    ],
)
def test_portal_creation(action: Callable[[], Any]) -> None:
    assert_quoted(error_of(action))


async def _call_async(fn: Callable[[], Any]) -> Any:
    return fn()


def test_bestow_portal_to_another_loops_task() -> None:
    ready = threading.Event()
    stop: "List[Any]" = []

    def other_loop() -> None:
        async def waiter() -> None:
            stop.append((asyncio.get_running_loop(), asyncio.current_task()))
            ready.set()
            while len(stop) < 2:
                await asyncio.sleep(0.01)

        asyncio.run(waiter())

    thread = threading.Thread(target=other_loop)
    thread.start()
    ready.wait(10)
    try:
        assert_quoted(error_of(lambda: _call_async(lambda: greenback.bestow_portal(stop[0][1]))))
    finally:
        stop.append(None)
        thread.join(10)


# -- awaiting the wrong thing, and the adapters -----------------------------------


class _BadAwait:
    def __init__(self, result: Any) -> None:
        self.result = result

    def __await__(self) -> Any:
        return self.result


async def _in_portal(fn: Callable[[], Any]) -> Any:
    await greenback.ensure_portal()
    return fn()


async def _reused() -> None:
    coro = asyncio.sleep(0)
    await coro
    await greenback.ensure_portal()
    greenback.await_(coro)


class _NoANext:
    def __aiter__(self) -> Any:
        return self


class _Acm:
    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc_info: Any) -> None:
        pass


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda: _in_portal(lambda: greenback.await_(5)), id="not-awaitable"),
        pytest.param(lambda: _in_portal(lambda: greenback.await_(_no_portal)), id="forgot-the-call"),
        pytest.param(lambda: _reused(), id="reused"),
        pytest.param(lambda: _in_portal(lambda: greenback.await_(_BadAwait(5))), id="await-non-iterator"),
        pytest.param(
            lambda: _in_portal(lambda: greenback.await_(_BadAwait(asyncio.sleep(0)))), id="await-returns-coroutine"
        ),
        pytest.param(lambda: _in_portal(lambda: greenback.async_context(5).__enter__()), id="context-no-aenter"),
        pytest.param(lambda: greenback.async_context(_Acm()).__exit__(None, None, None), id="exit-no-enter"),
        pytest.param(lambda: greenback.async_iter(5), id="iter-no-aiter"),
        pytest.param(lambda: greenback.async_iter(_NoANext()), id="iter-no-anext"),
    ],
)
def test_wrong_awaitables_and_adapters(action: Callable[[], Any]) -> None:
    assert_quoted(error_of(action))


# -- integrations and bridges -------------------------------------------------------


class _Nameless(LoopIntegration):
    def current_task(self) -> Any: ...
    def is_task(self, obj: object) -> bool: ...
    def task_is_done(self, task: Any) -> bool: ...
    def get_coro(self, task: Any) -> Any: ...
    def set_coro(self, task: Any, coro: Any) -> None: ...
    def checkpoint(self) -> Any: ...


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda: integration_for("no-such-loop-library"), id="no-integration"),
        pytest.param(lambda: register_integration(5), id="register-not-integration"),
        pytest.param(lambda: register_integration(_Nameless()), id="register-nameless"),
        pytest.param(lambda: GreenletBridge("x", "not a name"), id="bridge-marker"),
        pytest.param(lambda: install_bridge(5), id="install-not-bridge"),
    ],
)
def test_integrations_and_bridges(action: Callable[[], Any]) -> None:
    assert_quoted(error_of(action))


# -- greenback_asyncio -----------------------------------------------------------------


def _library_call() -> Any:
    """A sync library's call that runs async code with asyncio.run()."""
    coro = asyncio.sleep(0)
    try:
        return asyncio.run(coro)
    finally:
        coro.close()  # if asyncio.run() refused it


@pytest.fixture
def nested_runs() -> Any:
    was = greenback_asyncio.nested_run_enabled()
    greenback_asyncio.enable_nested_run()
    yield
    if not was:
        greenback_asyncio.disable_nested_run()


def test_nested_run_without_portal(nested_runs: None) -> None:
    async def in_task() -> None:
        _library_call()

    async def in_callback() -> BaseException:
        return await _in_callback(_library_call)

    assert_quoted(error_of(in_task))
    assert_quoted(asyncio.run(in_callback()))
    assert_quoted(error_of(lambda: _in_portal(lambda: asyncio.run(5))))


async def _run_in_running_loop() -> None:
    coro = asyncio.sleep(0)
    try:
        greenback_asyncio.run(coro)
    finally:
        coro.close()


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda: _run_in_running_loop(), id="run-in-running-loop"),
        pytest.param(lambda: greenback_asyncio.install_portal_task_factory(), id="factory-no-loop"),
        pytest.param(lambda: greenback_asyncio.PortalTaskFactory(5), id="factory-not-callable"),
    ],
)
def test_greenback_asyncio(action: Callable[[], Any]) -> None:
    assert_quoted(error_of(action))


def test_asyncios_own_message() -> None:
    # What a sync library's asyncio.run() says without enable_nested_run().
    async def main() -> None:
        _library_call()

    if greenback_asyncio.nested_run_enabled():
        pytest.skip("nested runs are enabled in this process (by another test), so asyncio's message cannot show")
    assert_quoted(error_of(main))
