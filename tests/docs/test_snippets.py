"""Every Python code block of the documentation runs, and prints what it promises.

The blocks come from the README files (the repository's and each
distribution's) and from every page of the documentation site
(``docs/**/*.md``). A block fenced as ``python`` (or MyST's
``{code-block} python``) is a whole program: it is run in a fresh
interpreter, in an empty directory, and must exit with status 0. A trailing
``# text`` comment on a top-level ``print(...)`` line promises that text in
what the program prints (comments on indented lines are only comments).

A block that is not a whole program is marked on the line before its fence
(blank lines between are allowed):

* in a docs page, with a MyST comment, which is not rendered:
  ``% snippet: fragment``;
* in a README, with an HTML comment: ``<!-- snippet: fragment -->``.

A fragment is compiled, not run. The same comment can say, separated by
commas, ``python>=3.N``: the block needs that Python (it is skipped, with the
reason, on older ones). Blocks using ``asyncio.TaskGroup``, ``asyncio.Runner``
or ``asyncio.eager_task_factory`` need no such mark. A block importing an
optional module (trio, uvloop, anyio, SQLAlchemy, aiosqlite, IPython) is
skipped, naming it, where that is not installed; the test environments
install all of them.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [ROOT / "README.md", *(ROOT / "packages").glob("*/README.md"), *(ROOT / "docs").rglob("*.md")],
    key=lambda p: p.relative_to(ROOT).as_posix(),
)
EXCLUDED_DIRS = {"_build"}

FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?:python|py|\{code-block\}\s+python|\{code\}\s+python)\s*$")
MARK = re.compile(r"^(?:%\s*snippet:(?P<myst>.*)|<!--\s*snippet:(?P<html>.*?)-->)\s*$")
OPTIONAL_MODULES = ("trio", "uvloop", "anyio", "sqlalchemy", "aiosqlite", "IPython")
# Names that tell a block's oldest Python without a mark (the READMEs use them).
NEWER_APIS = {"asyncio.TaskGroup": (3, 11), "asyncio.Runner": (3, 11), "asyncio.eager_task_factory": (3, 12)}
PROMISE = re.compile(r"^print\(.*\)\s+#\s(?P<text>.+?)\s*$", re.M)


class Snippet(NamedTuple):
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    options: List[str]

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def extract(path: Path) -> Iterator[Snippet]:
    """The Python blocks of one Markdown file, with the options marked before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence = match.group("fence")
        start = index
        body: List[str] = []
        index += 1
        # MyST directive options (":caption: ...") at the top of the block.
        while index < len(lines) and match.group(0).lstrip("`~").startswith("{") and lines[index].startswith(":"):
            index += 1
        while index < len(lines) and not lines[index].startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        options: List[str] = []
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        mark = MARK.match(lines[before].strip()) if before >= 0 else None
        if mark is not None:
            text = mark.group("myst") if mark.group("myst") is not None else mark.group("html")
            options = [o.strip() for o in text.split(",") if o.strip()]
        yield Snippet(path, start + 1, "\n".join(body) + "\n", options)


def snippets() -> Iterator[Snippet]:
    for path in SOURCES:
        if EXCLUDED_DIRS & set(path.relative_to(ROOT).parts):
            continue
        yield from extract(path)


ALL = list(snippets())


def test_the_docs_have_snippets() -> None:
    # The extractor finds the blocks it should: a silent regex would pass everything.
    names = {s.path.name for s in ALL}
    assert {"README.md", "index.md"} <= names
    assert len(ALL) >= 30, [s.name for s in ALL]


def test_options_are_known() -> None:
    for snippet in ALL:
        for option in snippet.options:
            assert option == "fragment" or re.fullmatch(r"python>=3\.\d+", option), (
                f"{snippet.name}: unknown snippet option {option!r}"
            )


def _requirements(snippet: Snippet) -> None:
    for option in snippet.options:
        if option.startswith("python>="):
            wanted = tuple(int(n) for n in option[len("python>=") :].split("."))
            if sys.version_info < wanted:
                pytest.skip(f"the block needs Python {option[len('python>='):]} or newer")
    for api, wanted in NEWER_APIS.items():
        if api in snippet.code and sys.version_info < wanted:
            pytest.skip(f"the block uses {api}, new in Python {wanted[0]}.{wanted[1]}")
    for module in OPTIONAL_MODULES:
        if re.search(rf"^\s*(?:import|from)\s+{module}\b", snippet.code, re.M) and importlib.util.find_spec(module) is None:
            pytest.skip(f"the block imports {module}, which is not installed")


@pytest.mark.parametrize("snippet", ALL, ids=lambda s: s.name)
def test_snippet(snippet: Snippet, tmp_path: Path) -> None:
    code = compile(snippet.code, snippet.name, "exec")  # every block is valid Python
    if "fragment" in snippet.options:
        assert code is not None
        return
    _requirements(snippet)
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=90, cwd=tmp_path
    )
    assert done.returncode == 0, f"{snippet.name} failed:\n{done.stderr}"
    for promise in PROMISE.finditer(snippet.code):
        text = promise.group("text")
        assert text in done.stdout, f"{snippet.name}: expected {text!r} in what it printed:\n{done.stdout}"
