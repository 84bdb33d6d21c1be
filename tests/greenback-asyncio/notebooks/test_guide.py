"""The notebook guide (docs/guide/notebooks.md) runs as written.

Its ``ipython`` blocks are cells of one notebook, run in order in a fresh
kernel; a ``print(...)  # value`` line promises that output. Its ``python``
block is the configuration line, used as a kernel's ipython_config.py.
"""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guide" / "notebooks.md"


def blocks(language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), re.S)


def test_the_guide_cells_run_and_print_what_they_promise(kernel_factory):
    kernel = kernel_factory(helpers=False)
    cells = blocks("ipython")
    assert len(cells) >= 5
    for code in cells:
        ran = kernel.run(code).assert_clean()
        promised = [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+# (.+)$", code, re.M)]
        assert ran.stdout.splitlines() == promised, code
    kernel.assert_nothing_left()


def test_the_guide_config_line_loads_the_extension(kernel_factory):
    (config,) = blocks("python")
    kernel = kernel_factory(config)
    ran = kernel.run("print('greenback_asyncio' in get_ipython().extension_manager.loaded, lib(), helper(1))")
    assert ran.assert_clean().stdout == "True 42 1\n"
