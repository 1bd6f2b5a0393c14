"""The ports the use cases need from the outside world: time and persistence.

Each port is a small :class:`typing.Protocol`, so an adapter (``zkauth.storage.memory``,
``zkauth.storage.sql``) satisfies it structurally without importing anything from here but the
models. Every method whose doc says *atomic* must stay correct when many coroutines, and on SQL
many server processes, call it at once: nothing lost, nothing double-spent (README.md "Production").
The contract suite in ``tests/storage`` holds every adapter to these docs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from zkauth.service.audit_chain import AuditCheckpoint
from zkauth.service.models import (
    AdminToken,
    AdminTokenId,
    AuditEntry,
    AuditEvent,
    Challenge,
    ChallengeId,
    Client,
    ClientId,
)


class Stale(Exception):
    """A challenge read earlier was no longer live when the unit of work came to take it
    (:meth:`ChallengeStore.take`): consumed, superseded, voided or expired since. The unit is
    rolled back, nothing of it kept. Use cases catch it; it never reaches a caller."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class ClientStore(Protocol):
    async def create(self, client: Client) -> bool:
        """Insert ``client`` atomically. ``False`` if its id (or reference id) was ever used, in
        any status: a revoked identifier can never be enrolled again (SECURITY.md "A malicious
        client")."""
        ...

    async def add(self, client: Client) -> None:
        """Insert ``client`` in a unit of work; :class:`~zkauth.errors.Conflict` if its id (or
        reference id) was ever used, in any status. Like :meth:`ChallengeStore.issue`, a store
        may send the insert with the unit's commit (PostgreSQL) and raise only then: the whole
        unit rolls back either way. Where the insert is expected to succeed (the identifier was
        read free), it costs less than :meth:`create`, whose answer must come back at once."""
        ...

    async def get(self, client_id: ClientId) -> Client | None: ...

    async def rotate_commitment(
        self, client_id: ClientId, expected_old: bytes, new: bytes, now: datetime
    ) -> bool:
        """Compare-and-set: replace the commitment only if the client is active (or its lock has
        expired by ``now``) and its commitment still equals ``expected_old``, so two rotations
        proven against the same old commitment cannot both win."""
        ...

    async def revoke(self, client_id: ClientId, now: datetime) -> bool:
        """Mark an active or locked client revoked; ``True`` only if this call changed it."""
        ...

    async def save_lockout_state(
        self,
        client_id: ClientId,
        failed_attempts: int,
        locked_until: datetime | None,
        lockout_count: int,
    ) -> None:
        """Store the lockout policy's decision. The status follows ``locked_until`` (``locked`` when
        set, ``active`` when ``None``) except that a revoked client stays revoked."""
        ...

    async def record_failure(self, client_id: ClientId) -> int:
        """Atomically add one to ``failed_attempts`` and return the new count (0: no such client).

        Atomic so that parallel wrong proofs cannot each read "2" and all slip under a limit of 3.
        """
        ...


class ChallengeStore(Protocol):
    async def issue(self, challenge: Challenge) -> None:
        """Store an unconsumed ``challenge``, atomically superseding every older unconsumed
        challenge of its client (they can never be consumed): a client has at most one live
        challenge (README.md "HTTP API v1"). Raises :class:`~zkauth.errors.Conflict` if the
        challenge id is already taken."""
        ...

    async def consume(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        """Atomically mark the challenge consumed, exactly once.

        Return it, now consumed, only if it exists, belongs to ``client_id``, is unconsumed and
        ``expires_at > now``; otherwise return ``None`` and change nothing, so a guess with the
        wrong client cannot burn another client's challenge.
        """
        ...

    async def find_live(
        self, challenge_id: ChallengeId, client_id: ClientId, now: datetime
    ) -> Challenge | None:
        """The challenge if it exists, belongs to ``client_id``, is unconsumed and
        ``expires_at > now``, read without taking it; otherwise ``None``."""
        ...

    async def take(self, challenge: Challenge, now: datetime) -> None:
        """Consume ``challenge``, as :meth:`find_live` returned it, only if it is still live at
        ``now`` (an id is issued once, and a challenge's contents never change); otherwise
        raise :class:`Stale`, which rolls back the unit of work it runs in. Meant for a unit of
        work: there the consume may take effect only when the unit commits (PostgreSQL: with
        the unit's other writes, in one statement), so the :class:`Stale` may come from the end
        of the unit instead. Atomic: of concurrent takes of one challenge, exactly one
        succeeds."""
        ...

    async def take_decoy(self, now: datetime) -> None:
        """Consume the decoy's live challenge, if it has one: the write an attempt with no live
        challenge of its own spends instead, so that it costs what a :meth:`take` costs. Refused
        challenge requests issue to the decoy, so after one it has a live challenge again, as a
        client has after its own. Never :class:`Stale`."""
        ...

    async def void_for_client(self, client_id: ClientId, now: datetime) -> int:
        """Consume every unconsumed challenge of the client (on revocation); return how many."""
        ...

    async def purge_expired(self, before: datetime, limit: int | None = None) -> int:
        """Delete challenges with ``expires_at < before`` (at most ``limit`` of them, if given:
        the oldest first); return how many. An expired challenge can never be consumed, so this
        only frees space."""
        ...


class AuditLog(Protocol):
    async def append(self, event: AuditEvent) -> AuditEntry:
        """Append ``event`` to the hash chain now (after anything still to seal) and return the
        stored entry. Appends are serialised (per process, and on PostgreSQL across processes)
        so the chain never forks; an append that cannot be stored raises, never drops."""
        ...

    async def append_all(self, events: Sequence[AuditEvent]) -> None:
        """Record ``events``, in order, to be chained by :meth:`seal`. In a unit of work they
        commit (or roll back) with its other changes; recording takes no lock on the chain, so
        concurrent units do not wait for each other here. An adapter may chain them at once."""
        ...

    async def seal(self) -> int:
        """Chain every recorded event not chained yet, in the order recorded; return how many.
        Safe to call from any number of processes at once: each event is chained exactly once."""
        ...

    async def entries(self, limit: int, after_id: int | None = None) -> Sequence[AuditEntry]:
        """Up to ``limit`` entries with ``seq > after_id``, oldest first. Readers seal first, so
        every event committed before the call is in the chain they read."""
        ...

    async def latest(self, event: str | None, limit: int) -> Sequence[AuditEntry]:
        """Up to ``limit`` entries of one kind (e.g. ``"alert"``; ``None``: any), newest first."""
        ...

    async def prune(self, before: datetime, *, now: datetime | None = None) -> int:
        """Delete the oldest entries, those older than ``before``; return how many.

        Only a prefix of the trail goes (up to the first entry *not* older than ``before``), and
        never the newest entry, which the next append chains to. Atomically with each deletion a
        checkpoint (at ``now``, default the current time) records the last deleted entry's seq
        and hash, so that the rest still verifies (``zkauth.service.audit_chain``). Serialised
        with appends and other prunes, like appends; large backlogs go in several transactions,
        each with its checkpoint, so appends never wait long.
        """
        ...

    async def checkpoints(self) -> Sequence[AuditCheckpoint]:
        """Every checkpoint pruning recorded, oldest first."""
        ...


class AdminTokenStore(Protocol):
    async def add(self, token: AdminToken) -> None:
        """Store ``token``; raises :class:`~zkauth.errors.Conflict` if its id or hash exists."""
        ...

    async def find_active(self, token_hash: bytes) -> AdminToken | None: ...

    async def any_active(self) -> bool:
        """Whether any unrevoked admin token exists (production mode needs one)."""
        ...

    async def revoke(self, token_id: AdminTokenId, now: datetime) -> bool:
        """Revoke an active token; ``True`` only if this call changed it."""
        ...


class Counters(Protocol):
    """Shared event counters for lockout and anomaly detection (README.md
    "Monitoring": ≥ 50 failures across ≥ 50 clients in 60 s, ≥ 10 lockouts in 5 min, volume
    against the hourly baseline). Every method raises
    :class:`~zkauth.errors.ServiceUnavailable` when it cannot count: a detector that silently
    stops counting would let an attack through unnoticed.
    """

    async def incr_window(self, key: str, window_seconds: int, now: float, amount: int = 1) -> int:
        """Count ``amount`` events (at least 1; a caller with a batch of events counts them in
        one call) and return the count in the current **fixed** window.

        Windows are aligned to the epoch (``floor(now / window_seconds)``): O(1) and tiny
        storage even for counting every request, which the volume baseline does. The price is
        that a burst straddling a window edge is split between two windows; thresholds that must
        not be dodged that way should use :meth:`add_distinct`, which slides.
        """
        ...

    async def window_count(self, key: str, window_seconds: int, now: float) -> int:
        """The count of the fixed window containing ``now``, without counting anything.

        Readable for the latest window counted and the one before it (``now - window_seconds``:
        the baseline the volume alert compares with); older windows read 0.
        """
        ...

    async def add_distinct(self, key: str, member: str, window_seconds: int, now: float) -> int:
        """Record ``member`` and return how many distinct members were seen in the **sliding**
        window ``(now - window_seconds, now]``.

        Exact up to the adapter's ``max_members`` (default 10 000), beyond which new members are
        no longer stored and the count saturates there: thresholds (50) sit far below, and a
        flood of random members cannot grow memory without bound.
        """
        ...


@dataclass(frozen=True, slots=True)
class Writes:
    """The stores as seen from inside one unit of work."""

    clients: ClientStore
    challenges: ChallengeStore
    audit: AuditLog


class UnitOfWork(Protocol):
    def __call__(self) -> AbstractAsyncContextManager[Writes]:
        """Open a transaction. Everything done through the yielded stores, reads included,
        commits together when the block exits normally, and not at all when it raises; a
        crash at any point leaves all of it or none of it (README.md "Production").

        Transactions that write the same rows or the audit chain are serialised; keep them
        short and never await anything slow (network, sleeps) inside one."""
        ...


@dataclass(frozen=True, slots=True)
class Stores:
    """The four stores of one backend, the unit of work over them, and how to release what
    they hold (pools, files). The stores' own methods each run in a transaction of their own:
    use cases that change state use :attr:`transaction` instead, so that a change and its audit
    entry are committed together."""

    clients: ClientStore
    challenges: ChallengeStore
    audit: AuditLog
    admin_tokens: AdminTokenStore
    transaction: UnitOfWork
    closer: Callable[[], Awaitable[None]] | None = None

    async def close(self) -> None:
        if self.closer is not None:
            await self.closer()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
