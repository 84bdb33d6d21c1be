"""benchmarks/compare.py: how it turns samples into ratios, and a smoke run of ours alone."""

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


def test_the_ratio_is_the_median_of_the_per_round_ratios(compare):
    # Round 2 ran while the machine was slow for one side only: pooling all
    # samples would give 2.0/2.0 = 1.0 or so; pairing rounds keeps 0.5.
    ours = cell([1.0, 1.0], [4.0, 4.0], [1.0, 1.0])
    theirs = cell([2.0, 2.0], [2.0, 2.0], [2.0, 2.0])
    entry = {"round_ratios": [0.5, 2.0, 0.5]}
    assert compare.paired_ratio(entry, [ours, theirs]) == 0.5


def test_without_paired_rounds_the_ratio_is_that_of_the_overall_figures(compare):
    ours = cell([1.0, 3.0])
    theirs = cell([4.0, 4.0])
    assert compare.paired_ratio({}, [ours, theirs]) == 0.5
    assert compare.paired_ratio({}, [ours, None]) is None


def test_a_smoke_run_of_ours_alone_needs_no_network_and_writes_json(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare.py"), "--only", "ours", "--rows", "3,4",
         "--loops", "asyncio", "--rounds", "1", "--samples", "1", "--target-ms", "5", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    data = json.loads(out.read_text())
    for row in ("3", "4"):
        figure = data["rows"][row]["asyncio"]["ours"]
        assert figure["errors"] == []
        assert figure["median"] > 0
    assert "with_portal_run_sync(noop)" in proc.stdout
