"""The Python snippets in the READMEs run, and print what their comments say."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READMES = [ROOT / "README.md", ROOT / "packages" / "greenback-asyncio" / "README.md"]


def snippets():
    for readme in READMES:
        text = readme.read_text()
        for index, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
            # Only whole programs: they print something and need nothing else.
            if "print(" in block and "import" in block and "ip.run_cell" not in block:
                yield pytest.param(block, id=f"{readme.parent.name}-{index}")


@pytest.mark.parametrize("code", list(snippets()))
def test_readme_snippet_runs_and_prints_what_it_promises(code, tmp_path):
    if "asyncio.TaskGroup" in code and sys.version_info < (3, 11):
        pytest.skip("the snippet uses asyncio.TaskGroup, new in Python 3.11")
    needs = {"uvloop": "uvloop", "trio": "trio"}
    for module in needs:
        if f"import {module}" in code:
            pytest.importorskip(module, reason=f"the snippet needs {module}")
    script = tmp_path / "snippet.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # A trailing "# value" comment on a print line is the output it promises.
    promised = [m.group(1).strip() for m in re.finditer(r"^print\(.*\)\s+# (.+)$", code, re.M)]
    for line in promised:
        assert line in done.stdout, f"expected {line!r} in output:\n{done.stdout}"
