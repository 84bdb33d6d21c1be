"""The README's demo runs, as a user would run it: on SQLite, and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "sqlalchemy_demo.py"

EXPECTED = [
    "saved ada@example.org with 2 posts",
    "before_flush said: refusing bot@spam.example: its domain is blocked",
    "lazy-loaded ada's posts: ['Notes', 'Engines']",
    "audit: created BlockedDomain spam.example",
    "audit: created User ada@example.org",
    "audit: created Post Notes",
    "audit: created Post Engines",
]


def run_demo(*args: str) -> List[str]:
    proc = subprocess.run(
        [sys.executable, str(DEMO), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"demo failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.splitlines()


def test_demo_on_sqlite() -> None:
    assert run_demo() == EXPECTED


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_demo_on_postgresql(postgres_database: str, driver: str) -> None:
    url = make_url(postgres_database).set(drivername=f"postgresql+{driver}")
    assert run_demo("--url", url.render_as_string(hide_password=False)) == EXPECTED
