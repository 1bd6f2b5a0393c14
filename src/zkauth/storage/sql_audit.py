"""The audit trail's SQL store: the hash chain's appends and its retention (pruning with
checkpoints), split from ``sql.py`` because it is the one store with a lock protocol of its own.

Appends and prunes both read the chain's tail (last entry, last checkpoint) and write what follows
it, so they are serialised: an ``asyncio.Lock`` per process, plus ``BEGIN IMMEDIATE`` on SQLite or
a transaction-scoped advisory lock on PostgreSQL across processes. Readers take no lock: every
write, including a prune and its checkpoint, is one transaction, so a reader sees all of it or
none of it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import BigInteger, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from zkauth.service.audit_chain import PRUNE_BATCH, AuditCheckpoint, chain_checkpoint
from zkauth.service.models import AuditEntry, AuditEvent, chain_entry, utc
from zkauth.storage.engine import Database
from zkauth.storage.schema import (
    audit_checkpoints,
    audit_entries,
    audit_entry_from_row,
    audit_values,
    checkpoint_from_row,
    checkpoint_values,
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
_LAST_CHECKPOINT: Final = (
    select(audit_checkpoints).order_by(audit_checkpoints.c.seq.desc()).limit(1)
)


class SqlAuditLog:
    def __init__(self, db: Database, *, prune_batch: int = PRUNE_BATCH) -> None:
        if prune_batch < 1:
            raise ValueError("prune_batch must be positive")
        self._db = db
        self._lock = asyncio.Lock()
        self._prune_batch = prune_batch

    async def _lock_chain(self, conn: AsyncConnection) -> None:
        """The chain's lock across processes, held to the end of the transaction (SQLite's
        ``BEGIN IMMEDIATE`` already is one)."""
        if self._db.is_postgresql:
            lock_key = literal(_AUDIT_LOCK_KEY, BigInteger)
            await conn.execute(select(func.pg_advisory_xact_lock(lock_key)))

    async def append(self, event: AuditEvent) -> AuditEntry:
        async with self._lock, self._db.write() as conn:
            await self._lock_chain(conn)
            last = (await conn.execute(_LAST_ENTRY)).one_or_none()
            entry = (
                chain_entry(event)
                if last is None
                else chain_entry(event, prev_seq=last.seq, prev_hash=bytes(last.hash))
            )
            await conn.execute(insert(audit_entries), audit_values(entry))
        return entry

    async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        stmt = select(audit_entries).order_by(audit_entries.c.seq).limit(limit)
        if after_id is not None:
            stmt = stmt.where(audit_entries.c.seq > after_id)
        async with self._db.read() as conn:
            result = await conn.execute(stmt)
            return [audit_entry_from_row(row) for row in result]

    async def latest(self, event: str | None, limit: int) -> Sequence[AuditEntry]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        stmt = select(audit_entries).order_by(audit_entries.c.seq.desc()).limit(limit)
        if event is not None:
            stmt = stmt.where(audit_entries.c.event == event)
        async with self._db.read() as conn:
            result = await conn.execute(stmt)
            return [audit_entry_from_row(row) for row in result]

    async def prune(self, before: datetime, *, now: datetime | None = None) -> int:
        before = utc(before, "before")
        now = datetime.now(UTC) if now is None else utc(now, "now")
        total = 0
        while count := await self._prune_batch_before(before, now):
            total += count
        return total

    async def _prune_batch_before(self, before: datetime, now: datetime) -> int:
        """One transaction under the chain lock: delete a prefix of at most ``prune_batch``
        entries, never the newest, and record its checkpoint, so no reader or crash ever sees
        entries gone without the checkpoint that accounts for them."""
        seq = audit_entries.c.seq
        async with self._lock, self._db.write() as conn:
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
