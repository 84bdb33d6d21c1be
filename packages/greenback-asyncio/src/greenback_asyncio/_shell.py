"""The IPython shell greenback_asyncio may be running in, and what its extension says.

A module of its own because both the extension (_ipython) and nested runs
(_nested) ask, and the extension builds on nested runs.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

# Where the loaded extension keeps itself on the shell (see _ipython).
# greenback's own no-portal error reads it too, to say why a cell has no
# portal (greenback._errors.ipython_hint): keep the two in step.
EXTENSION_ATTRIBUTE = "_greenback_asyncio_extension"


def running_shell() -> Optional[Any]:
    """The IPython shell of this process, if IPython is running one."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return None
    try:
        return get_ipython()
    except Exception:  # pragma: no cover - a half-imported IPython
        return None


def no_portal_hint() -> str:
    """Why code in the running IPython shell has no portal, as the loaded
    extension sees it ('' outside IPython, or when it is not loaded)."""
    extension = getattr(running_shell(), EXTENSION_ATTRIBUTE, None)
    return "" if extension is None else str(extension.no_portal_hint())
