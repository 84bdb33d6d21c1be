"""SQLAlchemy 2.x asyncio support for greenback (placeholder until the real module lands)."""
