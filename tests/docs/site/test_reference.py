"""Every public name of the four distributions has an entry in the built API reference.

For each module, the names in its ``__all__`` (and, for ``greenback``,
``AutoPortalInstrument``, which ``__all__`` leaves out so that a star import
does not import Trio) must each have an entry: an element whose id is the
name's full dotted path, showing the signature (a callable's parameters; a
value's type or value) and the docstring (its first sentence, word for word),
or, for values that have no docstring of their own, a description.
"""

from __future__ import annotations

import importlib
import inspect
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

MODULES = {
    "greenback": ["AutoPortalInstrument"],
    "greenback.lowlevel": [],
    "greenback_asyncio": [],
    "greenback_trio": [],
    "greenback_sqlalchemy": [],
}


class _Entries(HTMLParser):
    """Collects, per ``<dt id=...>``, the text of that dt and of the dd that follows it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.entries: Dict[str, Tuple[str, str]] = {}
        self._id: Optional[str] = None
        self._dt: List[str] = []
        self._dd: List[str] = []
        self._in_dt = False
        self._dd_depth = 0  # nesting depth of dd elements inside the one being read
        self._want_dd = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        if tag == "dt" and not self._dd_depth:
            ident = dict(attrs).get("id")
            if ident:
                self._id, self._dt, self._in_dt = ident, [], True
        elif tag == "dd":
            if self._dd_depth:
                self._dd_depth += 1
            elif self._want_dd:
                self._dd, self._dd_depth, self._want_dd = [], 1, False

    def handle_endtag(self, tag: str) -> None:
        if tag == "dt" and self._in_dt:
            self._in_dt, self._want_dd = False, True
        elif tag == "dd" and self._dd_depth:
            self._dd_depth -= 1
            if not self._dd_depth and self._id is not None:
                self.entries[self._id] = (_squash("".join(self._dt)), _squash("".join(self._dd)))
                self._id = None

    def handle_data(self, data: str) -> None:
        if self._in_dt:
            self._dt.append(data)
        elif self._dd_depth:
            self._dd.append(data)


def _squash(text: str) -> str:
    return " ".join(text.replace("¶", " ").split())


def _words(text: str) -> List[str]:
    return re.findall(r"[A-Za-z0-9_]+", text)


def _first_sentence(doc: str) -> str:
    """The docstring's first sentence, as its reST renders to text."""
    paragraph = doc.strip().split("\n\n")[0]
    # :role:`~a.b.c` renders as c, :role:`x` as x; ``x`` and *x* as x.
    paragraph = re.sub(r":[\w:]+:`~(?:[\w.]+\.)?([^`]+)`", r"\1", paragraph)
    paragraph = re.sub(r":[\w:]+:`([^`]+)`", r"\1", paragraph)
    paragraph = paragraph.replace("``", "").replace("*", "")
    return re.split(r"(?<=[.:;])\s", " ".join(paragraph.split()))[0]


@pytest.fixture(scope="module")
def entries(site_dir: Path) -> Dict[str, Tuple[str, str]]:
    found: Dict[str, Tuple[str, str]] = {}
    for page in sorted((site_dir / "reference").glob("*.html")):
        parser = _Entries()
        parser.feed(page.read_text(encoding="utf-8"))
        found.update(parser.entries)
    assert found, f"no API entries in {site_dir / 'reference'}"
    return found


def public_names() -> List[Tuple[str, str]]:
    names = []
    for module_name, extra in MODULES.items():
        module = importlib.import_module(module_name)
        for name in [*module.__all__, *extra]:
            names.append((module_name, name))
    return names


def test_every_module_has_an_all() -> None:
    for module_name in MODULES:
        assert importlib.import_module(module_name).__all__, module_name


@pytest.mark.parametrize(("module_name", "name"), public_names(), ids=lambda v: v)
def test_reference_entry(entries: Dict[str, Tuple[str, str]], module_name: str, name: str) -> None:
    full = f"{module_name}.{name}"
    assert full in entries, f"{full} has no entry in the API reference"
    signature, body = entries[full]
    assert name in signature, f"{full}: the entry shows {signature!r}"
    obj: Any = getattr(importlib.import_module(module_name), name)
    if inspect.isclass(obj) or inspect.isroutine(obj):
        try:
            params = list(inspect.signature(obj).parameters)
        except (TypeError, ValueError):  # no signature to show (a builtin's)
            params = []
        # The entry's signature names every parameter, in order.
        shown = _words(signature.split(name, 1)[1])
        positions = [shown.index(p) if p in shown else -1 for p in params]
        assert -1 not in positions and positions == sorted(positions), (
            f"{full}: the entry's signature {signature!r} does not show the parameters {params}"
        )
        doc = inspect.getdoc(obj)
        assert doc, f"{full} has no docstring"
        first = _words(_first_sentence(doc))
        words = _words(body)
        assert any(words[i : i + len(first)] == first for i in range(len(words))), (
            f"{full}: the entry does not show its docstring's first sentence {_first_sentence(doc)!r}; it says {body[:300]!r}"
        )
    else:
        # A value: its entry shows its type or its value, and says what it is.
        assert ":" in signature or "=" in signature, f"{full}: the entry shows no type or value: {signature!r}"
        assert len(_words(body)) >= 5, f"{full}: the entry has no description: {body!r}"
