"""The database schema's versions (Alembic migrations shipped in the package) and the start-up
policy built on them.

The schema is changed only by migrations, never by ``create_all`` behind the operator's back: a
production database is shared by several processes and versions, and whoever upgrades it must
mean to. So a server refuses to start on a database that is not at :data:`HEAD_REVISION`, with a
message saying how to upgrade, unless told to upgrade (``zkauth serve --upgrade-db``). The one
exception is the embedded default's first start: a new, empty SQLite database has nothing to
protect, so it is brought to head silently and ``zkauth serve`` with zero configuration works.

Upgrades are safe to run from several processes at once: on PostgreSQL they run in one
transaction (DDL is transactional there) under an advisory lock, so the second process waits, then
finds the schema at head and does nothing; on SQLite the transaction starts with
``BEGIN IMMEDIATE``, which serialises writers the same way.

No ``alembic.ini`` is needed. Developers write the next revision with Alembic's API, e.g.
``alembic.command.revision(alembic_config("sqlite:///dev.db"), "add x", autogenerate=True)``
on a database upgraded to the current head, then review and edit what it wrote.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import BigInteger, Connection, func, inspect, literal, select

from zkauth.errors import ConfigurationError
from zkauth.storage.engine import Database, open_database, sqlite_file_missing
from zkauth.storage.schema import metadata

__all__ = [
    "HEAD_REVISION",
    "alembic_config",
    "check_schema",
    "current_revision",
    "not_at_head_message",
    "prepare_schema",
    "upgrade",
]

#: The revision this zkauth's code expects (the newest under ``migrations/versions``; a test
#: keeps the two equal).
HEAD_REVISION: Final = "0003"

_MIGRATIONS: Final = Path(__file__).with_name("migrations")
# One 64-bit key for the migrations' advisory lock, derived like the audit chain's.
_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"zkauth.migrations").digest()[:8], "big", signed=True
)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the packaged migrations. ``url`` is only needed by Alembic
    commands that open their own connection (autogenerate, ``check``); zkauth passes its own."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser syntax
    return config


async def upgrade(url: str) -> str | None:
    """Bring the database at ``url`` to :data:`HEAD_REVISION`; returns the revision it was at.

    Safe to run concurrently and repeatedly: see the module docstring.
    """
    db = open_database(url)
    try:
        return await _upgrade(db)
    finally:
        await db.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; ``None`` when no migration was ever applied.

    Asking creates nothing: a SQLite file that does not exist is reported as ``None``.
    """
    if sqlite_file_missing(url):
        return None
    db = open_database(url)
    try:
        async with db.read() as conn:
            return await conn.run_sync(_revision)
    finally:
        await db.dispose()


async def check_schema(url: str) -> None:
    """Raise :class:`~zkauth.errors.ConfigurationError` unless ``url`` is at head."""
    current = await current_revision(url)
    if current != HEAD_REVISION:
        raise ConfigurationError(not_at_head_message(current))


async def prepare_schema(db: Database, *, upgrade: bool) -> None:
    """The start-up policy of the stores (the module docstring says why).

    At head: nothing to do (one read). Otherwise upgrade if ``upgrade`` is true or the database
    is a SQLite one without any table; refuse with a message saying how to upgrade if not.
    """
    async with db.read() as conn:
        current = await conn.run_sync(_revision)
        fresh = current is None and not db.is_postgresql and not await conn.run_sync(_tables)
    if current == HEAD_REVISION:
        return
    if upgrade or fresh:
        await _upgrade(db)
        return
    raise ConfigurationError(not_at_head_message(current))


async def _upgrade(db: Database) -> str | None:
    async with db.write() as conn:
        if db.is_postgresql:
            # Held until this transaction ends, so it cannot outlive a crashed upgrade.
            await conn.execute(select(func.pg_advisory_xact_lock(literal(_LOCK_KEY, BigInteger))))
        return await conn.run_sync(_upgrade_on)


def _upgrade_on(conn: Connection) -> str | None:
    # Read again under the lock: another process may have upgraded while this one waited.
    current = _revision(conn)
    if current == HEAD_REVISION:
        return current
    if current is not None and current not in _known_revisions():
        raise ConfigurationError(not_at_head_message(current))
    if current is None and set(_tables(conn)) & set(metadata.tables):
        raise ConfigurationError(
            "the database has zkauth tables but no migration history (it was created before "
            "zkauth used migrations): zkauth will not guess its schema; move it aside and start "
            "with a new database"
        )
    # Alembic's ``context`` and ``op`` are process-wide proxies: two upgrades interleaving in
    # one process would run each other's DDL on the wrong connection. The database lock taken
    # before getting here (advisory lock, BEGIN IMMEDIATE) lets only one in at a time.
    config = alembic_config()
    # env.py runs the migrations on this connection, inside this transaction.
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
    return current


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _tables(conn: Connection) -> list[str]:
    return inspect(conn).get_table_names()


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def not_at_head_message(current: str | None) -> str:
    """Why a database at ``current`` will not do, and what to run about it."""
    if current is not None and current not in _known_revisions():
        return (
            f"database schema is at {current}, which this zkauth does not know (it needs "
            f"{HEAD_REVISION}; a newer zkauth upgraded the database?): run a zkauth that knows it"
        )
    shown = current or "none (no migration applied)"
    return (
        f"database schema is at {shown}, this zkauth needs {HEAD_REVISION}: "
        "run `zkauth db upgrade` or start with `zkauth serve --upgrade-db`"
    )
