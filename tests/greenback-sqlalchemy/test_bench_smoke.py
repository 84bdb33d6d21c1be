"""benchmarks/sqlalchemy_bench.py still runs (a --quick smoke run, not a measurement)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "sqlalchemy_bench.py"


def test_benchmark_smoke_run(postgres_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--pg-url", postgres_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for database in ("aiosqlite", "postgresql+asyncpg"):
        assert f"{database}: portal " in proc.stdout, proc.stdout
    assert "not measured" not in proc.stdout, proc.stdout
