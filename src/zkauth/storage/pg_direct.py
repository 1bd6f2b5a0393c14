"""PostgreSQL through asyncpg directly: the stores' statements without SQLAlchemy's asyncio layer.

SQLAlchemy's asyncio support runs each statement through a greenlet bridge, an execution context
and generic result handling: about 160 µs of CPU for a primary-key SELECT on this machine, where
asyncpg alone takes about 30. A login runs six round trips. So once the migrations are done
(through SQLAlchemy and Alembic, ``migrate.py``), the stores run on an asyncpg pool, each
statement compiled by SQLAlchemy for asyncpg's ``$n`` placeholders (``prepared.py``): the hot
ones once, the rest when they come (asyncpg caches its server-side prepared statements per
connection either way).

Reads run outside any transaction (they are single statements); writes in one transaction per
unit of work. Every statement is a round trip, so writes whose outcome nobody reads (an audit
event, a challenge, a lockout write) are deferred (``Writer.defer``): they wait for the unit's
next statement or its commit and go with each other as one statement (split, in order, where
one must see another's rows: :func:`_in_order`). A unit of nothing but such writes (a challenge
request's, an enrollment's, a verification's) is that one statement, atomic on its own, with no
BEGIN and COMMIT: the transaction begins only when a statement must go at once. A unit may stand
on a guard (``Writer.guard``: a verification's take of its challenge), an ``UPDATE … RETURNING``
that goes last of that statement, which fails as a whole when the guard returns no row
(:func:`combined_sql`). When the next statement is one of the hot UPDATEs or DELETEs and touches
none of the deferred writes' tables, so it could not have seen their rows anyway, they ride
along with it as data-modifying ``WITH`` queries in front of it.

A connection goes back to the pool without asyncpg's default reset query (advisory unlock,
``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``: one more round trip on every release): the stores
leave no session state behind to reset. They take only transaction-scoped advisory locks,
open no cursors, listen to nothing and set no session settings; an open transaction is still
rolled back by asyncpg before the connection is reused.

Unreachable, refused or exhausted (no free connection within the pool's timeout):
:class:`~zkauth.errors.ServiceUnavailable`, so callers fail closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import asyncpg
from sqlalchemy import Executable, Table
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ClauseElement

from zkauth.errors import ServiceUnavailable
from zkauth.service.ports import Stale
from zkauth.storage.engine import UNAVAILABLE, PoolLimits
from zkauth.storage.executor import Executor, Parameters, Result, Writer, deferrable, guarding
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
_PLACEHOLDER: Final = re.compile(r"\$(\d+)")
#: The row of an ``INSERT … VALUES (…)`` (a cast's type may hold one level of parentheses).
_VALUES_ROW: Final = re.compile(r"VALUES (\((?:[^()]|\([^()]*\))*\))")
#: Combined statements kept compiled (a request's combinations are a handful).
_COMBINED_KEPT: Final = 64


def _shifted(sql: str, offset: int) -> str:
    """``sql`` with its placeholders ``$1``, ``$2``… renumbered from ``offset + 1`` on. The
    statements are SQLAlchemy's compilations, whose only ``$`` are placeholders."""
    return _PLACEHOLDER.sub(lambda found: f"${int(found.group(1)) + offset}", sql)


def combined_sql(
    inserts: Sequence[tuple[str, int]], main: str | None = None, guard: str | None = None
) -> str:
    """One statement for ``inserts``, each an INSERT (``INSERT … VALUES`` when it has several
    rows) or an UPDATE (its SQL) and how many rows to write with it: their parameters, all the
    rows of the first, then of the second…, are ``$1``, ``$2``… in that order (see
    :meth:`PgSource.combined`). With ``main``, they are ``WITH`` queries of that statement, whose
    parameters follow theirs. With ``guard`` instead, an ``UPDATE … RETURNING`` whose parameters
    follow theirs too, the statement fails as a whole, division by zero (SQLSTATE 22012), when
    the guard returns no row: plain SQL has no assertion, and a failed statement keeps nothing
    of any of its parts."""
    if main is not None and guard is not None:
        raise ValueError("a guarded statement carries no main statement")
    parts, offset = [], 0
    for sql, count in inserts:
        width = _parameter_count(sql)
        parts.append(_shifted(_with_rows(sql, count, width), offset))
        offset += width * count
    names = [f"d{n}" for n in range(len(parts))]
    if guard is not None:
        parts.append(_shifted(guard, offset))
        names.append("g")
        main = "SELECT 1 / count(*) FROM g"
    elif main is None:
        if len(parts) == 1:
            return parts[0]
        main = "SELECT 1"
    else:
        main = _shifted(main, offset)
    # PostgreSQL runs the WITH queries that the main query does not read once it is done, the
    # last listed first (ExecInitModifyTable adds each to the front of the list that
    # ExecPostprocessPlan runs). Listed in reverse, they run in the order they were given: a
    # unit takes its row locks in the order it wrote, which is how every unit agrees on one
    # order (a client's challenge before its row) and none deadlocks with another.
    named = list(zip(names, parts, strict=True))
    ctes = ", ".join(f"{name} AS ({part})" for name, part in reversed(named))
    return f"WITH {ctes} {main}"


def _parameter_count(sql: str) -> int:
    return max((int(n) for n in _PLACEHOLDER.findall(sql)), default=0)


def _with_rows(sql: str, count: int, width: int) -> str:
    """``sql``, an ``INSERT … VALUES`` of one row of ``width`` parameters, for ``count`` rows
    (or any statement, for one)."""
    if count == 1:
        return sql
    found = _VALUES_ROW.search(sql)
    if found is None:
        raise ValueError("only INSERT … VALUES statements can take several deferred rows")
    row = found.group(1)
    rows = ", ".join(_shifted(row, n * width) for n in range(count))
    return f"{sql[: found.start(1)]}{rows}{sql[found.end(1) :]}"


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
        if isinstance(parameters, Sequence):  # executemany: no rows come back
            rows = [prepared.positional(p) for p in parameters]
            with _driver_errors(prepared.sql):
                await self._conn.executemany(prepared.sql, rows)
            return RawResult(-1, [])
        return await self._run(prepared, prepared.sql, prepared.positional(parameters or {}))

    async def _run(self, prepared: Prepared, sql: str, args: list[Any]) -> Result:
        """``sql`` (``prepared``'s, perhaps with deferred inserts in front) with ``args``."""
        with _driver_errors(sql):
            if prepared.returns_rows:
                records = await self._conn.fetch(sql, *args)
                return RawResult(len(records), [prepared.convert(r) for r in records])
            return RawResult(_rowcount(await self._conn.execute(sql, *args)), [])


#: A deferred statement: prepared, its arguments, and whether it guards the transaction.
_Item = tuple[Prepared, list[Any], bool]


class _Writer(_Direct):
    """A :class:`~zkauth.storage.executor.Writer`: the transaction begins with its first
    statement that must go at once, and deferred statements wait for the next one or the
    commit, then go as one statement (:meth:`PgSource.combined`), or in front of that next one
    when it may take them (:meth:`PgSource.rider`)."""

    __slots__ = ("_deferred", "_transaction")

    def __init__(self, conn: asyncpg.Connection, source: PgSource) -> None:
        super().__init__(conn, source)
        self._transaction: Any = None
        self._deferred: list[_Item] = []

    def defer(self, statement: Executable, parameters: Parameters = None) -> None:
        prepared = self._source.prepared(deferrable(statement))
        each = parameters if isinstance(parameters, Sequence) else [parameters or {}]
        self._deferred.extend((prepared, prepared.positional(p), False) for p in each)

    def guard(self, statement: Executable, parameters: Parameters = None) -> None:
        if isinstance(parameters, Sequence):
            raise TypeError("a guard is one statement with one set of parameters")
        prepared = self._source.prepared(guarding(statement))
        self._deferred.append((prepared, prepared.positional(parameters or {}), True))

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Result:
        if self._transaction is None:
            await self._begin()
        if self._deferred:
            rider = self._source.rider(statement)
            if (
                rider is not None
                and not isinstance(parameters, Sequence)
                and not any(guard for _, _, guard in self._deferred)
                and len(_in_order(self._deferred)) == 1
                and rider[1].isdisjoint(_tables(self._deferred))
            ):
                prepared = rider[0]
                sql, args = self._source.combined(_unguarded(self._deferred), prepared)
                self._deferred = []
                return await self._run(prepared, sql, args + prepared.positional(parameters or {}))
            await self._flush()
        return await super().execute(statement, parameters)

    async def commit(self) -> None:
        """Send what was deferred, then COMMIT if a transaction began: a block of deferred
        statements alone is one statement, atomic by itself."""
        await self._flush()
        if self._transaction is not None:
            await self._transaction.commit()

    async def roll_back(self) -> None:
        if self._transaction is not None:
            await _roll_back(self._transaction)

    async def _begin(self) -> None:
        self._transaction = self._conn.transaction()
        await self._transaction.start()

    async def _flush(self) -> None:
        """Send the deferred statements: one statement, or, where some must see others' rows
        (:func:`_in_order`), one after the other in a transaction."""
        if not self._deferred:
            return
        groups = _in_order(self._deferred)
        self._deferred = []
        if len(groups) > 1 and self._transaction is None:
            await self._begin()
        for group in groups:
            guard = next((item for item in group if item[2]), None)
            sql, args = self._source.combined(
                _unguarded(group), guard=None if guard is None else guard[:2]
            )
            with _driver_errors(sql):
                try:
                    await self._conn.execute(sql, *args)
                except asyncpg.DivisionByZeroError:
                    if guard is None:
                        raise
                    raise Stale("a guard returned no row") from None


def _unguarded(items: Iterable[_Item]) -> list[tuple[Prepared, list[Any]]]:
    return [(prepared, args) for prepared, args, guard in items if not guard]


def _in_order(items: Sequence[_Item]) -> list[list[_Item]]:
    """``items`` in as few consecutive groups as can each go as one statement: all the parts of
    one statement run in one snapshot, so a statement that writes a table must not share one
    with another that writes it by an UPDATE (which would not see the other's rows, or keep only
    one of two changes to a row); and one guard per statement."""
    groups: list[list[_Item]] = []
    updated: set[str] = set()  # by the current group: tables written by an UPDATE
    written: set[str] = set()  # by the current group: tables written at all
    guarded = False
    for item in items:
        prepared, _, guard = item
        table = _table(prepared)
        update = guard or bool(getattr(prepared.statement, "is_update", False))
        if not groups or table in updated or (update and table in written) or (guard and guarded):
            groups.append([])
            updated, written, guarded = set(), set(), False
        groups[-1].append(item)
        written.add(table)
        if update:
            updated.add(table)
        guarded = guarded or guard
    return groups


def _table(prepared: Prepared) -> str:
    return prepared.statement.table.name  # type: ignore[attr-defined,no-any-return]


def _tables(deferred: Iterable[_Item]) -> set[str]:
    """The tables the deferred statements write to."""
    return {_table(prepared) for prepared, _, _ in deferred}


def _tables_of(statement: Executable) -> frozenset[str]:
    """Every table ``statement`` names, in its subqueries too."""
    assert isinstance(statement, ClauseElement)  # as every prepared statement is
    return frozenset(e.name for e in visitors.iterate(statement) if isinstance(e, Table))


def _may_carry(prepared: Prepared) -> bool:
    """Whether deferred inserts may go as ``WITH`` queries in front of ``prepared``: an UPDATE
    or a DELETE (an INSERT's caller may read a key conflict as its own; a SELECT needs no
    transaction), not itself a ``WITH`` query. They run in its snapshot, so it must not touch
    their tables (:meth:`_Writer.execute` checks): it would not see their rows."""
    statement = prepared.statement
    dml = getattr(statement, "is_update", False) or getattr(statement, "is_delete", False)
    return bool(dml) and not prepared.sql.lstrip().upper().startswith("WITH")


@contextlib.contextmanager
def _driver_errors(sql: str) -> Iterator[None]:
    """The driver's errors while running ``sql``, raised as SQLAlchemy's (``as_sqlalchemy``)."""
    try:
        yield
    except (asyncpg.PostgresError, *_CONNECTION_ERRORS) as exc:
        raise as_sqlalchemy(
            exc,
            sql,
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
        # The hot statements deferred inserts may ride along with, and the tables each touches.
        self._riders = {
            key: (prepared, _tables_of(prepared.statement))
            for key, prepared in self._hot.items()
            if _may_carry(prepared)
        }
        # Combined statements of hot statements, by their identities and row counts (and the
        # identity of the statement they ride with, if any).
        self._combined: dict[tuple[tuple[int, int], ...], str] = {}

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
    async def write(self) -> AsyncIterator[Writer]:
        async with self._connection() as conn:
            writer = _Writer(conn, self)
            try:
                yield writer
                await writer.commit()
            except BaseException as exc:
                await writer.roll_back()
                if isinstance(exc, (*UNAVAILABLE, *_CONNECTION_ERRORS)):
                    raise ServiceUnavailable("database unavailable") from exc
                raise

    def rider(self, statement: Executable) -> tuple[Prepared, frozenset[str]] | None:
        """``statement`` prepared and the tables it reads or writes, if deferred inserts into
        other tables may ride along with it (:func:`_may_carry`)."""
        return self._riders.get(id(statement))

    def combined(
        self,
        deferred: Sequence[tuple[Prepared, list[Any]]],
        main: Prepared | None = None,
        guard: tuple[Prepared, list[Any]] | None = None,
    ) -> tuple[str, list[Any]]:
        """One statement for a transaction's deferred statements, and its arguments (``main``'s
        or ``guard``'s own follow them: :func:`combined_sql`). The rows of one insert statement
        go in one ``VALUES`` list, in the order they were deferred; two or more statements go as
        data-modifying ``WITH`` queries of a ``SELECT`` (or of ``main``), which PostgreSQL runs
        exactly once each, to completion, in one snapshot, in no set order."""
        groups: dict[int, tuple[Prepared, list[list[Any]]]] = {}
        for prepared, row in deferred:
            groups.setdefault(id(prepared.statement), (prepared, []))[1].append(row)
        args = [arg for _, rows in groups.values() for row in rows for arg in row]
        key = tuple((statement, len(rows)) for statement, (_, rows) in groups.items())
        if main is not None:
            key += ((id(main.statement), 0),)
        if guard is not None:
            key += ((id(guard[0].statement), -1),)
            args += guard[1]
        # Only the hot statements' identities are stable: the others' may be reused.
        hot = all(statement in self._hot for statement, _ in key)
        sql = self._combined.get(key) if hot else None
        if sql is None:
            if any(len(rows[0]) != _parameter_count(p.sql) for p, rows in groups.values()):
                raise ValueError("a deferred statement must use each of its parameters once")
            inserts = [(prepared.sql, len(rows)) for prepared, rows in groups.values()]
            sql = combined_sql(
                inserts,
                None if main is None else main.sql,
                None if guard is None else guard[0].sql,
            )
            if hot and len(self._combined) < _COMBINED_KEPT:
                self._combined[key] = sql
        return sql, args

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
