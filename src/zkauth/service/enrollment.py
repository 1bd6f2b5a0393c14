"""Enrollment: register a client's commitment after checking its proof of possession.

Every refusal (identifier taken or revoked, malformed or identity commitment, proof that does not
hold) raises the same :class:`~zkauth.errors.Conflict`; the audit trail records which it was. The
new client row and its audit entry are committed together.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from zkauth.crypto import Point, PossessionStatement, verify
from zkauth.errors import Conflict, EncodingError
from zkauth.protocol import check_client_id
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext
from zkauth.service.models import Client, ClientId, Outcome
from zkauth.service.ports import Clock


class Enrollment:
    def __init__(
        self,
        auditor: Auditor,
        clock: Clock,
        new_reference: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._audit = auditor
        self._clock = clock
        self._new_reference = new_reference

    async def enroll(
        self, client_id: str, commitment: bytes, proof: bytes, ctx: RequestContext = NO_CONTEXT
    ) -> Client:
        """Enroll ``client_id`` with ``commitment``; raises ``Conflict`` on any refusal.

        A malformed identifier is a :class:`~zkauth.errors.ProtocolError` (400): it is input
        validation, not a decision about the client.
        """
        check_client_id(client_id)
        reason = _refusal(client_id, commitment, proof)
        client = None
        if reason is None:
            now = self._clock.now()
            client = Client(
                client_id=ClientId(client_id),
                reference_id=self._new_reference(),
                commitment=commitment,
                created_at=now,
                updated_at=now,
            )
        async with self._audit.transaction() as tx:
            if client is not None and not await tx.clients.create(client):
                reason = "identifier_taken"
            outcome = Outcome.SUCCESS if reason is None else Outcome.FAILURE
            tx.record("enrollment", outcome, ctx, client_id=client_id, reason=reason)
        if client is None or reason is not None:
            raise Conflict()
        return client


def _refusal(client_id: str, commitment: bytes, proof: bytes) -> str | None:
    """Why the request itself is refused (before the store is asked), or ``None``."""
    try:
        point = Point.decode(commitment)
    except EncodingError:
        return "invalid_commitment"
    result = verify(PossessionStatement(point, client_id), proof)
    if not result.valid:
        return f"proof_of_possession:{result.rejection}"
    return None  # whether the identifier is free, the insert decides atomically
