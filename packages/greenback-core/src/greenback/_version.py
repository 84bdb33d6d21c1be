# The one place the greenback release version is written down.
#
# Every distribution in this repository (greenback-core, greenback-asyncio,
# greenback-trio, greenback-sqlalchemy and the greenback metapackage) reads its
# version from this file at build time ([tool.hatch.version] in each
# pyproject.toml), and pins its sibling distributions to the same value.
# Change the version here and nowhere else.
__version__ = "1.4.0.dev0"
