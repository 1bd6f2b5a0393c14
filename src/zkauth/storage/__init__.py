"""Adapters for the store ports of ``zkauth.service.ports``: in memory, and SQL (SQLite or
PostgreSQL). :func:`open_stores` picks one from a URL, so settings need only one string."""

from __future__ import annotations

from zkauth.service.ports import Stores
from zkauth.storage.memory import open_memory_stores
from zkauth.storage.sql import open_sql_stores

__all__ = ["MEMORY_URL", "open_memory_stores", "open_sql_stores", "open_stores"]

#: The URL of the in-memory stores (nothing survives the process).
MEMORY_URL = "memory://"


async def open_stores(url: str, *, create_schema: bool = True) -> Stores:
    """``memory://`` for the in-memory stores; any SQLAlchemy URL for SQLite or PostgreSQL."""
    if url == MEMORY_URL:
        return open_memory_stores()
    return await open_sql_stores(url, create_schema=create_schema)
