"""SQLite run on the event loop: the embedded store's statements without thread hand-offs.

A SQLite statement on a local file is a few microseconds of C, less than handing it to a worker
thread and back (which is what an async driver does, several times per transaction). So the
stores' transactions run here, on the loop, through the standard ``sqlite3`` module. What could
block the loop for long is taken off it:

* **Waiting for the write lock.** Connections have ``busy_timeout=0``: a ``BEGIN IMMEDIATE`` that
  finds the lock taken (another process: a second worker, ``zkauth audit prune``) fails at once,
  and :meth:`LoopSqlite.write` retries it with ``asyncio.sleep`` in between, up to
  :data:`BUSY_TIMEOUT` seconds, then fails closed (503). In this process, write transactions
  queue on an ``asyncio.Lock`` instead, so they never find the lock taken by each other.
* **Checkpoints,** which copy the write-ahead log into the database and ``fsync`` it. Connections
  have ``wal_autocheckpoint=0``; every :data:`CHECKPOINT_EVERY` commits a passive checkpoint runs
  in a worker thread (it never waits for readers or writers, and they never wait for it). Under
  steady load some commits always land while it runs, so it never catches up with the log, and
  SQLite restarts the log only when a write begins on a wholly checkpointed one: without more,
  the log would grow for ever (over 1 GB in 90 s at 175 logins/s). So a second passive
  checkpoint follows, with this process's writes held back: it copies only the few pages
  committed meanwhile, and the next write restarts the log from its start.

The statements every request runs go prepared, straight to ``sqlite3`` (``prepared.py``);
the connections for writes and for reads stay open, and BEGIN and COMMIT are sent directly.

With ``synchronous=NORMAL`` in WAL mode a commit does not ``fsync``: a power cut may lose the
last commits, never the database's consistency; a killed process loses nothing committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import Connection, Executable, create_engine, event
from sqlalchemy.engine import URL

from zkauth.errors import ServiceUnavailable
from zkauth.service.ports import Stale
from zkauth.storage.engine import SQLITE_BUSY_SECONDS, UNAVAILABLE, sqlite_busy, sqlite_pragmas
from zkauth.storage.executor import (
    Executor,
    Parameters,
    Result,
    Writer,
    deferrable,
    guarding,
)
from zkauth.storage.prepared import Prepared

__all__ = ["BUSY_TIMEOUT", "CHECKPOINT_EVERY", "LoopSqlite"]

#: How long a write transaction waits for another process's write lock before failing closed:
#: as long as any zkauth connection waits for a SQLite lock.
BUSY_TIMEOUT: Final = SQLITE_BUSY_SECONDS
#: Commits between two checkpoints of the write-ahead log (a few pages each: a few MB of log).
CHECKPOINT_EVERY: Final = 500
_FIRST_RETRY: Final = 0.0005
_LONGEST_RETRY: Final = 0.02
_ON_LOOP_PRAGMAS: Final = ("PRAGMA busy_timeout=0", "PRAGMA wal_autocheckpoint=0")
#: Also what ``sqlite3`` raises itself when BEGIN or COMMIT, sent directly, fail.
_UNAVAILABLE: Final = (*UNAVAILABLE, sqlite3.OperationalError)


class _OnLoop:
    """A :class:`~zkauth.storage.executor.Writer` that runs statements right away: prepared
    ones on the DB-API connection, the others through SQLAlchemy."""

    __slots__ = ("conn", "prepared", "raw")

    def __init__(self, conn: Connection, prepared: Mapping[int, Prepared]) -> None:
        self.conn = conn
        self.raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        self.prepared = prepared

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Result:
        return self._run(statement, parameters)

    def defer(self, statement: Executable, parameters: Parameters = None) -> None:
        # In process, a statement is no round trip: nothing to gain by waiting.
        self._run(deferrable(statement), parameters)

    def guard(self, statement: Executable, parameters: Parameters = None) -> None:
        if isinstance(parameters, Sequence):
            raise TypeError("a guard is one statement with one set of parameters")
        if self._run(guarding(statement), parameters).first() is None:
            raise Stale("a guard returned no row")  # the transaction's block rolls it back

    def _run(self, statement: Executable, parameters: Parameters) -> Result:
        prepared = self.prepared.get(id(statement))
        if prepared is not None:
            return prepared.run_sqlite(self.raw, parameters)
        return self.conn.execute(statement, parameters)

    def settle(self) -> None:
        """End the transaction SQLAlchemy began by itself if it ran a statement (it sends no
        BEGIN: the connection is in autocommit mode), so the connection is clean for reuse."""
        if self.conn.in_transaction():
            self.conn.commit()


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    sqlite_pragmas(dbapi_connection, record, _ON_LOOP_PRAGMAS)


def _close(executor: _OnLoop | None) -> None:
    """Close a connection (after a failure: rolling back whatever it had begun)."""
    if executor is not None:
        try:
            executor.conn.close()
        except UNAVAILABLE:
            executor.conn.invalidate()


class LoopSqlite:
    """A :class:`~zkauth.storage.executor.Source` on the SQLite database at ``url``; the
    ``hot`` statements run prepared."""

    dialect = "sqlite"
    coalesce_reads = False  # a read is a few microseconds of C on the loop: nothing to share

    def __init__(self, url: URL, hot: Iterable[Executable] = ()) -> None:
        # Connections move between the loop and the checkpointing thread, never at the same
        # time (the pool hands each to one user), so sqlite3's same-thread check can go.
        self._engine = create_engine(
            url.set(drivername="sqlite+pysqlite"), connect_args={"check_same_thread": False}
        )
        # No "begin" listener (engine.py's emits BEGIN for the migrations' engine): any
        # execution listener makes SQLAlchemy dispatch events around every statement. Writes
        # send their BEGIN IMMEDIATE themselves; reads are single statements, each atomic in
        # SQLite's autocommit mode.
        event.listen(self._engine, "connect", _on_connect)
        # Keyed by identity: the statements are module constants, kept alive by ``Prepared``.
        self._prepared = {id(st): Prepared(st, self._engine.dialect) for st in hot}
        # Write transactions take turns on one connection kept open: no pool round trip each.
        self._write_lock = asyncio.Lock()
        self._writer: _OnLoop | None = None
        # Reads use one connection kept open too while it is free (a read awaits nothing
        # inside, so it almost always is), a pooled one otherwise.
        self._reader: _OnLoop | None = None
        self._reader_busy = False
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | Future[None] | None = None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Executor]:
        if self._reader_busy:
            async with self._pooled_read() as executor:
                yield executor
            return
        self._reader_busy = True
        try:
            if self._reader is None:
                self._reader = _OnLoop(self._engine.connect(), self._prepared)
            yield self._reader
            self._reader.settle()
        except UNAVAILABLE as exc:
            _close(self._reader)
            self._reader = None
            raise ServiceUnavailable("database unavailable") from exc
        finally:
            self._reader_busy = False

    @asynccontextmanager
    async def _pooled_read(self) -> AsyncIterator[Executor]:
        try:
            with self._engine.connect() as conn:
                executor = _OnLoop(conn, self._prepared)
                yield executor
                executor.settle()
        except UNAVAILABLE as exc:
            raise ServiceUnavailable("database unavailable") from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Writer]:
        async with self._write_lock:
            writer = await self._begin_immediate()
            try:
                yield writer
                writer.raw.commit()
                writer.settle()
            except Stale:
                # An outcome, not a failure (a guard found its row taken): the connection is
                # sound, so it is rolled back and kept, not closed and opened anew.
                writer.raw.rollback()
                writer.settle()
                raise
            except BaseException as exc:
                _close(writer)  # closing it rolls back
                self._writer = None
                if isinstance(exc, _UNAVAILABLE):
                    raise ServiceUnavailable("database unavailable") from exc
                raise
        self._committed()

    async def _begin_immediate(self) -> _OnLoop:
        """The write connection, in a ``BEGIN IMMEDIATE`` transaction. While another process
        holds the write lock, waits without blocking the loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_TIMEOUT
        delay = _FIRST_RETRY
        while True:
            try:
                if self._writer is None:
                    self._writer = _OnLoop(self._engine.connect(), self._prepared)
                self._writer.raw.execute("BEGIN IMMEDIATE")
                return self._writer
            except sqlite3.OperationalError as exc:
                _close(self._writer)
                self._writer = None
                if not sqlite_busy(exc) or loop.time() >= deadline:
                    raise ServiceUnavailable("database busy") from exc
            except UNAVAILABLE as exc:
                _close(self._writer)
                self._writer = None
                raise ServiceUnavailable("database unavailable") from exc
            await asyncio.sleep(delay)
            delay = min(2 * delay, _LONGEST_RETRY)

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and self._checkpoint is None:
            self._commits = 0
            self._checkpoint = asyncio.ensure_future(self._checkpoint_and_restart())
            self._checkpoint.add_done_callback(self._checkpoint_done)

    async def _checkpoint_and_restart(self) -> None:
        """Checkpoint the log while writes go on, then what they added meanwhile with writes
        held back (a few pages, a few milliseconds): the next write restarts the log."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._checkpoint_now)
        async with self._write_lock:
            await loop.run_in_executor(None, self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        raw = self._engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
        finally:
            raw.close()

    def _checkpoint_done(self, done: asyncio.Future[None] | Future[None]) -> None:
        self._checkpoint = None
        if not done.cancelled():
            # A checkpoint that failed is retried by the next one; the log only grows meanwhile.
            done.exception()

    async def dispose(self) -> None:
        if self._checkpoint is not None:
            await asyncio.wrap_future(self._checkpoint)
        async with self._write_lock:
            _close(self._writer)
            self._writer = None
        _close(self._reader)
        self._reader = None
        self._engine.dispose()
