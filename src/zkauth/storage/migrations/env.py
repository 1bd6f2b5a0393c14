"""How Alembic runs zkauth's migrations; ``zkauth.storage.migrate`` is the way in.

zkauth hands over an open connection in ``config.attributes["connection"]``: a sync facade of an
async engine's connection (through ``AsyncConnection.run_sync``), already inside the transaction
the whole upgrade runs in and, on PostgreSQL, holding the migrations' advisory lock. The same code
therefore serves ``sqlite+aiosqlite://`` and ``postgresql+asyncpg://`` URLs.

Without one (Alembic's own commands given ``alembic_config(url)``, e.g. autogenerate), an engine is
opened on ``sqlalchemy.url`` the way the stores open theirs and the migrations run through
``run_sync`` in a fresh event loop. Offline (``--sql``) mode is not offered: the migrations are
applied by zkauth, not handed around as scripts.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from zkauth.storage.engine import open_database
from zkauth.storage.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; autogenerate must write migrations that way.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    db = open_database(url)
    try:
        async with db.write() as conn:
            await conn.run_sync(_run)
    finally:
        await db.dispose()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("zkauth's migrations run online only: use `zkauth db upgrade`")
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use zkauth.storage.migrate")
    asyncio.run(_run_on_url(url))


_main()
