"""Build-time metadata hook for a greenback distribution.

The greenback distributions are released together and always depend on each
other at exactly the same version. So that the version is written down only
once (in greenback-core's ``src/greenback/_version.py``), this distribution's
``pyproject.toml`` lists its requirements under
``[tool.hatch.metadata.hooks.custom]`` with a ``{version}`` placeholder, and
this hook substitutes the version that hatchling resolved for the project.

When a wheel is built from an sdist, hatchling takes the already-resolved
metadata from PKG-INFO and this hook has nothing left to do.
"""

from __future__ import annotations

from typing import Any, Dict, List

from hatchling.metadata.plugin.interface import MetadataHookInterface


def _fill(requirements: List[str], version: str) -> List[str]:
    return [req.replace("{version}", version) for req in requirements]


class SiblingPinHook(MetadataHookInterface):
    PLUGIN_NAME = "custom"

    def update(self, metadata: Dict[str, Any]) -> None:
        version = metadata.get("version")
        if not version:
            raise ValueError("version must be resolved before sibling requirements are pinned")

        dependencies = self.config.get("dependencies")
        if dependencies is not None:
            metadata["dependencies"] = _fill(list(dependencies), version)

        extras = self.config.get("optional-dependencies")
        if extras is not None:
            metadata["optional-dependencies"] = {
                name: _fill(list(reqs), version) for name, reqs in extras.items()
            }
