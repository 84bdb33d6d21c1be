"""The demo (`scripts/hatch run demo`) runs and says what it shows."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def test_the_demo_runs_and_explains_each_result() -> None:
    pytest.importorskip("trio", reason="the demo runs under Trio too")
    done = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # The sync callbacks awaited, in their tasks' contexts, under both loops.
    for line in ("apple: 5 letters, for request aio-1", "fig: 3 letters, for request aio-1", "plum: 4 letters, for request trio-1"):
        assert line in out
    # The timing line explains itself: its parts are there, with a measured figure.
    assert re.search(r"three sync lookups that each await_ a 50 ms sleep: \d+ ms in all", out), out
    assert "one after another they would take 150 ms" in out
    assert "Account().balance = 42: a property that awaits (greenback.autoawait)" in out
    assert "= 3: a sync for loop over an async generator (0, 1, 2)" in out
    assert out.rstrip().endswith(": done")
