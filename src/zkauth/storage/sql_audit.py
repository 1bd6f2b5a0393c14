"""The audit trail's SQL store: the hash chain's appends and its retention (pruning with
checkpoints), split from ``sql.py`` because it is the one store with a lock protocol of its own.

Appends and prunes both read the chain's tail (last entry, last checkpoint) and write what follows
it, so they are serialised: an ``asyncio.Lock`` per process, plus ``BEGIN IMMEDIATE`` on SQLite or
a transaction-scoped advisory lock on PostgreSQL across processes. Readers take no lock: every
write, including a prune and its checkpoint, is one transaction, so a reader sees all of it or
none of it.

A unit of work does not chain its events: ``append_all`` inserts them into ``audit_pending`` in
the unit's transaction, taking no lock, so requests do not queue on the chain (on PostgreSQL the
lock would be held until each request's commit, across several round trips). ``seal`` then moves
pending events into the chain, in batches and in ``id`` order, under the chain lock; the server
seals in the background right after its commits, and every reader (``entries``, ``latest``,
``prune``) seals first, so what it returns includes every committed event. An event is durable
from its unit's commit on; it gets its seq and hash when sealed. Locks are always taken in the
same order, the transaction first and then the process lock.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import BigInteger, any_, bindparam, func, insert, literal, select
from sqlalchemy.dialects import postgresql

from zkauth.service.audit_chain import PRUNE_BATCH, AuditCheckpoint, chain_checkpoint
from zkauth.service.models import GENESIS_HASH, AuditEntry, AuditEvent, chain_entry, utc
from zkauth.storage.executor import Executor, Source
from zkauth.storage.schema import (
    audit_checkpoints,
    audit_entries,
    audit_entry_from_row,
    audit_pending,
    audit_values,
    checkpoint_from_row,
    checkpoint_values,
    event_from_row,
    event_values,
)

__all__ = ["SqlAuditLog"]

# One 64-bit key for the audit chain's advisory lock, derived rather than picked by hand.
_AUDIT_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"zkauth.audit_entries").digest()[:8], "big", signed=True
)


_LAST_ENTRY: Final = (
    select(audit_entries.c.seq, audit_entries.c.hash).order_by(audit_entries.c.seq.desc()).limit(1)
)
_SEQ_BOUNDS: Final = select(func.min(audit_entries.c.seq), func.max(audit_entries.c.seq))
_ADVISORY_LOCK: Final = select(func.pg_advisory_xact_lock(literal(_AUDIT_LOCK_KEY, BigInteger)))
_INSERT_ENTRY: Final = insert(audit_entries)
_INSERT_PENDING: Final = insert(audit_pending).values(
    {c.name: bindparam(c.name, type_=c.type) for c in audit_pending.c if c.name != "id"}
)
#: Events sealed per transaction.
SEAL_BATCH: Final = 1000
_ALL_PENDING: Final = select(audit_pending).order_by(audit_pending.c.id)
#: The oldest pending events, each row with the chain's last entry (seq and hash, both NULL on
#: an empty chain): what a sealing round reads, in one statement.
_OLDEST_PENDING: Final = _ALL_PENDING.add_columns(
    _LAST_ENTRY.with_only_columns(audit_entries.c.seq).scalar_subquery().label("last_seq"),
    _LAST_ENTRY.with_only_columns(audit_entries.c.hash).scalar_subquery().label("last_hash"),
).limit(SEAL_BATCH)
#: Drops the events just sealed from the pending table. PostgreSQL's ids come from a sequence,
#: so a row with a smaller id than the last one read may commit later: the ids go one by one.
#: SQLite's writers take turns (``BEGIN IMMEDIATE``), so the events read, oldest first, are every
#: pending row up to the last of them: one prepared range delete, however many there are.
_DELETE_SEALED: Final = {
    "postgresql": audit_pending.delete().where(
        audit_pending.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger)))
    ),
    "sqlite": audit_pending.delete().where(audit_pending.c.id <= bindparam("last")),
}
_LAST_CHECKPOINT: Final = (
    select(audit_checkpoints).order_by(audit_checkpoints.c.seq.desc()).limit(1)
)


def _tail(seq: int | None, hash_: bytes | None) -> tuple[int, bytes]:
    """The chain's last entry as ``(seq, hash)``: the genesis when there is none."""
    return (0, GENESIS_HASH) if seq is None or hash_ is None else (seq, bytes(hash_))


class SqlAuditLog:
    #: The statements of every request and every seal (see ``prepared.py``).
    HOT_STATEMENTS: Final = (_INSERT_PENDING, _INSERT_ENTRY, _OLDEST_PENDING)
    #: ... and on PostgreSQL also these.
    HOT_POSTGRESQL: Final = (_ADVISORY_LOCK, _DELETE_SEALED["postgresql"])
    #: ... and on SQLite this one.
    HOT_SQLITE: Final = (_DELETE_SEALED["sqlite"],)

    def __init__(
        self, db: Source, *, lock: asyncio.Lock | None = None, prune_batch: int = PRUNE_BATCH
    ) -> None:
        """``lock`` serialises this process's appends; instances on one database share one."""
        if prune_batch < 1:
            raise ValueError("prune_batch must be positive")
        self._db = db
        self._lock = asyncio.Lock() if lock is None else lock
        self._prune_batch = prune_batch

    async def _lock_chain(self, conn: Executor) -> None:
        """The chain's lock across processes, held to the end of the transaction (SQLite's
        ``BEGIN IMMEDIATE`` already is one)."""
        if self._db.dialect == "postgresql":
            await conn.execute(_ADVISORY_LOCK)

    async def append(self, event: AuditEvent) -> AuditEntry:
        """Seal what is pending, then chain ``event`` right after it, in one transaction."""
        await self.seal()  # most of it, in batches: what is left comes next
        async with self._db.write() as conn, self._lock:
            await self._lock_chain(conn)
            pending = [(row.id, event_from_row(row)) for row in await conn.execute(_ALL_PENDING)]
            last = (await conn.execute(_LAST_ENTRY)).one_or_none()
            tail = _tail(None, None) if last is None else _tail(last.seq, last.hash)
            entries = await self._seal_on(conn, [*pending, (None, event)], tail)
        return entries[-1]

    async def append_all(self, events: Sequence[AuditEvent]) -> None:
        if events:
            async with self._db.write() as conn:
                conn.defer(_INSERT_PENDING, [event_values(event) for event in events])

    async def seal(self) -> int:
        sealed = 0
        while True:
            count = await self._seal_batch()
            sealed += count
            if count < SEAL_BATCH:  # a short batch took everything there was
                return sealed

    async def _seal_batch(self) -> int:
        async with self._db.write() as conn, self._lock:
            await self._lock_chain(conn)
            # Read under the lock: another process may have sealed these meanwhile.
            rows = list(await conn.execute(_OLDEST_PENDING))
            if rows:
                tail = _tail(rows[0].last_seq, rows[0].last_hash)
                await self._seal_on(conn, [(row.id, event_from_row(row)) for row in rows], tail)
        return len(rows)

    async def _seal_on(
        self,
        conn: Executor,
        pending: Sequence[tuple[int | None, AuditEvent]],
        tail: tuple[int, bytes],
    ) -> list[AuditEntry]:
        """Chain ``pending`` after ``tail`` (:func:`_tail`, read in this transaction), and drop
        the ones with an id from the pending table. The caller holds the chain lock, in
        ``conn``'s transaction."""
        prev_seq, prev_hash = tail
        entries: list[AuditEntry] = []
        for _, event in pending:
            entry = chain_entry(event, prev_seq=prev_seq, prev_hash=prev_hash)
            entries.append(entry)
            prev_seq, prev_hash = entry.seq, entry.hash
        await conn.execute(_INSERT_ENTRY, [audit_values(entry) for entry in entries])
        ids = [pending_id for pending_id, _ in pending if pending_id is not None]
        if ids:
            parameters = {"last": max(ids)} if self._db.dialect == "sqlite" else {"ids": ids}
            await conn.execute(_DELETE_SEALED[self._db.dialect], parameters)
        return entries

    async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        await self.seal()
        stmt = select(audit_entries).order_by(audit_entries.c.seq).limit(limit)
        if after_id is not None:
            stmt = stmt.where(audit_entries.c.seq > after_id)
        async with self._db.read() as conn:
            result = await conn.execute(stmt)
            return [audit_entry_from_row(row) for row in result]

    async def latest(self, event: str | None, limit: int) -> Sequence[AuditEntry]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        await self.seal()
        stmt = select(audit_entries).order_by(audit_entries.c.seq.desc()).limit(limit)
        if event is not None:
            stmt = stmt.where(audit_entries.c.event == event)
        async with self._db.read() as conn:
            result = await conn.execute(stmt)
            return [audit_entry_from_row(row) for row in result]

    async def prune(self, before: datetime, *, now: datetime | None = None) -> int:
        before = utc(before, "before")
        now = datetime.now(UTC) if now is None else utc(now, "now")
        await self.seal()
        total = 0
        while count := await self._prune_batch_before(before, now):
            total += count
        return total

    async def _prune_batch_before(self, before: datetime, now: datetime) -> int:
        """One transaction under the chain lock: delete a prefix of at most ``prune_batch``
        entries, never the newest, and record its checkpoint, so no reader or crash ever sees
        entries gone without the checkpoint that accounts for them."""
        seq = audit_entries.c.seq
        async with self._db.write() as conn, self._lock:
            await self._lock_chain(conn)
            oldest, newest = (await conn.execute(_SEQ_BOUNDS)).one()
            if newest is None or oldest == newest:
                return 0
            # Entries are appended in seq order but stamped before the lock: the prefix stops at
            # the first entry not older than ``before``, so nothing newer is ever pruned.
            horizon = oldest + self._prune_batch
            stop = select(seq).where(audit_entries.c.at >= before, seq <= horizon)
            keep = (await conn.execute(stop.order_by(seq).limit(1))).scalar_one_or_none()
            cut = min(horizon if keep is None else keep, newest) - 1
            last = (
                await conn.execute(
                    select(seq, audit_entries.c.hash)
                    .where(seq <= cut)
                    .order_by(seq.desc())
                    .limit(1)
                )
            ).one_or_none()
            if last is None:
                return 0
            previous = (await conn.execute(_LAST_CHECKPOINT)).one_or_none()
            pruned = (await conn.execute(audit_entries.delete().where(seq <= last.seq))).rowcount
            checkpoint = chain_checkpoint(
                at=now,
                last_seq=last.seq,
                last_hash=bytes(last.hash),
                pruned=pruned,
                prev=None if previous is None else checkpoint_from_row(previous),
            )
            await conn.execute(insert(audit_checkpoints), checkpoint_values(checkpoint))
        return pruned

    async def checkpoints(self) -> Sequence[AuditCheckpoint]:
        stmt = select(audit_checkpoints).order_by(audit_checkpoints.c.seq)
        async with self._db.read() as conn:
            result = await conn.execute(stmt)
            return [checkpoint_from_row(row) for row in result]
