"""The schema's migrations on SQLite and PostgreSQL: they reach exactly ``schema.metadata``, they
are idempotent and safe to run concurrently, and the start-up policy refuses what is not at head.

Every PostgreSQL test gets a database of its own (``empty_postgres_url``), dropped at the end.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, insert, inspect, text

from tests.storage.builders import T0, make_client, make_event
from zkauth.errors import ConfigurationError, ServiceUnavailable
from zkauth.service.models import AuditEntry, chain_entry
from zkauth.storage import MEMORY_URL, PoolLimits, open_sql_stores, open_stores
from zkauth.storage.engine import open_database
from zkauth.storage.migrate import (
    HEAD_REVISION,
    alembic_config,
    check_schema,
    current_revision,
    upgrade,
)
from zkauth.storage.schema import audit_entries, audit_values, metadata

T = TypeVar("T")
OUTDATED = (
    rf"database schema is at none \(no migration applied\), this zkauth needs {HEAD_REVISION}: "
    r"run `zkauth db upgrade` or start with `zkauth serve --upgrade-db`"
)
SERVICES = pytest.mark.services


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=SERVICES)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file not created yet, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'zkauth.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


async def on(url: str, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in one write transaction on an engine set up as the stores set up theirs."""
    db = open_database(url)
    try:
        async with db.write() as conn:
            return await conn.run_sync(work)
    finally:
        await db.dispose()


def alembic(conn: Connection, run: Callable[[Any], None]) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    run(config)


def downgrade_to_base(conn: Connection) -> None:
    alembic(conn, lambda config: command.downgrade(config, "base"))


def schema_diff(conn: Connection) -> list[Any]:
    options = {"compare_type": True, "compare_server_default": True}
    return list(compare_metadata(MigrationContext.configure(conn, opts=options), metadata))


def catalogue(conn: Connection) -> list[tuple[Any, ...]]:
    """Everything the database itself records about zkauth's tables, in a comparable form:
    columns, constraints and index definitions (with their WHERE clauses, which Alembic's
    comparison does not look at)."""
    if conn.dialect.name == "sqlite":
        query = "SELECT type, name, tbl_name, sql FROM sqlite_master"
        query += " WHERE tbl_name <> 'alembic_version' ORDER BY name"
        return [tuple(row) for row in conn.execute(text(query))]
    queries = [
        "SELECT table_name, column_name, ordinal_position, data_type, is_nullable,"
        " column_default, character_maximum_length FROM information_schema.columns"
        " WHERE table_schema = current_schema()",
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = current_schema()::regnamespace",
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()",
    ]
    rows = [tuple(row) for query in queries for row in conn.execute(text(query))]
    return sorted((row for row in rows if row[0] != "alembic_version"), key=repr)


def set_revision(conn: Connection, revision: str) -> None:
    conn.execute(text("UPDATE alembic_version SET version_num = :rev"), {"rev": revision})


def test_head_revision_is_the_one_newest_migration() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION]


async def test_upgrade_from_empty_reaches_head_with_exactly_the_schema_module(url: str) -> None:
    assert await current_revision(url) is None

    assert await upgrade(url) is None

    assert await current_revision(url) == HEAD_REVISION
    await check_schema(url)
    assert await on(url, schema_diff) == []


async def test_migrated_catalogue_is_what_create_all_makes(url: str) -> None:
    await upgrade(url)
    migrated = await on(url, catalogue)

    await on(url, downgrade_to_base)
    assert await on(url, catalogue) == []
    await on(url, lambda conn: conn.execute(text("DROP TABLE alembic_version")))
    await on(url, metadata.create_all)

    assert migrated == await on(url, catalogue)


async def test_second_upgrade_changes_nothing(url: str) -> None:
    await upgrade(url)
    client = make_client()
    async with await open_sql_stores(url) as stores:
        await stores.clients.create(client)

    assert await upgrade(url) == HEAD_REVISION

    async with await open_sql_stores(url) as stores:
        assert await stores.clients.get(client.client_id) == client


async def test_concurrent_upgrades_apply_the_migrations_once(url: str, tmp_path: Path) -> None:
    # Four tasks (engines) in this process and two other processes, all at once.
    code = "import asyncio, sys; from zkauth.storage.migrate import upgrade as u; "
    code += "print(asyncio.run(u(sys.argv[1])))"
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, url, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        async with asyncio.timeout(60):  # a lost lock would deadlock, not fail: make it fail
            in_process, out_of_process = await asyncio.gather(
                asyncio.gather(*(upgrade(url) for _ in range(4))),
                asyncio.gather(*(p.communicate() for p in processes)),
            )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert [p.returncode for p in processes] == [0, 0]
    befores = [*in_process, *(out.decode().strip() for out, _ in out_of_process)]
    assert [str(b) for b in befores].count("None") == 1  # one did the work, the rest waited
    assert await current_revision(url) == HEAD_REVISION
    assert await on(url, schema_diff) == []


async def test_check_schema_refuses_an_outdated_database(url: str) -> None:
    await upgrade(url)
    await on(url, downgrade_to_base)

    with pytest.raises(ConfigurationError, match=OUTDATED):
        await check_schema(url)


async def test_a_revision_from_a_newer_zkauth_is_refused_even_with_upgrade(url: str) -> None:
    await upgrade(url)
    await on(url, lambda conn: set_revision(conn, "9999"))

    with pytest.raises(ConfigurationError, match="9999, which this zkauth does not know"):
        await check_schema(url)
    with pytest.raises(ConfigurationError, match="does not know"):
        await upgrade(url)
    assert await current_revision(url) == "9999"


async def test_tables_without_migration_history_are_not_guessed_at(url: str) -> None:
    await on(url, metadata.create_all)

    with pytest.raises(ConfigurationError, match="no migration history"):
        await upgrade(url)


async def test_current_revision_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "zkauth.db"

    assert await current_revision(f"sqlite:///{path}") is None
    with pytest.raises(ConfigurationError, match=OUTDATED):
        await check_schema(f"sqlite:///{path}")
    assert not path.parent.exists()


def test_alembic_commands_run_the_packaged_env_on_a_url(url: str) -> None:
    # Alembic's own commands (how developers autogenerate the next revision) open their own
    # engine from the URL; `check` fails if autogenerate would write anything.
    asyncio.run(upgrade(url))
    command.check(alembic_config(url))


# The start-up policy of the stores.


async def test_a_new_sqlite_database_is_brought_to_head_on_first_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    async with await open_sql_stores(url) as stores:
        await stores.clients.create(make_client())

    assert await current_revision(url) == HEAD_REVISION


async def test_a_sqlite_file_holding_other_tables_is_not_touched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'theirs.db'}"
    await on(url, lambda conn: conn.execute(text("CREATE TABLE theirs (x INTEGER)")))

    with pytest.raises(ConfigurationError, match=OUTDATED):
        await open_sql_stores(url)


async def test_opening_a_database_behind_head_is_refused_unless_upgrading(url: str) -> None:
    await upgrade(url)
    await on(url, downgrade_to_base)

    with pytest.raises(ConfigurationError, match=OUTDATED):
        await open_sql_stores(url)
    async with await open_stores(url, upgrade=True) as stores:
        await stores.clients.create(make_client())
    assert await current_revision(url) == HEAD_REVISION


@SERVICES
async def test_an_empty_postgresql_database_is_not_created_silently(
    empty_postgres_url: str,
) -> None:
    with pytest.raises(ConfigurationError, match=OUTDATED):
        await open_stores(empty_postgres_url)

    assert await current_revision(empty_postgres_url) is None


async def test_the_memory_stores_ignore_upgrade() -> None:
    async with await open_stores(MEMORY_URL, upgrade=True) as stores:
        await stores.clients.create(make_client())


@SERVICES
async def test_postgresql_pool_is_sized_by_its_limits_and_fails_closed_when_exhausted(
    empty_postgres_url: str,
) -> None:
    db = open_database(empty_postgres_url, PoolLimits(size=1, max_overflow=0, timeout_seconds=0.2))
    try:
        async with db.read():
            with pytest.raises(ServiceUnavailable):
                async with db.read():
                    pass
    finally:
        await db.dispose()


# 0002: audit checkpoints.


def insert_entries(conn: Connection, count: int) -> list[AuditEntry]:
    entries = [chain_entry(make_event(0))]
    for n in range(1, count):
        entries.append(chain_entry(make_event(n), prev_seq=n, prev_hash=entries[-1].hash))
    conn.execute(insert(audit_entries), [audit_values(e) for e in entries])
    return entries


async def test_0002_adds_checkpoints_to_a_trail_written_at_0001_and_removes_them(url: str) -> None:
    await on(url, lambda conn: alembic(conn, lambda config: command.upgrade(config, "0001")))
    entries = await on(url, lambda conn: insert_entries(conn, 5))

    assert await upgrade(url) == "0001"

    async with await open_sql_stores(url) as stores:
        assert list(await stores.audit.entries(10)) == entries
        assert list(await stores.audit.checkpoints()) == []
        assert await stores.audit.prune(T0 + timedelta(seconds=2)) == 2
    await on(url, lambda conn: alembic(conn, lambda config: command.downgrade(config, "0001")))
    assert "audit_checkpoints" not in await on(url, lambda conn: inspect(conn).get_table_names())
    assert await current_revision(url) == "0001"
