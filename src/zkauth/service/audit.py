"""Small helpers for writing the audit trail from use cases.

The trail records what happened and why, for operators. It never holds secrets, proofs or
tokens: callers pass a fixed reason code and metadata such as the protocol version.
"""

from __future__ import annotations

from dataclasses import dataclass

from zkauth.service.models import AuditEvent, ClientId, Outcome
from zkauth.service.ports import AuditLog, Clock


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from, as far as the HTTP layer could tell."""

    remote_addr: str | None = None


NO_CONTEXT = RequestContext()


class Auditor:
    """Appends events with the current time; an append that fails raises (never dropped)."""

    __slots__ = ("_clock", "_log")

    def __init__(self, log: AuditLog, clock: Clock) -> None:
        self._log = log
        self._clock = clock

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
        await self._log.append(
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
