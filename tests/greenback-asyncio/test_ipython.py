"""The IPython extension, tested by driving an InteractiveShell."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

import greenback_asyncio

pytest.importorskip("IPython")


@pytest.fixture
def shell(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("NO_COLOR", "1")
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(colors="nocolor")
    try:
        yield ip
    finally:
        if getattr(ip, "_greenback_asyncio_extension", None) is not None:
            greenback_asyncio.unload_ipython_extension(ip)
        InteractiveShell.clear_instance()
    assert not greenback_asyncio.nested_run_enabled()


def run(ip, code):
    result = ip.run_cell(textwrap.dedent(code))
    return result


HELPERS = """
import asyncio, greenback

def helper(value):
    # A sync helper, as a notebook would define: awaits through the portal.
    return greenback.await_(asyncio.sleep(0, value))

async def child(value):
    return helper(value)
"""


def test_sync_cells_can_await_through_the_portal(shell):
    run(shell, "%load_ext greenback_asyncio")
    assert run(shell, HELPERS).success
    result = run(shell, "a = helper(1)")
    assert result.error_in_exec is None
    assert shell.user_ns["a"] == 1


def test_async_cells_and_their_tasks_have_portals(shell):
    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    result = run(
        shell,
        """
        await asyncio.sleep(0)
        b = helper(2)
        c = await asyncio.create_task(child(3))
        d = await asyncio.gather(child(4), child(5))
        """,
    )
    assert result.error_in_exec is None
    assert (shell.user_ns["b"], shell.user_ns["c"], shell.user_ns["d"]) == (2, 3, [4, 5])


def test_asyncio_run_in_a_cell_runs_nested(shell):
    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    result = run(shell, "e = asyncio.run(child(6))")
    assert result.error_in_exec is None
    assert shell.user_ns["e"] == 6


def test_errors_in_cells_are_reported_as_usual(shell, capsys):
    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    result = run(shell, "helper(1) / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out
    # The traceback starts at the cell: no frames of the portal machinery.
    assert "_engine.py" not in out.split("ZeroDivisionError")[0].replace("greenback.await_", "")


def test_load_twice_and_unload_restores(shell):
    before_run_code = "run_code" in vars(shell)
    run(shell, "%load_ext greenback_asyncio")
    greenback_asyncio.load_ipython_extension(shell)  # a second load changes nothing
    assert greenback_asyncio.nested_run_enabled()
    run(shell, "%unload_ext greenback_asyncio")
    assert ("run_code" in vars(shell)) == before_run_code
    assert "should_run_async" not in vars(shell)
    assert not greenback_asyncio.nested_run_enabled()
    run(shell, HELPERS)
    result = run(shell, "helper(1)")
    assert isinstance(result.error_in_exec, RuntimeError)
    # Sync cells are back on IPython's loop-less runner.
    result = run(shell, "f = asyncio.run(asyncio.sleep(0, 'stock'))")
    assert result.error_in_exec is None
    assert shell.user_ns["f"] == "stock"


def test_unload_leaves_nested_runs_on_if_the_user_enabled_them(shell):
    greenback_asyncio.enable_nested_run()
    try:
        run(shell, "%load_ext greenback_asyncio")
        run(shell, "%unload_ext greenback_asyncio")
        assert greenback_asyncio.nested_run_enabled()
    finally:
        greenback_asyncio.disable_nested_run()


def test_autoawait_off_is_respected(shell):
    run(shell, "%load_ext greenback_asyncio")
    run(shell, "%autoawait off")
    run(shell, HELPERS)
    result = run(shell, "helper(1)")
    assert isinstance(result.error_in_exec, RuntimeError)  # no loop: no portal
    run(shell, "%autoawait on")
    result = run(shell, "g = helper(7)")
    assert result.error_in_exec is None
    assert shell.user_ns["g"] == 7


def test_trio_runner_cells_with_await_get_portals(shell):
    pytest.importorskip("trio")
    pytest.importorskip("greenback_trio")
    run(shell, "%load_ext greenback_asyncio")
    run(shell, "%autoawait trio")
    try:
        result = run(
            shell,
            """
            import trio, greenback
            await trio.sleep(0)
            h = greenback.await_(trio.sleep(0)) or "trio ok"
            """,
        )
        assert result.error_in_exec is None
        assert shell.user_ns["h"] == "trio ok"
    finally:
        run(shell, "%autoawait asyncio")


def test_cells_run_on_ipythons_loop(shell):
    run(shell, "%load_ext greenback_asyncio")
    result = run(shell, "import asyncio\nloop = asyncio.get_running_loop()")
    assert result.error_in_exec is None
    assert isinstance(shell.user_ns["loop"], asyncio.AbstractEventLoop)


def test_cells_are_wrapped_whole_and_unload_restores_it(shell):
    had = "run_cell_async" in vars(shell)
    run(shell, "%load_ext greenback_asyncio")
    assert "run_cell_async" in vars(shell)
    run(shell, "%unload_ext greenback_asyncio")
    assert ("run_cell_async" in vars(shell)) == had


def test_enable_nested_run_in_a_shell_loads_the_extension(shell):
    try:
        greenback_asyncio.enable_nested_run()
        assert shell._greenback_asyncio_extension is not None
        run(shell, HELPERS)
        result = run(shell, "i = helper(9)")
        assert result.error_in_exec is None
        assert shell.user_ns["i"] == 9
    finally:
        greenback_asyncio.disable_nested_run()
    assert getattr(shell, "_greenback_asyncio_extension", None) is None


def test_no_portal_errors_name_the_extension_and_what_stops_it(shell):
    run(shell, HELPERS)
    run(shell, "%autoawait off")
    result = run(shell, "helper(1)")
    assert "%load_ext greenback_asyncio" in str(result.error_in_exec)
    run(shell, "%load_ext greenback_asyncio")
    result = run(shell, "helper(1)")
    assert "'%autoawait off' is in effect" in str(result.error_in_exec)
    run(shell, "%autoawait on")
    run(shell, "%unload_ext greenback_asyncio")
    # Loaded in the very cell that then awaits: that cell has no portal.
    result = run(shell, "get_ipython().run_line_magic('load_ext', 'greenback_asyncio')\nhelper(1)")
    assert "loaded during this cell" in str(result.error_in_exec)
    result = run(shell, "j = helper(2)")
    assert result.error_in_exec is None


def test_sigint_in_a_cells_code_raises_keyboard_interrupt_there(shell):
    import signal

    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    result = run(shell, "import signal\nsignal.raise_signal(signal.SIGINT)\nnever = True")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "never" not in shell.user_ns
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert run(shell, "k = helper(3)").error_in_exec is None


def test_sigint_while_a_cell_waits_cancels_it_where_it_waits(shell):
    import signal

    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    # The signal arrives while the loop runs (the cell waits in await_).
    code = """
    import signal
    async def wait():
        asyncio.get_running_loop().call_later(0.01, signal.raise_signal, signal.SIGINT)
        await asyncio.sleep(3600)
    greenback.await_(wait())
    """
    result = run(shell, code)
    assert isinstance(result.error_in_exec, asyncio.CancelledError)
    assert "interrupted" in str(result.error_in_exec)
    # A nested asyncio.run() answers the same interrupt with KeyboardInterrupt.
    result = run(shell, "asyncio.run(wait())")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert run(shell, "m = helper(4)").error_in_exec is None
    assert shell.user_ns["m"] == 4


# The thread method: a timeout signal would itself wake the blocked cell.
@pytest.mark.timeout(60, method="thread")
def test_a_deferred_sigint_reaches_a_cell_that_then_blocks(shell):
    # The signal arrives while the loop runs a callback (not the cell's code):
    # it is deferred, the cell resumes first and blocks in a system call. The
    # signal raised again must wake that call (without it: an hour's sleep).
    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    code = """
    import signal, time
    async def poke():
        asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGINT)
        await asyncio.sleep(0)
    greenback.await_(poke())
    time.sleep(3600)
    never = True
    """
    result = run(shell, code)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "never" not in shell.user_ns
    assert run(shell, "n = helper(5)").error_in_exec is None


@pytest.mark.timeout(60, method="thread")
def test_an_interrupt_that_cannot_land_cleanly_is_forced_after_a_while(shell, monkeypatch):
    # Should the handler never find the cell's own code running (here it is
    # told so), the interrupt is still raised after about two seconds of
    # retries, wherever the main thread is, as Python's own handler would:
    # Ctrl-C is never ignored for good.
    from greenback_asyncio import _interrupt

    monkeypatch.setattr(_interrupt.CellInterrupts, "_in_cell_code", lambda self, frame: False)
    run(shell, "%load_ext greenback_asyncio")
    run(shell, HELPERS)
    result = run(shell, "import signal, time\nsignal.raise_signal(signal.SIGINT)\ntime.sleep(3600)\nnever = True")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "never" not in shell.user_ns
    monkeypatch.undo()
    assert run(shell, "n = helper(6)").error_in_exec is None
