"""benchmarks/compare.py: how it turns samples into ratios, which rows it measures for whom, and smoke runs of ours alone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("greenback_bench_compare", BENCHMARKS / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(*rounds):
    return {"rounds": [list(r) for r in rounds], "errors": [], "unit": "us/op", "n": []}


def run_compare(*args, timeout=180):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare.py"), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_a_figure_is_the_fastest_sample_so_a_slow_spell_on_one_side_does_not_move_the_ratio(compare):
    # Most of ours' samples ran during a spell of the machine running 1.6x
    # slower: a median over all samples would put ours at 1.6 and the ratio
    # at 0.8; the fastest sample keeps the true 0.5.
    ours = cell([1.6, 1.1, 1.6], [1.6, 1.6, 1.6], [1.6, 1.7, 1.6], [1.6, 1.0, 1.5], [1.6, 1.6, 1.6])
    theirs = cell(*([2.0, 2.0, 2.0] for _ in range(5)))
    best, spread = compare.summarize(ours)
    assert best == 1.0
    assert spread is not None and spread >= 0
    assert compare.summarize(theirs) == (2.0, 0.0)


def test_a_cell_without_any_successful_round_has_no_figure(compare):
    assert compare.summarize(cell()) == (None, None)


def test_theirs_gets_ours_versions_and_on_pypy_its_own_venv_and_no_greenlet_pin(compare):
    versions = {"greenlet": "3.1.1", "trio": "0.27.0", "sniffio": "1.3.1", "outcome": "1.3.0"}
    cpython = {"python": "3.9.18", "python_implementation": "CPython", "versions": versions}
    name, pins = compare.theirs_venv_plan(cpython)
    assert name == ".venv-greenback-1.3.0-py3.9"
    assert pins == ["greenback==1.3.0", "trio==0.27.0", "greenlet==3.1.1", "sniffio==1.3.1", "outcome==1.3.0"]
    # PyPy's greenlet module comes with the interpreter (0.4.13 there): pinning
    # the distribution would at best do nothing.
    pypy = {"python": "3.9.16", "python_implementation": "PyPy", "versions": dict(versions, greenlet="0.4.13")}
    name, pins = compare.theirs_venv_plan(pypy)
    assert name == ".venv-greenback-1.3.0-pypy3.9"
    assert pins == ["greenback==1.3.0", "trio==0.27.0", "sniffio==1.3.1", "outcome==1.3.0"]


def test_a_smoke_run_of_ours_alone_needs_no_network_and_writes_json(tmp_path):
    out = tmp_path / "result.json"
    proc = run_compare("--only", "ours", "--rows", "3,4", "--loops", "asyncio",
                       "--rounds", "1", "--samples", "1", "--target-ms", "5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = json.loads(out.read_text())
    for row in ("3", "4"):
        figure = data["rows"][row]["asyncio"]["ours"]
        assert figure["errors"] == []
        assert figure["best"] > 0
    assert "with_portal_run_sync(noop)" in proc.stdout


def test_a_row_group_selects_its_rows_in_table_order(compare):
    assert compare.select_rows("cold") == ["cold.wall", "cold.rss"]
    assert compare.select_rows("alt") == [
        "alt.asyncio_to_thread", "alt.anyio_to_thread", "alt.trio_to_thread", "alt.sqlalchemy_execute"]
    assert compare.select_rows("cold.rss,3,1") == ["1", "3", "cold.rss"]
    with pytest.raises(SystemExit):
        compare.select_rows("cold.cpu")


def test_alternatives_are_ours_only_and_each_runs_under_the_loops_it_exists_for(compare):
    assert compare.row_impls("alt.anyio_to_thread", ["ours", "theirs"]) == ["ours"]
    assert compare.row_impls("cold.wall", ["ours", "theirs"]) == ["ours", "theirs"]
    assert compare.row_loops("alt.anyio_to_thread", ["trio", "asyncio"]) == ["trio", "asyncio"]
    assert compare.row_loops("alt.trio_to_thread", ["trio", "asyncio"]) == ["trio"]
    assert compare.row_loops("alt.asyncio_to_thread", ["trio"]) == []


def test_the_table_says_n_a_where_greenback_1_3_0_has_no_figure(compare):
    results = {
        "3": {"asyncio": {"ours": cell([4.0]), "theirs": cell([8.0])}},
        "alt.asyncio_to_thread": {"asyncio": {"ours": cell([40.0])}},
    }
    lines = []
    summary = compare.print_table(results, ["3", "alt.asyncio_to_thread"], ["asyncio"], ["ours", "theirs"], lines.append)
    alt_line = next(line for line in lines if line.startswith("alt.asyncio_to_thread"))
    assert alt_line.split()[-2:] == ["n/a", "n/a"]
    assert "40.00" in alt_line
    # Only row 3 has a ratio, so only it is in the geometric mean.
    assert summary == {"time": 0.5}


@pytest.mark.skipif(not hasattr(__import__("os"), "wait4"), reason="no os.wait4 here")
def test_a_process_s_peak_rss_and_wall_time_come_from_the_parent(compare):
    # The child holds 64 MiB for a moment: its peak RSS says so, whatever
    # the parent's own size.
    child = "import time; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.2)"
    done = compare.run_process([sys.executable, "-c", child], None, timeout=60)
    assert done.returncode == 0
    assert done.peak_rss_kib / 1024 >= 64
    assert done.wall_s >= 0.2


def test_a_process_that_outlives_its_timeout_is_killed(compare):
    with pytest.raises(subprocess.TimeoutExpired):
        compare.run_process([sys.executable, "-c", "import time; time.sleep(60)"], None, timeout=0.5)


def test_a_quick_cold_start_run_of_ours_times_whole_processes_on_both_loops(tmp_path):
    out = tmp_path / "cold.json"
    proc = run_compare("--quick", "--only", "ours", "--rows", "cold", "--json", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = json.loads(out.read_text())
    assert data["settings"]["rows"] == ["cold.wall", "cold.rss"]
    for loop in ("trio", "asyncio"):
        wall = data["rows"]["cold.wall"][loop]["ours"]
        rss = data["rows"]["cold.rss"][loop]["ours"]
        assert wall["errors"] == rss["errors"] == []
        assert (wall["unit"], rss["unit"]) == ("ms", "MiB")
        # --quick: two rounds of two processes per side, the same processes
        # giving both figures.
        assert [len(r) for r in wall["rounds"]] == [2, 2] == [len(r) for r in rss["rounds"]]
        assert wall["best"] == min(v for r in wall["rounds"] for v in r)
        # A Python process that imported an event loop and ran it: more
        # than a millisecond, less than the timeout; some MiB, not GiB.
        assert 1 < wall["best"] < 60_000
        assert 5 < rss["best"] < 1024
        assert "theirs" not in data["rows"]["cold.wall"][loop]
    assert "cold start" in proc.stdout


def test_rows_of_ours_alone_need_no_greenback_1_3_0_and_are_marked_ours_only_in_the_json(tmp_path):
    # No --only: the rows themselves need no theirs, so the run never sets
    # up (or even looks at) the reference interpreter. The SQLAlchemy row
    # checks its SELECT 1 through greenback_sqlalchemy before timing.
    out = tmp_path / "alt.json"
    proc = run_compare(
        "--rows", "alt.asyncio_to_thread,alt.trio_to_thread,sqlalchemy", "--theirs-python", str(tmp_path / "missing"),
        "--rounds", "1", "--samples", "1", "--target-ms", "5", "--json", str(out),
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = json.loads(out.read_text())
    assert list(data["implementations"]) == ["ours"]
    assert data["settings"]["rows"] == ["alt.asyncio_to_thread", "alt.trio_to_thread", "sqlalchemy.portal"]
    for key, loop in (("alt.asyncio_to_thread", "asyncio"), ("alt.trio_to_thread", "trio"), ("sqlalchemy.portal", "asyncio")):
        row = data["rows"][key]
        assert row["ours_only"] is True
        assert [k for k in row if k in ("trio", "asyncio")] == [loop]
        assert set(row[loop]) == {"ours"}  # no theirs, no ratio
        assert row[loop]["ours"]["errors"] == []
        assert row[loop]["ours"]["best"] > 0
