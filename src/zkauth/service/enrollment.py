"""Enrollment: register a client's commitment after checking its proof of possession.

Every refusal (identifier taken or revoked, malformed or identity commitment, proof that does not
hold) raises the same :class:`~zkauth.errors.Conflict`; the audit trail records which it was. The
new client row and its audit entry are committed together.

Whether the identifier is free is read before the unit of work, and the insert decides: an
identifier taken between the two (a concurrent enrollment) makes the unit's insert fail, and
the unit, success event included, rolls back; the refusal is then recorded on its own. So the
unit of an enrollment inserts two rows whose outcome nobody reads before the commit, which on
PostgreSQL is one statement, with no BEGIN and COMMIT.
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
        reason = _refusal(client_id, commitment, proof)
        if reason is None and await self._clients.get(ClientId(client_id)) is not None:
            reason = "identifier_taken"  # in any status: a revoked identifier stays used
        if reason is None:
            now = self._clock.now()
            client = Client(
                client_id=ClientId(client_id),
                reference_id=self._new_reference(),
                commitment=commitment,
                created_at=now,
                updated_at=now,
            )
            try:
                async with self._audit.transaction() as tx:
                    await tx.clients.add(client)
                    tx.record("enrollment", Outcome.SUCCESS, ctx, client_id=client_id)
                return client
            except Conflict:
                reason = "identifier_taken"  # since the read above: the unit left nothing
        async with self._audit.transaction() as tx:
            tx.record("enrollment", Outcome.FAILURE, ctx, client_id=client_id, reason=reason)
        raise Conflict()


def _refusal(client_id: str, commitment: bytes, proof: bytes) -> str | None:
    """Why the request itself is refused (before the store is asked), or ``None``."""
    try:
        point = Point.decode(commitment)
    except EncodingError:
        return "invalid_commitment"
    result = verify(PossessionStatement(point, client_id), proof)
    if not result.valid:
        return f"proof_of_possession:{result.rejection}"
    return None  # whether the identifier is free is read, then the insert decides atomically
