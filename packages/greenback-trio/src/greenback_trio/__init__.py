"""greenback's Trio integration, including tree portals.

greenback finds this integration through the ``greenback.loops`` entry point;
``greenback.AutoPortalInstrument`` (exported through the integration's
:attr:`~greenback.lowlevel.LoopIntegration.exports`) and the tree-portal
functions resolve here.
"""

from typing import TYPE_CHECKING, Any

from ._integration import TrioIntegration as TrioIntegration, integration as integration

if TYPE_CHECKING:
    from ._tree import AutoPortalInstrument as AutoPortalInstrument

__all__ = ["AutoPortalInstrument", "TrioIntegration", "integration"]


def __getattr__(name: str) -> Any:
    # Tree portals load on first use (see _integration._TreeExports).
    if name == "AutoPortalInstrument":
        from ._tree import AutoPortalInstrument

        return AutoPortalInstrument
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
