"""Small helpers for writing the audit trail from use cases.

The trail records what happened and why, for operators. It never holds secrets, proofs or
tokens: callers pass a fixed reason code and metadata such as the protocol version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from zkauth.service.models import AuditEvent, ClientId, Outcome
from zkauth.service.ports import AuditLog, Clock


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from, as far as the HTTP layer could tell."""

    remote_addr: str | None = None


NO_CONTEXT = RequestContext()


#: Something that wants to see every audited event after it is stored (metrics, logs, monitoring).
Listener = Callable[[AuditEvent], Awaitable[None]]


class Auditor:
    """Appends events with the current time, then tells the listeners.

    An append that fails raises, so the request fails rather than going unrecorded; listeners
    run only after the event is safely stored.
    """

    __slots__ = ("_clock", "_listeners", "_log")

    def __init__(self, log: AuditLog, clock: Clock, listeners: Sequence[Listener] = ()) -> None:
        self._log = log
        self._clock = clock
        self._listeners = list(listeners)

    def subscribe(self, listener: Listener) -> None:
        """Add a listener (composition time only, before requests are served)."""
        self._listeners.append(listener)

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
        record = AuditEvent(
            at=self._clock.now(),
            event=event,
            outcome=outcome,
            client_id=ClientId(client_id) if client_id is not None else None,
            reason=reason,
            remote_addr=ctx.remote_addr,
            detail=detail,
        )
        await self._log.append(record)
        for listener in self._listeners:
            await listener(record)
