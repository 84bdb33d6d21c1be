"""greenback's Trio integration, including tree portals.

greenback finds this integration through the ``greenback.loops`` entry point;
``greenback.AutoPortalInstrument`` (exported through the integration's
:attr:`~greenback.lowlevel.LoopIntegration.exports`) and the tree-portal
functions resolve here.
"""

from ._integration import TrioIntegration as TrioIntegration, integration as integration
from ._tree import AutoPortalInstrument as AutoPortalInstrument

__all__ = ["AutoPortalInstrument", "TrioIntegration", "integration"]
