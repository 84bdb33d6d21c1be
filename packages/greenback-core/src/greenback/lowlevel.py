"""What loop integrations, greenlet bridges and debuggers build on.

:mod:`greenback` itself is the everyday API. This module is the rest: the
extension points through which greenback learns about event loops and other
libraries' greenlets, and the parts of a portal that tools walking a task's
stack need. It follows the same versioning promise as the everyday API
(semantic versioning; see the changelog). greenback's own integrations
(``greenback_asyncio``, ``greenback_trio``, ``greenback_sqlalchemy``) use
nothing but this module and the everyday API.

Portals
    A :class:`Portal` stands where a loop expects a task's coroutine (or is
    awaited by one) and runs the wrapped code in a *worker* greenlet.
    :func:`current_portal`, :func:`portal_for_task` and :func:`find_portal_in`
    find one; :func:`make_task_portal` makes the one an integration installs
    as a task's coroutine; :func:`is_portal_worker` tells a worker greenlet.

Loop integrations
    :class:`LoopIntegration` is everything greenback needs from an event
    loop. Integrations register in the ``greenback.loops`` entry-point group
    (:data:`ENTRY_POINT_GROUP`) under the name :mod:`sniffio` reports for
    their loop, or by hand with :func:`register_integration`.

Greenlet bridges and await fallbacks
    :class:`GreenletBridge` and :func:`install_bridge` let portals speak
    another library's "switch an awaitable to my parent greenlet" protocol
    (greenback_sqlalchemy is built on one). :func:`add_await_fallback` lets a
    library handle :func:`greenback.await_` where no portal is reachable.
"""

from ._api import portal_for_task as portal_for_task
from ._bridges import (
    GreenletBridge as GreenletBridge,
    install_bridge as install_bridge,
    installed_bridges as installed_bridges,
    uninstall_bridge as uninstall_bridge,
)
from ._exceptions import MissingIntegrationError as MissingIntegrationError
from ._engine import (
    NOT_HANDLED as NOT_HANDLED,
    Portal as Portal,
    add_await_fallback as add_await_fallback,
    current_portal as current_portal,
    find_portal_in as find_portal_in,
    is_portal_worker as is_portal_worker,
    make_task_portal as make_task_portal,
    remove_await_fallback as remove_await_fallback,
)
from ._loops import (
    ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
    LoopIntegration as LoopIntegration,
    current_integration as current_integration,
    integration_for as integration_for,
    integration_for_task as integration_for_task,
    register_integration as register_integration,
)

__all__ = [
    # portals
    "Portal",
    "current_portal",
    "portal_for_task",
    "find_portal_in",
    "make_task_portal",
    "is_portal_worker",
    # loop integrations
    "LoopIntegration",
    "ENTRY_POINT_GROUP",
    "register_integration",
    "integration_for",
    "integration_for_task",
    "current_integration",
    "MissingIntegrationError",
    # greenlet bridges and await fallbacks
    "GreenletBridge",
    "install_bridge",
    "uninstall_bridge",
    "installed_bridges",
    "add_await_fallback",
    "remove_await_fallback",
    "NOT_HANDLED",
]
