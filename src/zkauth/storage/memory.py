"""In-memory stores: for tests, benchmarks of the core, and single-process demos.

Atomicity comes from asyncio itself: no method awaits between reading and writing its dicts, so
no other coroutine can run in between, and a lock would only add cost. Keep it that way: a method
that ever needs to await mid-update must take a lock. Not thread-safe; everything lives and dies
with the process.

A unit of work (:class:`MemoryUnitOfWork`) runs one at a time, on views of the stores that share
their dicts but note how to undo each write in a journal; if the block raises, the journal is
played backwards, so the stores end as if it never ran, as a SQL transaction would.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable, Hashable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final, TypeVar

from zkauth.errors import Conflict
from zkauth.service.audit_chain import PRUNE_BATCH, AuditCheckpoint, chain_checkpoint
from zkauth.service.decoy import DECOY_CLIENT_ID
from zkauth.service.models import (
    AdminToken,
    AdminTokenId,
    AuditEntry,
    AuditEvent,
    Challenge,
    ChallengeId,
    Client,
    ClientId,
    ClientStatus,
    chain_entry,
    utc,
)
from zkauth.service.ports import Stale, Stores, Writes

__all__ = [
    "MemoryAdminTokenStore",
    "MemoryAuditLog",
    "MemoryChallengeStore",
    "MemoryClientStore",
    "MemoryUnitOfWork",
    "open_memory_stores",
]

_CURRENT = (ClientStatus.ACTIVE, ClientStatus.LOCKED)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_ABSENT: Final = object()


class _Journal:
    """How to undo the writes of the open unit of work, newest last (or nothing, outside one)."""

    __slots__ = ("_undo",)

    def __init__(self, *, active: bool) -> None:
        self._undo: list[Callable[[], None]] | None = [] if active else None

    def put(self, mapping: MutableMapping[K, V], key: K, value: V) -> None:
        if self._undo is not None:
            self._undo.append(_restore(mapping, key, mapping.get(key, _ABSENT)))
        mapping[key] = value

    def delete(self, mapping: MutableMapping[K, V], key: K) -> None:
        if self._undo is not None:
            self._undo.append(_restore(mapping, key, mapping[key]))
        del mapping[key]

    def on_undo(self, step: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(step)

    def roll_back(self) -> None:
        while self._undo:
            self._undo.pop()()


def _restore(mapping: MutableMapping[K, V], key: K, old: object) -> Callable[[], None]:
    def undo() -> None:
        if old is _ABSENT:
            mapping.pop(key, None)
        else:
            mapping[key] = old  # type: ignore[assignment]  # it was a V when it was read

    return undo


_NO_JOURNAL: Final = _Journal(active=False)


class MemoryClientStore:
    def __init__(self) -> None:
        self._clients: dict[ClientId, Client] = {}
        self._references: dict[str, ClientId] = {}
        self._journal = _NO_JOURNAL

    async def create(self, client: Client) -> bool:
        if client.client_id in self._clients or client.reference_id in self._references:
            return False
        self._journal.put(self._clients, client.client_id, client)
        self._journal.put(self._references, client.reference_id, client.client_id)
        return True

    async def add(self, client: Client) -> None:
        if not await self.create(client):
            raise Conflict("client id or reference id already used")

    async def get(self, client_id: ClientId) -> Client | None:
        return self._clients.get(client_id)

    async def rotate_commitment(
        self, client_id: ClientId, expected_old: bytes, new: bytes, now: datetime
    ) -> bool:
        client = self._clients.get(client_id)
        if client is None or client.status is ClientStatus.REVOKED:
            return False
        if client.status is ClientStatus.LOCKED and (
            client.locked_until is None or client.locked_until > now
        ):
            return False
        if client.commitment != expected_old:
            return False
        self._journal.put(self._clients, client_id, replace(client, commitment=new, updated_at=now))
        return True

    async def revoke(self, client_id: ClientId, now: datetime) -> bool:
        client = self._clients.get(client_id)
        if client is None or client.status not in _CURRENT:
            return False
        revoked = replace(client, status=ClientStatus.REVOKED, revoked_at=now, updated_at=now)
        self._journal.put(self._clients, client_id, revoked)
        return True

    async def save_lockout_state(
        self,
        client_id: ClientId,
        failed_attempts: int,
        locked_until: datetime | None,
        lockout_count: int,
    ) -> None:
        client = self._clients.get(client_id)
        if client is None:
            return
        status = client.status
        if status is not ClientStatus.REVOKED:
            status = ClientStatus.ACTIVE if locked_until is None else ClientStatus.LOCKED
        self._journal.put(
            self._clients,
            client_id,
            replace(
                client,
                status=status,
                failed_attempts=failed_attempts,
                locked_until=locked_until,
                lockout_count=lockout_count,
            ),
        )

    async def record_failure(self, client_id: ClientId) -> int:
        client = self._clients.get(client_id)
        if client is None:
            return 0
        count = client.failed_attempts + 1
        self._journal.put(self._clients, client_id, replace(client, failed_attempts=count))
        return count


class MemoryChallengeStore:
    def __init__(self) -> None:
        self._challenges: dict[ChallengeId, Challenge] = {}
        # The one live (unconsumed) challenge of each client, as the SQL partial unique index.
        self._live: dict[ClientId, ChallengeId] = {}
        self._journal = _NO_JOURNAL

    async def issue(self, challenge: Challenge) -> None:
        if challenge.consumed_at is not None:
            raise ValueError("an issued challenge must be unconsumed")
        if challenge.challenge_id in self._challenges:
            raise Conflict("challenge id already issued")
        superseded = self._live.get(challenge.client_id)
        if superseded is not None:
            self._journal.delete(self._challenges, superseded)
        self._journal.put(self._challenges, challenge.challenge_id, challenge)
        self._journal.put(self._live, challenge.client_id, challenge.challenge_id)

    async def consume(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        challenge = await self.find_live(challenge_id, client_id, now)
        if challenge is None:
            return None
        consumed = replace(challenge, consumed_at=now)
        self._journal.put(self._challenges, challenge_id, consumed)
        self._journal.delete(self._live, client_id)
        return consumed

    async def find_live(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        challenge = self._challenges.get(challenge_id)
        if challenge is None or challenge.client_id != client_id or not challenge.is_live(now):
            return None
        return challenge

    async def take(self, challenge: Challenge, now: datetime) -> None:
        if await self.find_live(challenge.challenge_id, challenge.client_id, now) is None:
            raise Stale("the challenge is no longer live")
        await self.consume(challenge.challenge_id, challenge.client_id, now)

    async def take_decoy(self, now: datetime) -> None:
        await self.void_for_client(DECOY_CLIENT_ID, now)

    async def void_for_client(self, client_id: ClientId, now: datetime) -> int:
        challenge_id = self._live.get(client_id)
        if challenge_id is None:
            return 0
        self._journal.delete(self._live, client_id)
        voided = replace(self._challenges[challenge_id], consumed_at=now)
        self._journal.put(self._challenges, challenge_id, voided)
        return 1

    async def purge_expired(self, before: datetime, limit: int | None = None) -> int:
        before = utc(before, "before")
        doomed = sorted(
            (c for c in self._challenges.values() if c.expires_at < before),
            key=lambda c: c.expires_at,
        )[:limit]
        for challenge in doomed:
            del self._challenges[challenge.challenge_id]
            if self._live.get(challenge.client_id) == challenge.challenge_id:
                del self._live[challenge.client_id]
        return len(doomed)


class MemoryAuditLog:
    def __init__(self, *, prune_batch: int = PRUNE_BATCH) -> None:
        if prune_batch < 1:
            raise ValueError("prune_batch must be positive")
        self._entries: list[AuditEntry] = []
        self._pruned = 0  # seq of the last pruned entry: entry n sits at index n - 1 - _pruned
        self._checkpoints: list[AuditCheckpoint] = []
        self._prune_batch = prune_batch
        self._journal = _NO_JOURNAL

    async def append(self, event: AuditEvent) -> AuditEntry:
        return self._append(event)

    async def append_all(self, events: Sequence[AuditEvent]) -> None:
        # One process, no lock to wait for: events are chained at once, nothing is left to seal.
        for event in events:
            self._append(event)

    async def seal(self) -> int:
        return 0

    def _append(self, event: AuditEvent) -> AuditEntry:
        entry = (
            chain_entry(event, prev_seq=self._entries[-1].seq, prev_hash=self._entries[-1].hash)
            if self._entries
            else chain_entry(event)
        )
        self._entries.append(entry)
        self._journal.on_undo(lambda: self._entries.remove(entry))
        return entry

    async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        start = max((after_id or 0) - self._pruned, 0)
        return self._entries[start : start + limit]

    async def latest(self, event: str | None, limit: int) -> Sequence[AuditEntry]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        found = (e for e in reversed(self._entries) if event is None or e.event.event == event)
        return list(itertools.islice(found, limit))

    async def prune(self, before: datetime, *, now: datetime | None = None) -> int:
        # Batches as the SQL store's, so both record the same checkpoints; no await in between.
        before = utc(before, "before")
        now = datetime.now(UTC) if now is None else utc(now, "now")
        total = 0
        while count := self._prune_batch_before(before, now):
            total += count
        return total

    def _prune_batch_before(self, before: datetime, now: datetime) -> int:
        newest = len(self._entries) - 1  # kept, whatever its age
        limit = min(newest, self._prune_batch)
        count = next(
            (i for i, e in enumerate(self._entries[:limit]) if e.event.at >= before), limit
        )
        if count <= 0:
            return 0
        last = self._entries[count - 1]
        prev = self._checkpoints[-1] if self._checkpoints else None
        self._checkpoints.append(
            chain_checkpoint(
                at=now, last_seq=last.seq, last_hash=last.hash, pruned=count, prev=prev
            )
        )
        del self._entries[:count]
        self._pruned = last.seq
        return count

    async def checkpoints(self) -> Sequence[AuditCheckpoint]:
        return list(self._checkpoints)


class MemoryAdminTokenStore:
    def __init__(self) -> None:
        self._tokens: dict[AdminTokenId, AdminToken] = {}
        self._by_hash: dict[bytes, AdminTokenId] = {}

    async def add(self, token: AdminToken) -> None:
        if token.token_id in self._tokens or token.token_hash in self._by_hash:
            raise Conflict("admin token id or hash already exists")
        self._tokens[token.token_id] = token
        self._by_hash[token.token_hash] = token.token_id

    async def find_active(self, token_hash: bytes) -> AdminToken | None:
        token_id = self._by_hash.get(token_hash)
        token = None if token_id is None else self._tokens[token_id]
        return token if token is not None and token.revoked_at is None else None

    async def any_active(self) -> bool:
        return any(token.revoked_at is None for token in self._tokens.values())

    async def revoke(self, token_id: AdminTokenId, now: datetime) -> bool:
        token = self._tokens.get(token_id)
        if token is None or token.revoked_at is not None:
            return False
        self._tokens[token_id] = replace(token, revoked_at=now)
        return True


S = TypeVar("S", MemoryClientStore, MemoryChallengeStore, MemoryAuditLog)


def _journaled(store: S, journal: _Journal) -> S:
    """A view of ``store``: the same dicts, its writes noted in ``journal``."""
    view = copy.copy(store)
    view._journal = journal
    return view


class MemoryUnitOfWork:
    """Units of work on memory stores: one at a time, undone if the block raises."""

    def __init__(
        self, clients: MemoryClientStore, challenges: MemoryChallengeStore, audit: MemoryAuditLog
    ) -> None:
        self._stores = (clients, challenges, audit)
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Writes]:
        clients, challenges, audit = self._stores
        async with self._lock:
            journal = _Journal(active=True)
            try:
                yield Writes(
                    clients=_journaled(clients, journal),
                    challenges=_journaled(challenges, journal),
                    audit=_journaled(audit, journal),
                )
            except BaseException:
                journal.roll_back()
                raise


def open_memory_stores() -> Stores:
    """Fresh, empty in-memory stores."""
    clients, challenges, audit = MemoryClientStore(), MemoryChallengeStore(), MemoryAuditLog()
    return Stores(
        clients=clients,
        challenges=challenges,
        audit=audit,
        admin_tokens=MemoryAdminTokenStore(),
        transaction=MemoryUnitOfWork(clients, challenges, audit),
    )
