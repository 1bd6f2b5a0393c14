"""PostgreSQL through asyncpg directly: the stores' statements without SQLAlchemy's asyncio layer.

SQLAlchemy's asyncio support runs each statement through a greenlet bridge, an execution context
and generic result handling: about 160 µs of CPU for a primary-key SELECT on this machine, where
asyncpg alone takes about 30. A login runs six round trips. So once the migrations are done
(through SQLAlchemy and Alembic, ``migrate.py``), the stores run on an asyncpg pool, each
statement compiled by SQLAlchemy for asyncpg's ``$n`` placeholders (``prepared.py``): the hot
ones once, the rest when they come (asyncpg caches its server-side prepared statements per
connection either way).

Reads run outside any transaction (they are single statements); writes in one transaction per
unit of work. A connection goes back to the pool without asyncpg's default reset query (advisory
unlock, ``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``: one more round trip on every release): the
stores leave no session state behind to reset. They take only transaction-scoped advisory locks,
open no cursors, listen to nothing and set no session settings; an open transaction is still
rolled back by asyncpg before the connection is reused.

Unreachable, refused or exhausted (no free connection within the pool's timeout):
:class:`~zkauth.errors.ServiceUnavailable`, so callers fail closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL

from zkauth.errors import ServiceUnavailable
from zkauth.storage.engine import UNAVAILABLE, PoolLimits
from zkauth.storage.executor import Executor, Parameters, Result
from zkauth.storage.prepared import Prepared, RawResult, as_sqlalchemy

__all__ = ["PgSource"]

#: What a lost, refused or unusable connection raises, from asyncpg or the socket under it.
_CONNECTION_ERRORS: Final = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    OSError,
)
_COUNT: Final = re.compile(r"(\d+)$")


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3`` or ``INSERT 0 1``."""
    found = _COUNT.search(status)
    return int(found.group(1)) if found else -1


class _Direct:
    """An :class:`~zkauth.storage.executor.Executor` on one asyncpg connection."""

    __slots__ = ("_conn", "_source")

    def __init__(self, conn: asyncpg.Connection, source: PgSource) -> None:
        self._conn = conn
        self._source = source

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Result:
        prepared = self._source.prepared(statement)
        try:
            if isinstance(parameters, Sequence):  # executemany: no rows come back
                rows = [prepared.positional(p) for p in parameters]
                await self._conn.executemany(prepared.sql, rows)
                return RawResult(-1, [])
            args = prepared.positional(parameters or {})
            if prepared.returns_rows:
                records = await self._conn.fetch(prepared.sql, *args)
                return RawResult(len(records), [prepared.convert(r) for r in records])
            return RawResult(_rowcount(await self._conn.execute(prepared.sql, *args)), [])
        except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
            raise as_sqlalchemy(
                exc,
                prepared.sql,
                integrity=isinstance(exc, asyncpg.IntegrityConstraintViolationError),
                operational=isinstance(exc, _CONNECTION_ERRORS),
            ) from exc


class PgSource:
    """A :class:`~zkauth.storage.executor.Source` on an asyncpg pool (open with :meth:`open`)."""

    dialect = "postgresql"
    coalesce_reads = True

    def __init__(self, pool: asyncpg.Pool, limits: PoolLimits, hot: Iterable[Executable]) -> None:
        self._pool = pool
        self._timeout = limits.timeout_seconds
        self._sql_dialect = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
        # Keyed by identity: the statements are module constants, kept alive by ``Prepared``.
        self._hot = {id(st): Prepared(st, self._sql_dialect) for st in hot}

    @classmethod
    async def open(
        cls, url: URL, limits: PoolLimits | None = None, hot: Iterable[Executable] = ()
    ) -> PgSource:
        """A pool of up to ``size + max_overflow`` connections to the database at ``url``."""
        limits = limits or PoolLimits()
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=0, max_size=limits.size + limits.max_overflow, reset=_no_session_state
            )
        except _CONNECTION_ERRORS as exc:
            raise ServiceUnavailable("database unavailable") from exc
        return cls(pool, limits, hot)

    def prepared(self, statement: Executable) -> Prepared:
        return self._hot.get(id(statement)) or Prepared(statement, self._sql_dialect)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            conn = await self._pool.acquire(timeout=self._timeout)
        except (TimeoutError, *_CONNECTION_ERRORS) as exc:
            raise ServiceUnavailable("database unavailable") from exc
        try:
            yield conn
        finally:
            await self._pool.release(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Executor]:
        async with self._connection() as conn:
            try:
                yield _Direct(conn, self)
            except UNAVAILABLE as exc:
                raise ServiceUnavailable("database unavailable") from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Executor]:
        async with self._connection() as conn:
            transaction = conn.transaction()
            try:
                await transaction.start()
                yield _Direct(conn, self)
                await transaction.commit()
            except BaseException as exc:
                await _roll_back(transaction)
                if isinstance(exc, (*UNAVAILABLE, *_CONNECTION_ERRORS)):
                    raise ServiceUnavailable("database unavailable") from exc
                raise

    async def dispose(self) -> None:
        await self._pool.close()


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to send (see the module's docstring). asyncpg has
    already rolled back a transaction left open, without a round trip when there is none."""


async def _roll_back(transaction: Any) -> None:
    """Roll back, even if the request is being cancelled. A transaction that never started or a
    broken connection has nothing to undo (the server rolls back on disconnect, and the pool
    resets or discards the connection on release)."""
    with contextlib.suppress(asyncpg.PostgresError, *_CONNECTION_ERRORS):
        await asyncio.shield(transaction.rollback())
