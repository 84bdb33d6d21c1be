"""greenback_asyncio in real Jupyter kernels (ipykernel), driven by nbclient.

One kernel with ``%load_ext greenback_asyncio`` is shared by the tests that
leave it as they found it; each of them ends by checking that nothing is
left behind (``assert_nothing_left``), so that the next starts clean. Tests
that change what is loaded start kernels of their own.
"""

from __future__ import annotations

from typing import Any

import pytest

NO_PORTAL = "You must create a greenback portal for this task before calling greenback.await_()"


@pytest.fixture(scope="module")
def loaded(kernel_factory: Any) -> Any:
    kernel = kernel_factory()
    kernel.run("%load_ext greenback_asyncio").assert_clean()
    return kernel


def test_sync_cells_can_await_and_run_nested_loops(loaded):
    ran = loaded.run(
        """
        print(helper(1), asyncio.run(fetch(2)), asyncio.get_event_loop().run_until_complete(fetch(3)), lib())
        task = asyncio.ensure_future(child(4))  # tasks a cell starts have portals too
        """
    ).assert_clean()
    assert ran.stdout == "1 2 3 42\n"
    assert loaded.run("print(await task)").assert_clean().stdout == "4\n"
    loaded.assert_nothing_left()


def test_top_level_await_mixed_with_await_(loaded):
    ran = loaded.run(
        """
        await asyncio.sleep(0)
        a = helper(1)
        b = await child(2)
        c = await asyncio.gather(child(3), child(4))
        print(a, b, c, lib(5))
        """
    ).assert_clean()
    assert ran.stdout == "1 2 [3, 4] 5\n"
    loaded.assert_nothing_left()


@pytest.mark.parametrize("cell_kind", ["sync", "async"])
def test_tracebacks_show_the_users_frames(loaded, cell_kind):
    prefix = "await asyncio.sleep(0)\n" if cell_kind == "async" else ""
    ran = loaded.run(
        prefix
        + """
def broken():
    return greenback.await_(fails())

async def fails():
    await asyncio.sleep(0)
    raise ValueError("from the coroutine")

broken()
"""
    )
    assert ran.error.ename == "ValueError"
    tb = ran.traceback
    for line in ("broken()", "return greenback.await_(fails())", 'raise ValueError("from the coroutine")'):
        assert line in tb
    for machinery in ("_engine.py", "_ipython.py", "_interrupt.py", "_nested.py", "_api.py"):
        assert machinery not in tb
    # Through a nested asyncio.run(): the library's frame, then the coroutine's.
    ran = loaded.run(prefix + "def sync_lib():\n    return asyncio.run(fails())\n\nsync_lib()")
    assert ran.error.ename == "ValueError"
    assert "return asyncio.run(fails())" in ran.traceback
    assert 'raise ValueError("from the coroutine")' in ran.traceback
    for machinery in ("_engine.py", "_nested.py", "_api.py"):
        assert machinery not in ran.traceback
    loaded.assert_nothing_left()


# Each cell prints START once it is where the interrupt should find it.
INTERRUPTED = [
    pytest.param("print('START', flush=True)\nwhile True:\n    time.sleep(0.01)", "KeyboardInterrupt", id="sleep-loop"),
    pytest.param("print('START', flush=True)\nn = 0\nwhile True:\n    n += 1", "KeyboardInterrupt", id="cpu-loop"),
    pytest.param("greenback.await_(announce_then_sleep('START'))", "CancelledError", id="waiting-in-await_"),
    pytest.param("helper(0)\nasyncio.run(announce_then_sleep('START'))", "KeyboardInterrupt", id="nested-asyncio.run"),
    pytest.param(
        "asyncio.get_event_loop().run_until_complete(announce_then_sleep('START'))",
        "KeyboardInterrupt",
        id="nested-run_until_complete",
    ),
    pytest.param("await announce_then_sleep('START')", "CancelledError", id="async-cell-awaiting"),
    pytest.param(
        "await asyncio.sleep(0)\nprint('START', flush=True)\nwhile True:\n    time.sleep(0.01)",
        "KeyboardInterrupt",
        id="async-cell-in-sync-code",
    ),
]


@pytest.mark.parametrize("code, expected", INTERRUPTED)
def test_interrupt_stops_the_cell_and_the_kernel_goes_on(loaded, code, expected):
    ran = loaded.run(code, interrupt_at="START")
    assert ran.error.ename == expected
    if expected == "CancelledError":
        assert "interrupted" in ran.error.evalue
    assert "Cell In[" in ran.traceback  # the user's line is shown
    assert "_engine.py" not in ran.traceback
    assert loaded.run("print('alive', helper(1))").assert_clean().stdout == "alive 1\n"
    loaded.assert_nothing_left()


def test_interrupt_a_cell_that_awaits_in_a_tight_loop(loaded):
    # The signal may find the cell's code, or a portal switching: either way
    # the cell stops (KeyboardInterrupt, or CancelledError where it waits).
    ran = loaded.run("print('START', flush=True)\nwhile True:\n    greenback.await_(asyncio.sleep(0))", interrupt_at="START")
    assert ran.error.ename in ("KeyboardInterrupt", "CancelledError")
    assert loaded.run("print('alive', helper(1))").assert_clean().stdout == "alive 1\n"
    loaded.assert_nothing_left()


def test_autoawait_off_runs_cells_the_stock_way(loaded):
    loaded.run("%autoawait off").assert_clean()
    try:
        ran = loaded.run("helper(1)")
        assert ran.error.ename == "RuntimeError"
        message = ran.error.evalue
        assert message.startswith(NO_PORTAL)  # greenback's ordinary error, as in a stock kernel
        assert "'%autoawait off' is in effect" in message and "'%autoawait on'" in message
        assert "needs a real async loop" not in message
        # Nothing was left half-run: a later cell collecting garbage shows nothing.
        loaded.run("import gc\ngc.collect()\nprint('collected')").assert_clean()
        loaded.assert_nothing_left()
        # A sync library's asyncio.run() still works: on a loop of its own.
        assert loaded.run("print(lib(7))").assert_clean().stdout == "7\n"
    finally:
        loaded.run("%autoawait on").assert_clean()
    assert loaded.run("print(helper(8))").assert_clean().stdout == "8\n"
    loaded.assert_nothing_left()


def test_trio_runner_is_respected(loaded):
    pytest.importorskip("trio")
    pytest.importorskip("greenback_trio")
    loaded.run("%autoawait trio").assert_clean()
    try:
        ran = loaded.run(
            """
            import trio
            await trio.sleep(0)
            greenback.await_(trio.sleep(0))
            print("trio ok")
            """
        ).assert_clean()
        assert ran.stdout == "trio ok\n"
        ran = loaded.run("helper(1)")  # sync cells: no portal, as without the extension
        assert ran.error.ename == "RuntimeError"
        assert "a loop runner other than asyncio's (_trio_runner)" in ran.error.evalue
    finally:
        loaded.run("%autoawait asyncio").assert_clean()
    assert loaded.run("print(helper(2))").assert_clean().stdout == "2\n"
    loaded.assert_nothing_left()


def test_reload_unload_and_load_again(loaded):
    loaded.run("%reload_ext greenback_asyncio").assert_clean()
    assert loaded.run("print(helper(1), lib(2))").assert_clean().stdout == "1 2\n"
    loaded.run("%unload_ext greenback_asyncio").assert_clean()
    try:
        ran = loaded.run("helper(3)")
        assert ran.error.ename == "RuntimeError"
        assert ran.error.evalue.startswith(NO_PORTAL)
        assert "%load_ext greenback_asyncio" in ran.error.evalue
        # asyncio.run() is the stock one again.
        ran = loaded.run(
            """
            coro = fetch(4)
            try:
                asyncio.run(coro)
            except RuntimeError as exc:
                print(exc)
            finally:
                coro.close()
            """
        ).assert_clean()
        assert "cannot be called from a running event loop" in ran.stdout
    finally:
        loaded.run("%load_ext greenback_asyncio").assert_clean()
    assert loaded.run("print(helper(5), lib(6))").assert_clean().stdout == "5 6\n"
    loaded.assert_nothing_left()


def test_without_the_extension_then_enable_nested_run(kernel_factory):
    kernel = kernel_factory()
    # No extension: the error names it.
    ran = kernel.run("helper(1)")
    assert ran.error.ename == "RuntimeError"
    assert ran.error.evalue.startswith(NO_PORTAL)
    assert "%load_ext greenback_asyncio" in ran.error.evalue
    assert "c.InteractiveShellApp.extensions" in ran.error.evalue
    # enable_nested_run() is the nest_asyncio.apply() of greenback: in the
    # same cell, a library's asyncio.run() runs (on a loop of its own)...
    ran = kernel.run("import greenback_asyncio\ngreenback_asyncio.enable_nested_run()\nprint(lib())").assert_clean()
    assert ran.stdout == "42\n"
    # ... and from the next cell on, on the kernel's loop, with a portal.
    ran = kernel.run("print(lib(), helper(6), asyncio.get_running_loop().run_until_complete(fetch(7)))").assert_clean()
    assert ran.stdout == "42 6 7\n"
    # disable_nested_run() undoes it, extension included.
    kernel.run("greenback_asyncio.disable_nested_run()").assert_clean()
    ran = kernel.run("helper(1)")
    assert "%load_ext greenback_asyncio" in ran.error.evalue
    # await_ in the cell that loads it: the error says to use the next cell.
    ran = kernel.run("greenback_asyncio.enable_nested_run()\nhelper(1)")
    assert ran.error.evalue.startswith(NO_PORTAL)
    assert "loaded during this cell" in ran.error.evalue
    assert kernel.run("print(helper(9))").assert_clean().stdout == "9\n"
    kernel.assert_nothing_left()


# A notebook written for nest_asyncio, whose first cell was
# "import asyncio; import nest_asyncio; nest_asyncio.apply()": OURS replaces it.
OURS = "import asyncio\nimport greenback_asyncio\ngreenback_asyncio.enable_nested_run()"
NOTEBOOK = [
    ("async def get(x):\n    await asyncio.sleep(0.01)\n    return x", ""),
    ("print(asyncio.run(get(1)))", "1\n"),
    ("loop = asyncio.get_event_loop()\nprint(loop.run_until_complete(get(2)))", "2\n"),
    ("def sync_api(x):\n    return asyncio.run(get(x))\n\nprint(sync_api(3))", "3\n"),
    ("print(await get(4))", "4\n"),
    ("async def outer():\n    return sync_api(5)\n\nprint(asyncio.run(outer()))", "5\n"),
    ("task = asyncio.ensure_future(get(6))\nprint(loop.run_until_complete(task))", "6\n"),
    ("print(asyncio.run(asyncio.wait_for(get(7), timeout=60)))", "7\n"),
    ("print(sync_api(8), await asyncio.gather(get(9), asyncio.to_thread(sync_api, 10)))", "8 [9, 10]\n"),
]


def test_a_nest_asyncio_notebook_runs_with_our_line_instead(kernel_factory):
    kernel = kernel_factory(helpers=False)

    def run_notebook() -> None:
        kernel.run(OURS).assert_clean()
        for code, output in NOTEBOOK:
            assert kernel.run(code).assert_clean().stdout == output, code

    run_notebook()
    run_notebook()  # twice in one kernel
    kernel.assert_nothing_left()
    kernel.restart()
    kernel.setup(helpers=False)
    run_notebook()  # and again after a restart
    kernel.assert_nothing_left()


def test_one_config_line_loads_it_in_every_kernel(kernel_factory):
    kernel = kernel_factory("c.InteractiveShellApp.extensions = ['greenback_asyncio']\n")
    ran = kernel.run("print(helper(1), lib(2), asyncio.get_event_loop().run_until_complete(fetch(3)))").assert_clean()
    assert ran.stdout == "1 2 3\n"
    kernel.restart()
    kernel.setup()
    assert kernel.run("print(helper(4), lib(5))").assert_clean().stdout == "4 5\n"
    kernel.assert_nothing_left()
