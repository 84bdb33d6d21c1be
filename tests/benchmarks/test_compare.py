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
        assert figure["best"] > 0
    assert "with_portal_run_sync(noop)" in proc.stdout
