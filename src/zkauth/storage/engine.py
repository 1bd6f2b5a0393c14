"""Engines for the SQL stores and the migrations: URL → async driver, SQLite's connection set-up,
PostgreSQL's pool limits, and the two kinds of transaction opened on them.

Kept apart from ``sql.py`` so that the migrations (``migrate.py``) run on exactly the engine set-up
the stores use (on SQLite: real transactions with ``BEGIN IMMEDIATE``, so DDL is atomic and
concurrent upgrades serialise) without an import cycle.

* SQLite: every write transaction starts with ``BEGIN IMMEDIATE``. A transaction that read first
  and then writes cannot wait for the write lock in WAL mode (``SQLITE_BUSY_SNAPSHOT``); taking it
  up front lets ``busy_timeout`` do its job.
* PostgreSQL: the pool is sized by settings (:class:`PoolLimits`), because the product of pool
  size, workers and hosts must stay under the server's ``max_connections``.

Connection failures surface as :class:`~zkauth.errors.ServiceUnavailable`: callers fail closed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, InvalidRequestError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from zkauth.errors import ConfigurationError, ServiceUnavailable

__all__ = [
    "SQLITE_BUSY_SECONDS",
    "UNAVAILABLE",
    "Database",
    "PoolLimits",
    "async_url",
    "open_database",
    "sqlite_busy",
    "sqlite_file_missing",
    "sqlite_on_begin",
    "sqlite_pragmas",
]

_ASYNC_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}
_BACKENDS: Final = frozenset({"sqlite", "postgresql"})
#: How long a connection waits for a lock: ``busy_timeout``, and switching a new file to WAL.
SQLITE_BUSY_SECONDS: Final = 5.0
_SQLITE_PRAGMAS: Final = (
    "PRAGMA synchronous=NORMAL",  # durable at checkpoints; safe against corruption in WAL mode
    "PRAGMA foreign_keys=ON",
)
_BEGIN_OPTION: Final = "zkauth_sqlite_begin"
UNAVAILABLE: Final = (OperationalError, InterfaceError, PoolTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Connections one process may hold on PostgreSQL: ``size`` kept open, ``max_overflow`` more
    under load, and ``timeout_seconds`` to wait for one before the request fails closed (503)
    rather than queueing without bound. SQLite keeps SQLAlchemy's defaults: it has no server."""

    size: int = 10
    max_overflow: int = 5
    timeout_seconds: float = 5.0


def async_url(raw: str) -> URL:
    """``raw`` with its async driver (aiosqlite, asyncpg) chosen, refusing what cannot work.

    Messages never echo the URL whole: it may hold a password.
    """
    url = _parse(raw)
    url = url.set(drivername=_ASYNC_DRIVERS.get(url.drivername, url.drivername))
    if url.get_backend_name() not in _BACKENDS:
        raise ConfigurationError(
            f"unsupported database {url.get_backend_name()!r}: use sqlite:// or postgresql://"
        )
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if in_memory or url.query.get("mode") == "memory":
            # One shared in-memory connection cannot hold concurrent transactions.
            raise ConfigurationError("in-memory SQLite is not supported: use the memory stores")
        if "uri" not in url.query and not Path(database).expanduser().parent.is_dir():
            # Found here rather than by a failing connect, which aiosqlite 0.22 handles badly
            # (its worker thread later calls into the possibly closed event loop).
            raise ConfigurationError(f"directory of the SQLite database does not exist: {database}")
    return url


def _parse(raw: str) -> URL:
    try:
        return make_url(raw)
    except ArgumentError:
        raise ConfigurationError("the database URL cannot be parsed") from None


def sqlite_file_missing(raw: str) -> bool:
    """Whether ``raw`` names a plain SQLite file that does not exist (yet): connecting would
    create it, which a read-only question such as "which revision?" must not do."""
    url = _parse(raw)
    if url.get_backend_name() != "sqlite" or "uri" in url.query or not url.database:
        return False
    return url.database != ":memory:" and not Path(url.database).expanduser().exists()


def open_database(raw: str, pool: PoolLimits | None = None) -> Database:
    """An engine on ``raw`` set up as the stores need it. The caller disposes of it."""
    url = async_url(raw)
    options: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        limits = pool or PoolLimits()
        options = {
            "pool_size": limits.size,
            "max_overflow": limits.max_overflow,
            "pool_timeout": limits.timeout_seconds,
        }
    try:
        return Database(create_async_engine(url, **options))
    except (ArgumentError, InvalidRequestError, ImportError) as exc:  # unknown, sync, missing
        raise ConfigurationError(f"unusable database driver {url.drivername!r}: {exc}") from None


def sqlite_pragmas(dbapi_connection: Any, _record: Any, extra: Sequence[str] = ()) -> None:
    """Every SQLite connection's set-up (a ``connect`` event listener), then ``extra`` pragmas."""
    # Take BEGIN away from the sqlite3 module (it skips it before SELECTs and DDL); sqlite_on_begin
    # emits it instead, so every transaction is a real one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Wait for the write lock instead of failing at once.
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        _use_wal(cursor)
        for pragma in (*_SQLITE_PRAGMAS, *extra):
            cursor.execute(pragma)
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode (readers never block the writer, nor it them).

    On a file not yet in WAL mode the switch needs the exclusive lock, and while another
    connection holds the write lock SQLite refuses it at once, without waiting (``busy_timeout``
    does not apply: waiting could deadlock). Two processes starting on a new database meet
    exactly that, so the switch is retried for up to :data:`SQLITE_BUSY_SECONDS`. On a file
    already in WAL mode it is a no-op that takes no lock."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not sqlite_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)  # a new file's first connections only; never once it is in WAL mode
        delay = min(2 * delay, 0.1)


def sqlite_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds a lock (``SQLITE_BUSY…``)."""
    return str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY")


def sqlite_on_begin(conn: Connection) -> None:
    """Emit the transaction's BEGIN (a ``begin`` event listener): ``BEGIN IMMEDIATE`` on an
    engine with the ``zkauth_sqlite_begin`` execution option, plain ``BEGIN`` otherwise."""
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


class Database:
    """An engine and the two kinds of transaction the stores and migrations open on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgresql = engine.dialect.name == "postgresql"
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", sqlite_pragmas)
            event.listen(engine.sync_engine, "begin", sqlite_on_begin)
        self._writer = engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise ServiceUnavailable("database unavailable") from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._writer.begin() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise ServiceUnavailable("database unavailable") from exc

    async def dispose(self) -> None:
        await self.engine.dispose()
