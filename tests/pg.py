"""The local PostgreSQL for tests: databases of their own, created and dropped by the tests.

PostgreSQL is the local server at 127.0.0.1:5432 (user ``postgres``, trust auth). Unreachable,
its tests are skipped with the reason, unless ``ZKAUTH_REQUIRE_SERVICES=1`` (CI): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from zkauth.storage.schema import metadata

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
#: Every table zkauth writes, emptied between tests that share one database (from the schema,
#: so a table a migration adds is never left out).
TABLES = tuple(table.name for table in metadata.sorted_tables)


async def _run_admin(statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction: AUTOCOMMIT.
    engine = create_async_engine(
        f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres",
        isolation_level="AUTOCOMMIT",
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _admin(statement: str) -> None:
    """Run an admin statement on a thread of its own: callers may be inside a running loop
    (a session fixture first requested by an async test), where no other loop may run."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _run_admin(statement)).result()


def own_postgres_database() -> Iterator[str]:
    """Create a uniquely named, empty database, yield its URL, drop it (and only it) at the end.

    Unreachable PostgreSQL skips, or fails under ``ZKAUTH_REQUIRE_SERVICES=1``.
    """
    name = f"zkauth_test_{secrets.token_hex(8)}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except (OSError, SQLAlchemyError) as exc:
        reason = f"PostgreSQL at {PG_HOST}:{PG_PORT} is unavailable: {exc!r}"
        if os.environ.get("ZKAUTH_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (ZKAUTH_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def empty_tables(url: str) -> None:
    """Remove every row zkauth wrote, keeping the schema (fast, between tests)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
    finally:
        await engine.dispose()
