"""What only the SQL stores promise: SQLite settings, URLs, failing closed, persistence, and
atomicity across engines (as several server processes would have) on one database."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import AsyncExitStack, closing
from datetime import timedelta
from pathlib import Path

import pytest

from tests.storage.builders import T0, make_challenge, make_client, make_event, new_client_id
from tests.storage.conftest import Backend
from tests.storage.test_audit import assert_chain
from zkauth.errors import ConfigurationError, ServiceUnavailable
from zkauth.service.ports import Stores
from zkauth.storage import MEMORY_URL, open_sql_stores, open_stores
from zkauth.storage.memory import MemoryClientStore
from zkauth.storage.sql import SqlClientStore

SOON = T0 + timedelta(seconds=10)
ENGINES = 5


async def open_many(stack: AsyncExitStack, backend: Backend, count: int = ENGINES) -> list[Stores]:
    opened = []
    for _ in range(count):
        stores = await backend.open()
        stack.push_async_callback(stores.close)
        opened.append(stores)
    return opened


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    async with await open_sql_stores(f"sqlite:///{path}") as stores:
        await stores.clients.create(make_client())

    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_new_file_goes_to_wal_mode_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    """Two processes starting on a new database: SQLite refuses the switch to WAL at once while
    the other holds the write lock (``busy_timeout`` does not apply to it), so the stores'
    connection set-up waits for the lock instead of failing."""
    path = tmp_path / "new.db"
    with closing(sqlite3.connect(path, isolation_level=None, check_same_thread=False)) as other:
        other.execute("CREATE TABLE elsewhere (x)")
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO elsewhere VALUES (1)")
        probe = sqlite3.connect(path, isolation_level=None)
        with closing(probe), pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("PRAGMA journal_mode=WAL")  # what the set-up meets
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, other.execute, "COMMIT")
        async with await open_sql_stores(f"sqlite:///{path}", upgrade=True) as stores:
            await stores.clients.create(make_client())

    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///file::memory:?cache=shared&uri=true",
        "sqlite+aiosqlite:///file:zkauth?mode=memory&cache=shared&uri=true",
    ],
)
async def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory stores"):
        await open_sql_stores(url)


async def test_a_file_merely_named_memory_is_a_file(tmp_path: Path) -> None:
    client = make_client()
    async with await open_sql_stores(f"sqlite:///{tmp_path / 'memory.db'}") as stores:
        await stores.clients.create(client)
    async with await open_sql_stores(f"sqlite:///{tmp_path / 'memory.db'}") as stores:
        assert await stores.clients.get(client.client_id) == client


async def test_open_stores_dispatches_on_the_url(tmp_path: Path) -> None:
    async with (
        await open_stores(MEMORY_URL) as memory,
        await open_stores(f"sqlite:///{tmp_path / 'x.db'}") as sql,
    ):
        assert isinstance(memory.clients, MemoryClientStore)
        assert isinstance(sql.clients, SqlClientStore)


async def test_unreachable_postgresql_fails_closed() -> None:
    with pytest.raises(ServiceUnavailable):
        await open_sql_stores("postgresql://postgres@127.0.0.1:1/zkauth_nowhere")


async def test_sqlite_file_in_a_missing_directory_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        await open_sql_stores(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")


async def test_data_and_chain_survive_reopening(sql_backend: Backend) -> None:
    client = make_client()
    async with await sql_backend.open() as stores:
        await stores.clients.create(client)
        await stores.audit.append(make_event(0))

    async with await sql_backend.open() as stores:
        assert await stores.clients.get(client.client_id) == client
        await stores.audit.append(make_event(1))
        assert_chain(list(await stores.audit.entries(10)))


async def test_consume_is_exactly_once_across_engines(sql_backend: Backend) -> None:
    async with AsyncExitStack() as stack:
        engines = await open_many(stack, sql_backend)
        challenge = make_challenge(new_client_id())
        await engines[0].challenges.issue(challenge)

        results = await asyncio.gather(
            *(
                engines[i % ENGINES].challenges.consume(
                    challenge.challenge_id, challenge.client_id, SOON
                )
                for i in range(50)
            )
        )

    assert sum(r is not None for r in results) == 1


async def test_issue_across_engines_leaves_one_live_challenge(sql_backend: Backend) -> None:
    client_id = new_client_id()
    issued = [make_challenge(client_id) for _ in range(15)]
    async with AsyncExitStack() as stack:
        engines = await open_many(stack, sql_backend)
        await asyncio.gather(
            *(engines[i % ENGINES].challenges.issue(c) for i, c in enumerate(issued))
        )

        results = [
            await engines[0].challenges.consume(c.challenge_id, client_id, SOON) for c in issued
        ]

    assert sum(r is not None for r in results) == 1


async def test_audit_appends_across_engines_never_fork_the_chain(sql_backend: Backend) -> None:
    async with AsyncExitStack() as stack:
        engines = await open_many(stack, sql_backend)
        await asyncio.gather(*(engines[n % ENGINES].audit.append(make_event(n)) for n in range(40)))
        stored = list(await engines[0].audit.entries(100))

    assert len(stored) == 40
    assert_chain(stored)


async def test_create_across_engines_lets_one_win(sql_backend: Backend) -> None:
    client_id = new_client_id()
    async with AsyncExitStack() as stack:
        engines = await open_many(stack, sql_backend)
        results = await asyncio.gather(
            *(engines[i % ENGINES].clients.create(make_client(client_id)) for i in range(15))
        )

    assert results.count(True) == 1
