"""Backends for the storage contract suite: every test taking ``stores`` runs on each of them.

PostgreSQL is the local server at 127.0.0.1:5432 (user ``postgres``, trust auth). The session
creates its own uniquely named database and drops only that one. Unreachable, its tests are
skipped, unless ``ZKAUTH_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.pg import own_postgres_database
from zkauth.service.ports import Stores
from zkauth.storage import open_memory_stores, open_sql_stores
from zkauth.storage.schema import metadata

_POSTGRES = pytest.param("postgresql", marks=pytest.mark.services, id="postgresql")
ALL_BACKENDS = ["memory", "sqlite", _POSTGRES]
SQL_BACKENDS = ["sqlite", _POSTGRES]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str | None  # None: the in-memory stores

    async def open(self) -> Stores:
        if self.url is None:
            return open_memory_stores()
        return await open_sql_stores(self.url, upgrade=True)

    async def reset(self) -> None:
        """Empty a shared database (PostgreSQL); SQLite files are per test, memory per open.

        The migrations' version table goes too, so the next open migrates from scratch.
        """
        if self.name != "postgresql" or self.url is None:
            return
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.drop_all)
                await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        finally:
            await engine.dispose()


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A database of the test's own, empty: for tests of the schema itself (migrations)."""
    yield from own_postgres_database()


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name: str = request.param
    if name == "memory":
        return Backend(name, None)
    if name == "sqlite":
        return Backend(name, f"sqlite+aiosqlite:///{tmp_path / 'zkauth.db'}")
    return Backend(name, request.getfixturevalue("postgres_url"))


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _backend(request, tmp_path)


# Backends are built in sync fixtures: ``postgres_url`` runs its own loop, which it cannot do
# from inside a running test loop.
@pytest.fixture(params=SQL_BACKENDS)
def any_sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _backend(request, tmp_path)


@pytest.fixture
async def sql_backend(any_sql_backend: Backend) -> Backend:
    """A SQL backend with an empty database, for tests that open several engines on it."""
    await any_sql_backend.reset()
    return any_sql_backend


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[Stores]:
    await backend.reset()
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()
