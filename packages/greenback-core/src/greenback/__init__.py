"""greenback: call async code from sync code that runs inside an event loop.

An async task opens a *portal* (``await greenback.ensure_portal()``, or one of
the ``with_portal_run*`` functions); from then on any synchronous function that
task calls can use ``greenback.await_(coro)`` as if it had written
``await coro``. Works under asyncio (with ``greenback-asyncio``) and Trio (with
``greenback-trio``), and under any loop with an integration registered in the
``greenback.loops`` entry-point group (see :mod:`greenback.loops`).
"""

from typing import Any

from ._version import __version__ as __version__
from ._engine import await_ as await_
from ._api import (
    ensure_portal as ensure_portal,
    bestow_portal as bestow_portal,
    has_portal as has_portal,
    with_portal_run as with_portal_run,
    with_portal_run_sync as with_portal_run_sync,
    with_portal_run_tree as with_portal_run_tree,
    portals_for_tree as portals_for_tree,
    portals_for_children as portals_for_children,
)
from ._adapters import (
    autoawait as autoawait,
    decorate_as_sync as decorate_as_sync,
    async_context as async_context,
    async_iter as async_iter,
)

# Names that only exist with a loop integration installed, imported on first
# use so that `import greenback` never imports trio.
_LAZY = {"AutoPortalInstrument": ("greenback_trio", "trio")}


def _stackscope_install_glue_() -> None:
    """Teach stackscope to extract stacks through greenback portals.

    stackscope calls this once, the first time it extracts a stack after
    ``greenback`` was imported (and then deletes it from this module); see
    ``greenback._stackscope``.
    """
    from ._stackscope import install

    install()


def __getattr__(name: str) -> Any:
    if name == "_impl":
        # What stackscope 0.2's built-in glue for greenback 1.x reads when
        # stackscope is imported after greenback (see greenback._stackscope).
        import importlib

        return importlib.import_module("greenback._stackscope")
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'greenback' has no attribute {name!r}") from None
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"greenback.{name} is provided by the {module_name.replace('_', '-')} "
            f'distribution, which is not installed; install it with: pip install "greenback[{extra}]"'
        ) from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(list(globals()) + list(_LAZY))


if False:  # pragma: no cover - seen by type checkers only
    from greenback_trio import AutoPortalInstrument as AutoPortalInstrument
