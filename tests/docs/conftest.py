"""tests/docs/site checks the built documentation site.

It needs the HTML that ``hatch run docs:build`` makes (and Chromium for the
browser tests), so it runs through ``hatch run docs:test``, which sets
GREENBACK_DOCS_HTML to the built site. Elsewhere (``hatch test``) it is not
collected at all.
"""

import os

collect_ignore_glob = [] if os.environ.get("GREENBACK_DOCS_HTML") else ["site/*"]
