"""Where the SQL stores' statements run: a :class:`Source` of transactions.

The stores only ever ``await conn.execute(statement, parameters)`` inside ``source.read()`` or
``source.write()`` (and, in a write, ``conn.defer(…)`` or ``conn.guard(…)``), so one store
class serves every way of running them:

* :class:`~zkauth.storage.pg_direct.PgSource`: PostgreSQL, on an asyncpg pool.
* :class:`~zkauth.storage.sqlite_loop.LoopSqlite`: SQLite, run on the event loop.
* :class:`Bound`: every call joins one transaction already open, a unit of work's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from sqlalchemy import Executable

__all__ = ["Bound", "Executor", "Result", "Source", "Writer", "deferrable", "guarding"]


class Result(Protocol):
    """What a statement gives back: the part of SQLAlchemy's ``Result`` the stores use."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def one(self) -> Any: ...

    def one_or_none(self) -> Any: ...

    def scalar_one_or_none(self) -> Any: ...

    def first(self) -> Any: ...


#: One statement's parameters, or a list of them to run it once for each (``executemany``).
Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Executor(Protocol):
    async def execute(self, statement: Executable, parameters: Parameters = None) -> Result:
        """Run one statement in the current transaction."""
        ...


class Writer(Executor, Protocol):
    def defer(self, statement: Executable, parameters: Parameters = None) -> None:
        """Run an INSERT, or an UPDATE, whose outcome the caller does not need, at the latest
        when the transaction commits, in order with the transaction's other statements.

        Where every statement is a round trip (PostgreSQL), the deferred statements of a
        transaction go together as one statement, just before the next statement or the commit,
        or in front of that next statement, in its round trip, when it could not see their rows
        anyway (an UPDATE of other tables); a transaction with nothing but deferred statements
        is that one statement, which is atomic on its own, with no BEGIN and COMMIT. Where one
        must see another's rows (an UPDATE of a table another deferred statement writes: in one
        statement it would not), they go one after the other instead, in a transaction. Their
        errors (a key already taken) surface there, and the transaction rolls back as it would
        have had they surfaced here. SQLite runs them at once.
        """
        ...

    def guard(self, statement: Executable, parameters: Parameters = None) -> None:
        """Like :meth:`defer`, for an ``UPDATE … RETURNING`` the transaction stands on: if it
        returns no row, the whole transaction rolls back and :class:`~zkauth.service.ports.Stale`
        is raised, here (SQLite: at once) or where the deferred statements go (PostgreSQL)."""
        ...


def deferrable(statement: Executable) -> Executable:
    """``statement``, if :meth:`Writer.defer` may take it (an INSERT or an UPDATE); else
    ``TypeError``."""
    if not (getattr(statement, "is_insert", False) or getattr(statement, "is_update", False)):
        raise TypeError("only an INSERT or an UPDATE can be deferred")
    return statement


def guarding(statement: Executable) -> Executable:
    """``statement``, if :meth:`Writer.guard` may take it (an ``UPDATE … RETURNING``); else
    ``TypeError``."""
    returning = getattr(statement, "returning_column_descriptions", None)
    if not getattr(statement, "is_update", False) or not returning:
        raise TypeError("only an UPDATE … RETURNING can guard a transaction")
    return statement


class Source(Protocol):
    #: ``"sqlite"`` or ``"postgresql"``: the few statements that differ pick by it.
    dialect: str
    #: Whether a read is a round trip worth sharing: the stores then answer the single-row
    #: lookups of one round of the event loop with one statement (:mod:`zkauth.batching`).
    coalesce_reads: bool

    def read(self) -> AbstractAsyncContextManager[Executor]:
        """A connection to read with: each statement sees a consistent snapshot of its own, but
        two statements may see different ones (no transaction around them), so a store method
        that reads must read in one statement. It never waits for a writer."""
        ...

    def write(self) -> AbstractAsyncContextManager[Writer]:
        """A transaction that may write: committed when the block exits normally, rolled back
        when it raises. On SQLite it holds the database's write lock from its first statement."""
        ...


class Bound:
    """Every read and write joins ``executor``'s transaction, which its opener commits."""

    __slots__ = ("_executor", "dialect")
    coalesce_reads = False  # reads join the transaction: nothing to share with other requests

    def __init__(self, executor: Writer, dialect: str) -> None:
        self._executor = executor
        self.dialect = dialect

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Executor]:
        yield self._executor

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Writer]:
        yield self._executor
