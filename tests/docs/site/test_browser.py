"""The built site, as a person sees it: headless Chromium loads it over http.

Checked: the home page and the ``await_`` reference entry render (visible
text, the portal diagram loaded), the how-it-works diagram and the
performance charts load, the site's search finds ``ensure_portal``, and no
page of the site logs a console error (failed loads included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List

import pytest

# The `browser` fixture's type (tests/docs/site/conftest.py), which the test
# files cannot import: tests are imported in importlib mode.
Browser = Any

# The first image whose file name starts with `name`: loaded, with a size.
IMAGE_STATE = """(() => {
  const img = Array.from(document.images).find(i => i.getAttribute('src').split('/').pop().startsWith(%s));
  if (!img) return null;
  const box = img.getBoundingClientRect();
  return {complete: img.complete, naturalWidth: img.naturalWidth, width: box.width, height: box.height, alt: img.alt};
})()"""

VISIBLE_TEXT = """(() => {
  const main = document.querySelector('article') || document.body;
  const box = main.getBoundingClientRect();
  return {text: main.innerText, width: box.width, height: box.height};
})()"""


def image_state(browser: Browser, name: str) -> Any:
    return browser.evaluate(IMAGE_STATE % json.dumps(name))


def assert_renders(browser: Browser, *phrases: str) -> str:
    state = browser.evaluate(VISIBLE_TEXT)
    assert state["width"] > 300 and state["height"] > 300, f"the page's main content is not laid out: {state}"
    for phrase in phrases:
        assert phrase in state["text"], f"{phrase!r} is not visible on the page"
    return str(state["text"])


def assert_image_loaded(browser: Browser, name: str) -> None:
    state = image_state(browser, name)
    assert state is not None, f"no image {name}* on the page"
    assert state["complete"] and state["naturalWidth"] > 0, f"image {name}* did not load: {state}"
    assert state["width"] > 100 and state["height"] > 50, f"image {name}* is not shown: {state}"
    assert state["alt"], f"image {name}* has no alt text"


def test_home_page(browser: Browser, site_url: str, screenshot: Callable[[Browser, str], None]) -> None:
    browser.goto(site_url + "index.html")
    assert "greenback" in browser.evaluate("document.title")
    assert_renders(browser, "greenback lets synchronous code wait for async code", "pip install", "Where to go next")
    assert_image_loaded(browser, "portal")
    # The navigation lists the sections.
    nav = browser.evaluate("document.querySelector('.sidebar-tree').textContent")
    for entry in ("Quick start: asyncio", "API reference", "Troubleshooting", "Performance", "greenback.lowlevel"):
        assert entry in nav
    screenshot(browser, "index")
    assert browser.console_errors() == []


def test_await_reference_entry(browser: Browser, site_url: str, screenshot: Callable[[Browser, str], None]) -> None:
    browser.goto(site_url + "reference/greenback.html#greenback.await_")
    entry = browser.evaluate(
        """(() => {
          const dt = document.getElementById('greenback.await_');
          if (!dt) return null;
          const box = dt.getBoundingClientRect();
          return {signature: dt.innerText, doc: dt.nextElementSibling.innerText,
                  height: box.height, top: box.top, shown: getComputedStyle(dt).visibility};
        })()"""
    )
    assert entry is not None, "no entry with id greenback.await_"
    assert "await_(aw" in entry["signature"]
    assert "equivalent to" in entry["doc"]
    assert entry["height"] > 0 and entry["shown"] == "visible"
    # The browser scrolls to the entry the address names (once laid out).
    browser.wait_until("(() => { const t = document.getElementById('greenback.await_').getBoundingClientRect().top;"
                       " return t >= 0 && t < window.innerHeight; })()", timeout=5)
    assert_renders(browser, "ensure_portal", "with_portal_run_sync")
    screenshot(browser, "reference-await_")
    assert browser.console_errors() == []


def test_diagram_and_charts(browser: Browser, site_url: str, screenshot: Callable[[Browser, str], None]) -> None:
    browser.goto(site_url + "how-it-works.html")
    assert_image_loaded(browser, "portal")
    screenshot(browser, "how-it-works")
    assert browser.console_errors() == []
    browser.goto(site_url + "performance/index.html")
    for chart in ("time-", "memory-", "cold-", "alternatives-"):
        assert_image_loaded(browser, chart)
    screenshot(browser, "performance")
    assert browser.console_errors() == []


def test_search_finds_ensure_portal(browser: Browser, site_url: str, screenshot: Callable[[Browser, str], None]) -> None:
    browser.goto(site_url + "search.html?q=ensure_portal")
    # Sphinx's search runs in the page, after searchindex.js has loaded.
    found = browser.wait_until(
        """(() => {
          const links = Array.from(document.querySelectorAll('#search-results a'));
          return links.length ? links.map(a => a.getAttribute('href') + ' ' + a.innerText) : null;
        })()"""
    )
    assert any("greenback.ensure_portal" in link for link in found), found
    screenshot(browser, "search")
    assert browser.console_errors() == []


def every_page(site_dir: Path) -> List[str]:
    return sorted(p.relative_to(site_dir).as_posix() for p in site_dir.rglob("*.html") if "_static" not in p.parts)


def test_no_page_logs_an_error(browser: Browser, site_dir: Path, site_url: str) -> None:
    pages = every_page(site_dir)
    assert len(pages) >= 20, pages
    problems = {}
    for page in pages:
        browser.goto(site_url + page)
        broken = browser.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        errors = browser.console_errors() + [f"image did not load: {src}" for src in broken]
        if errors:
            problems[page] = errors
    assert problems == {}


@pytest.fixture(autouse=True)
def _fresh_events(browser: Browser) -> None:
    browser.drain_events()
