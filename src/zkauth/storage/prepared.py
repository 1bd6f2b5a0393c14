"""Statements compiled once by SQLAlchemy and run straight on the DB-API driver.

Executing a Core statement through SQLAlchemy costs some 20–40 µs of Python per statement on
SQLite and well over 100 µs through its asyncio layer on PostgreSQL, on top of the database's
own work; a login runs five statements. So the stores' statements are compiled once by
SQLAlchemy, to the dialect's SQL, with each parameter's and each result column's type processor
(the values are exactly those SQLAlchemy would send and return), and each execution only orders
the parameters, runs the SQL on the driver's connection (``sqlite3``, ``asyncpg``) and wraps the
rows. ``sqlite_loop.py`` and ``pg_direct.py`` run them.

Only the parts of SQLAlchemy's result API the stores use exist here (``rowcount``, ``one``,
``one_or_none``, ``scalar_one_or_none``, ``first``, iteration, rows with attribute access), and
the drivers' errors are raised as SQLAlchemy's, as the stores expect. The contract suite runs
every store method on both.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import (
    DatabaseError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    MultipleResultsFound,
    NoResultFound,
    OperationalError,
)
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from zkauth.storage.executor import Parameters

__all__ = ["Prepared", "RawResult", "as_sqlalchemy"]

Processor = Callable[[Any], Any] | None


class RawResult:
    """Rows fetched in full, and the statement's row count."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount = rowcount
        self._rows = rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise MultipleResultsFound("more than one row where at most one was expected")
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        row = self.one_or_none()
        if row is None:
            raise NoResultFound("no row where exactly one was expected")
        return row

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def first(self) -> Any:
        return self._rows[0] if self._rows else None


def as_sqlalchemy(
    exc: Exception, sql: str, *, integrity: bool, operational: bool, interface: bool = False
) -> DBAPIError:
    """The SQLAlchemy exception SQLAlchemy itself would raise for a driver's ``exc``, of the
    kind the caller recognised (parameters left out: they may hold what must not be logged)."""
    kind: type[DBAPIError] = DatabaseError
    if integrity:
        kind = IntegrityError
    elif operational:
        kind = OperationalError
    elif interface:
        kind = InterfaceError
    return kind(sql, None, exc)


def _sqlite_error(exc: sqlite3.Error, sql: str) -> DBAPIError:
    return as_sqlalchemy(
        exc,
        sql,
        integrity=isinstance(exc, sqlite3.IntegrityError),
        operational=isinstance(exc, sqlite3.OperationalError),
        interface=isinstance(exc, sqlite3.InterfaceError),
    )


class Prepared:
    """One statement, compiled for ``dialect``, ready to run on its driver's connection."""

    __slots__ = ("_binds", "_compiled", "_fixed", "_names", "_results", "_row", "sql", "statement")

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        if not isinstance(statement, ClauseElement):
            raise TypeError("only Core statements can be prepared")
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or not compiled.positional:
            raise ValueError("only positional SQL statements can be prepared")
        if compiled.positiontup is None or "POSTCOMPILE" in compiled.string:
            raise ValueError("statements with expanding parameters cannot be prepared")
        self.statement = statement
        self.sql = compiled.string
        self._compiled = compiled
        self._names = tuple(compiled.positiontup)
        # Values written into the statement itself (a literal, a LIMIT): the caller's
        # parameters override them, as in ``construct_params``.
        self._fixed: dict[str, Any] = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and not callable(bind.value)
        }
        self._binds: tuple[Processor, ...] = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._names
        )
        columns = list(getattr(statement, "exported_columns", ()))
        keys = [str(c.key) for c in columns]  # unnamed ones (a function call) get _0, _1, ...
        self._row: Any = namedtuple("Row", keys, rename=True) if columns else None
        self._results: tuple[Processor, ...] = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )

    @property
    def returns_rows(self) -> bool:
        return self._row is not None

    def run_sqlite(self, conn: sqlite3.Connection, parameters: Parameters) -> RawResult:
        try:
            if isinstance(parameters, Sequence):  # executemany: no rows come back
                cursor = conn.executemany(self.sql, [self.positional(p) for p in parameters])
                return RawResult(cursor.rowcount, [])
            cursor = conn.execute(self.sql, self.positional(parameters or {}))
            rows = [self.convert(raw) for raw in cursor.fetchall()] if self.returns_rows else []
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, self.sql) from exc
        return RawResult(cursor.rowcount, rows)

    def positional(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The parameters in the SQL's order, through their types' bind processors."""
        values = {**self._fixed, **parameters} if self._fixed else parameters
        return [
            value if bind is None else bind(value)
            for bind, value in zip(self._binds, (values[name] for name in self._names), strict=True)
        ]

    def convert(self, raw: Sequence[Any]) -> Any:
        """A row from the driver, through its columns' result processors, with attributes."""
        assert self._row is not None
        return self._row._make(
            value if result is None else result(value)
            for result, value in zip(self._results, raw, strict=True)
        )
