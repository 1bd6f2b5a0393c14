"""Enrollment: register a client's commitment after checking its proof of possession.

Every refusal (identifier taken or revoked, malformed or identity commitment, proof that does not
hold) raises the same :class:`~zkauth.errors.Conflict`; the audit trail records which it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from zkauth.crypto import Point, PossessionStatement, verify
from zkauth.errors import Conflict, EncodingError
from zkauth.protocol import check_client_id
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext
from zkauth.service.models import Client, ClientId, Outcome
from zkauth.service.ports import ClientStore, Clock


class Enrollment:
    def __init__(
        self,
        clients: ClientStore,
        auditor: Auditor,
        clock: Clock,
        new_reference: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._clients = clients
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
        reason = await self._refusal(client_id, commitment, proof)
        if reason is None:
            now = self._clock.now()
            client = Client(
                client_id=ClientId(client_id),
                reference_id=self._new_reference(),
                commitment=commitment,
                created_at=now,
                updated_at=now,
            )
            if await self._clients.create(client):
                await self._audit.record("enrollment", Outcome.SUCCESS, ctx, client_id=client_id)
                return client
            reason = "identifier_taken"
        await self._audit.record(
            "enrollment", Outcome.FAILURE, ctx, client_id=client_id, reason=reason
        )
        raise Conflict()

    async def _refusal(self, client_id: str, commitment: bytes, proof: bytes) -> str | None:
        try:
            point = Point.decode(commitment)
        except EncodingError:
            return "invalid_commitment"
        result = verify(PossessionStatement(point, client_id), proof)
        if not result.valid:
            return f"proof_of_possession:{result.rejection}"
        # The store makes the final, atomic decision; this read only spares the insert attempt.
        if await self._clients.get(ClientId(client_id)) is not None:
            return "identifier_taken"
        return None
