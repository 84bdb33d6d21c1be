"""greenback's asyncio integration.

Installing this distribution is all it takes: greenback finds it through the
``greenback.loops`` entry point the first time a portal is created under
asyncio (the default loop, uvloop, ``asyncio.Runner``, anyio's asyncio backend).
"""

from ._integration import AsyncioIntegration as AsyncioIntegration, integration as integration

__all__ = ["AsyncioIntegration", "integration"]
