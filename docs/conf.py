"""Sphinx configuration of greenback's documentation site (see README.md here).

Built with ``hatch run docs:build``: offline (no intersphinx, nothing fetched),
warnings are errors, and cross-references are checked (nitpicky).
"""

from __future__ import annotations

import sys
from pathlib import Path

import greenback

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "greenback"
author = "the greenback developers"
copyright = "the greenback developers (MIT licence)"
release = greenback.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "perfcharts",  # _ext/perfcharts.py: the performance page's charts
]

# Markdown (MyST) pages; the contributors' note and the benchmark's raw
# results are not pages.
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md", "performance/results", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist", "substitution"]
# Every heading up to this depth gets an anchor: the troubleshooting page's
# messages are linked to by their heading.
myst_heading_anchors = 3
myst_substitutions = {"release": release}

# -- API reference --------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Our docstrings are plain reST: no napoleon.
python_use_unqualified_type_names = True
# Re-exports (greenback.ensure_portal is greenback._api.ensure_portal) are
# documented under their public names; that is what the reference pages use.
add_module_names = True

# Nitpicky mode checks every cross-reference. Types from the standard library
# and other projects have no page here (no intersphinx: the build is
# offline), so references to them are expected not to resolve; references to
# greenback's own names must.
nitpick_ignore_regex = [
    (r"py:.*", r"(typing|typing_extensions|collections\.abc|types|asyncio|contextvars|contextlib|importlib)(\..*)?"),
    (r"py:.*", r"(trio|sniffio|greenlet|sqlalchemy|IPython|uvloop|anyio)(\..*)?"),
    (r"py:.*", r"(Any|Optional|Callable|Awaitable|AsyncIterator|AsyncIterable|AsyncContextManager|Iterator|Mapping|"
               r"ContextManager|Coroutine|Generic|Protocol|Type|TypeVar|Dict|List|Tuple)"),
    # Type variables and private helper types in signatures.
    (r"py:.*", r"([\w.]*\.)?(T|P|P\.args|P\.kwargs|TaskFactory|SyncDecoratorForAsync)"),
    (r"py:.*", r"(greenlet|Task|AbstractEventLoop|TracebackType|_asyncio\..*)"),
    (r"py:.*", r"(None|bool|int|str|object|type|BaseException|Exception|RuntimeError|TypeError)"),
]

# -- HTML -----------------------------------------------------------------------

html_theme = "furo"
html_title = f"greenback {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_css_files = ["greenback.css"]
html_theme_options = {
    "navigation_with_keys": True,
}
html_last_updated_fmt = None
