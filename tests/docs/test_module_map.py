"""The README's map of greenback-core's modules names every module, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "packages" / "greenback-core" / "src" / "greenback"


def test_the_readme_maps_every_module_of_greenback_core():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (`[^|]+`) \|", readme, flags=re.MULTILINE)
    mapped = {name for row in rows for name in re.findall(r"`(\w+\.py)`", row)}
    present = {p.name for p in CORE.glob("*.py")} - {"__init__.py", "_version.py"}
    assert mapped == present, f"in the README, not in the package: {sorted(mapped - present)}; in the package, not in the README: {sorted(present - mapped)}"
