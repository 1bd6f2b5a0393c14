"""Writing the audit trail from use cases, in the same transaction as the change it records.

The trail records what happened and why, for operators. It never holds secrets, proofs or
tokens: callers pass a fixed reason code and metadata such as the protocol version.

A use case opens :meth:`Auditor.transaction`, makes its changes through the stores it yields and
records its events on it. The events are appended to the chain at the end of the block, in the
same database transaction as the changes: a crash commits both or neither, so no enrollment or
consumed challenge is ever left without its entry. Listeners (metrics, logs, monitoring) hear of
an event only after the commit, so they never report what was rolled back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from zkauth.service.models import AuditEvent, ClientId, Outcome
from zkauth.service.ports import Clock, UnitOfWork, Writes


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from, as far as the HTTP layer could tell."""

    remote_addr: str | None = None


NO_CONTEXT = RequestContext()


#: Something that wants to see every audited event after it is stored (metrics, logs, monitoring).
Listener = Callable[[AuditEvent], Awaitable[None]]


class Transaction:
    """One use case's view of a unit of work: its stores, and the events it will commit."""

    __slots__ = ("_appended", "_clock", "_writes", "challenges", "clients", "events")

    def __init__(self, writes: Writes, clock: Clock) -> None:
        self.clients = writes.clients
        self.challenges = writes.challenges
        self._writes = writes
        self._clock = clock
        self.events: list[AuditEvent] = []
        self._appended = 0

    def record(
        self,
        event: str,
        outcome: Outcome,
        ctx: RequestContext,
        *,
        client_id: str | None = None,
        reason: str | None = None,
        **detail: str,
    ) -> None:
        """Stamp ``event`` with the current time; it is appended when the transaction commits
        (or at :meth:`append_recorded`)."""
        self.events.append(
            AuditEvent(
                at=self._clock.now(),
                event=event,
                outcome=outcome,
                client_id=ClientId(client_id) if client_id is not None else None,
                reason=reason,
                remote_addr=ctx.remote_addr,
                detail=detail,
            )
        )

    async def append_recorded(self) -> None:
        """Append the events recorded so far now, in order, rather than just before the commit.
        Where every statement is a round trip (PostgreSQL), they then go with the unit's next
        write instead of in one more statement of their own."""
        if len(self.events) > self._appended:
            await self._writes.audit.append_all(self.events[self._appended :])
            self._appended = len(self.events)


class Auditor:
    """Opens audited transactions, and tells the listeners once they are committed.

    An append that fails raises, so the whole transaction rolls back and the request fails
    rather than going unrecorded.
    """

    __slots__ = ("_clock", "_listeners", "_unit_of_work")

    def __init__(
        self, unit_of_work: UnitOfWork, clock: Clock, listeners: Sequence[Listener] = ()
    ) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock
        self._listeners = list(listeners)

    def subscribe(self, listener: Listener) -> None:
        """Add a listener (composition time only, before requests are served)."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A unit of work whose recorded events are appended last, just before it commits."""
        async with self._unit_of_work() as writes:
            tx = Transaction(writes, self._clock)
            yield tx
            await tx.append_recorded()
        for event in tx.events:
            for listener in self._listeners:
                await listener(event)

    async def record(
        self,
        event: str,
        outcome: Outcome,
        ctx: RequestContext,
        *,
        client_id: str | None = None,
        reason: str | None = None,
        **detail: str,
    ) -> None:
        """Record an event that goes with no other change (an alert), in its own transaction."""
        async with self.transaction() as tx:
            tx.record(event, outcome, ctx, client_id=client_id, reason=reason, **detail)
