"""greenback_asyncio in terminal IPython, through a pseudo-terminal: Ctrl-C.

One IPython process (with ``--ext greenback_asyncio``, as the config line
would load it) runs every case; each ends by checking that nothing is left
behind. Markers are printed in two pieces (``'ST' 'ART'`` is echoed as
typed, ``START`` only when it runs), so that an echo never matches.

For diagnosis: GB_TERM_LOG=path copies the terminal's output to that file,
GB_TERM_TIMEOUT=seconds shortens the wait for each answer (a Ctrl-C left
unanswered then fails with the shell's threads, from faulthandler).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import warnings
from typing import Any, Iterator

import pytest

# pytest's limit for each test, above the shell's (see the terminal fixture).
pytestmark = pytest.mark.timeout(180)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    def __init__(self, child: Any) -> None:
        self.child = child
        child.expect(r"In \[(\d+)\]:")
        self.count = int(child.match.group(1))

    def _next_prompt(self) -> str:
        # Wait for the next prompt: an earlier one can still be in the output,
        # and after a failed test the shell may be a prompt or two further on
        # (the later tests then still run in step with it).
        self.count += 1
        before = ""
        while True:
            self.child.expect(r"In \[(\d+)\]:")
            before += self.child.before
            seen = int(self.child.match.group(1))
            if seen >= self.count:
                self.count = seen
                return ANSI.sub("", before)
            before += self.child.after

    def run(self, line: str) -> str:
        """Type *line* at the prompt; return what it printed before the next prompt."""
        self.child.sendline(line)
        return self._next_prompt()

    def interrupt(self, line: str, expected: str) -> str:
        """Type *line*, press Ctrl-C once it printed START, and wait for *expected*."""
        import pexpect

        self.child.sendline(line)
        self.child.expect_exact("START")
        self._wait_until_blocked()
        self.child.sendintr()
        try:
            self.child.expect_exact(expected)
        except pexpect.TIMEOUT:
            # Show where it is stuck: the setup registered faulthandler on SIGUSR1.
            os.kill(self.child.pid, signal.SIGUSR1)
            self.child.expect([pexpect.TIMEOUT], timeout=5)
            pytest.fail(f"no {expected} after Ctrl-C; the shell's threads:\n{ANSI.sub('', self.child.before)}")
        return self._next_prompt()

    def _wait_until_blocked(self, seconds: float = 1.0) -> None:
        """Wait (at most *seconds*) for the shell's main thread to block.

        CPython (and PyPy) run a signal's Python handler at the next check
        between bytecodes, and a blocking call such as ``time.sleep()`` is
        woken only by a signal that arrives while it blocks: a SIGINT that
        lands after the last check but before the system call starts is
        handled only when the call returns, in a stock shell as in ours. A
        Ctrl-C sent the instant START appears can land in that window (seen
        once in CI); a person's cannot. A cell that never blocks (the CPU
        loop) is interrupted after the wait.
        """
        stat = f"/proc/{self.child.pid}/task/{self.child.pid}/stat"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with open(stat) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:  # no /proc: a person's reaction time instead
                time.sleep(0.2)
                return
            if state in ("S", "D"):
                return
            time.sleep(0.005)

    def assert_nothing_left(self, nothing_left: Any) -> None:
        out = self.run("print('LEFT' 'OVERS', json.dumps(_gb_leftovers()))")
        found = re.search(r"LEFTOVERS (\{.*\})", out)
        assert found, out
        assert json.loads(found.group(1)) == nothing_left


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory, notebook_code: Any) -> Iterator[Terminal]:
    notebook_code.require("pexpect", "IPython")
    import pexpect

    where = tmp_path_factory.mktemp("terminal")
    setup = where / "setup.py"
    # faulthandler: a stuck test shows where the shell is (see Terminal.interrupt).
    setup.write_text(
        notebook_code.SETUP
        + notebook_code.HELPERS
        + "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1, all_threads=True)\n"
    )
    env = dict(
        os.environ,
        IPYTHONDIR=str(where / "ipython"),
        TERM="dumb",
        NO_COLOR="1",
    )
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (the Jupyter
        # tests' clients leave some) may deadlock the child; pexpect's child
        # only sets up the terminal and execs.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        child = pexpect.spawn(
            sys.executable,
            [
                "-m",
                "IPython",
                "--no-banner",
                "--colors=nocolor",
                # input() instead of prompt_toolkit: the cells run the same
                # way, and typing into a pseudo-terminal never races a redraw.
                "--simple-prompt",
                "--ext=greenback_asyncio",
                "--HistoryManager.enabled=False",
            ],
            env=env,
            encoding="utf-8",
            # Well under pytest's own limit (the module's mark), so that a
            # stuck shell fails with its threads shown (Terminal.interrupt).
            timeout=float(os.environ.get("GB_TERM_TIMEOUT", notebook_code.CELL_TIMEOUT / 2)),
            dimensions=(50, 250),
        )
    if os.environ.get("GB_TERM_LOG"):
        child.logfile_read = open(os.environ["GB_TERM_LOG"], "a")
    try:
        term = Terminal(child)
        term.run(f"exec(__import__('pathlib').Path({str(setup)!r}).read_text())")
        yield term
    finally:
        child.sendline("exit")
        try:
            child.expect(pexpect.EOF, timeout=30)
        finally:
            child.close(force=True)


def test_cells_await_and_run_nested_loops(terminal, notebook_code):
    out = terminal.run("print('RES' 'ULT', helper(1), lib(2), asyncio.get_event_loop().run_until_complete(fetch(3)))")
    assert "RESULT 1 2 3" in out
    terminal.assert_nothing_left(notebook_code.NOTHING_LEFT)


@pytest.mark.parametrize(
    "line, expected",
    [
        pytest.param("print('ST' 'ART'); time.sleep(3600)", "KeyboardInterrupt", id="sleep"),
        pytest.param("print('ST' 'ART')\nwhile True: pass", "KeyboardInterrupt", id="cpu-loop"),
        pytest.param("greenback.await_(announce_then_sleep('ST' 'ART'))", "CancelledError", id="waiting-in-await_"),
        pytest.param("asyncio.run(announce_then_sleep('ST' 'ART'))", "KeyboardInterrupt", id="nested-asyncio.run"),
        pytest.param("await announce_then_sleep('ST' 'ART')", "CancelledError", id="async-cell-awaiting"),
    ],
)
def test_ctrl_c_stops_the_cell_and_the_shell_goes_on(terminal, notebook_code, line, expected):
    if "\n" in line:  # one physical line for the prompt: a compound statement after ';' is no Python
        line = "exec(" + repr(line) + ")"
    terminal.interrupt(line, expected)
    assert "ALIVE 4" in terminal.run("print('AL' 'IVE', helper(4))")
    terminal.assert_nothing_left(notebook_code.NOTHING_LEFT)
