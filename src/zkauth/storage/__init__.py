"""Adapters for the store ports of ``zkauth.service.ports``: in memory, and SQL (SQLite or
PostgreSQL). :func:`open_stores` picks one from a URL, so settings need only one string."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from zkauth.service.ports import Stores
from zkauth.storage.engine import PoolLimits
from zkauth.storage.memory import open_memory_stores
from zkauth.storage.sql import open_sql_stores

__all__ = [
    "MEMORY_URL",
    "PoolLimits",
    "on_database_server",
    "open_memory_stores",
    "open_sql_stores",
    "open_stores",
]

#: The URL of the in-memory stores (nothing survives the process).
MEMORY_URL = "memory://"


async def open_stores(url: str, *, upgrade: bool = False, pool: PoolLimits | None = None) -> Stores:
    """``memory://`` for the in-memory stores; any SQLAlchemy URL for SQLite or PostgreSQL.

    ``upgrade`` migrates a SQL database to this zkauth's schema instead of refusing to open one
    that is behind (see :func:`open_sql_stores`); ``pool`` sizes PostgreSQL's connection pool.
    The memory stores have no schema and no pool, and ignore both.
    """
    if url == MEMORY_URL:
        return open_memory_stores()
    return await open_sql_stores(url, upgrade=upgrade, pool=pool)


def on_database_server(url: str) -> bool:
    """Whether ``url`` names a database server (PostgreSQL), where every statement is a round
    trip, rather than an embedded store (SQLite, memory)."""
    return url != MEMORY_URL and make_url(url).get_backend_name() == "postgresql"
