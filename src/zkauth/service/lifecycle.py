"""Commitment rotation (PROTOCOL.md §3.4) and revocation.

Rotation needs a token of the client itself, presented on the channel it was bound to, plus two
proofs over a fresh challenge of that channel: one with the old secret and one with the new, each
bound to both commitments. The store swaps the commitment compare-and-set, so two rotations proven
against the same old commitment cannot both win. Afterwards every pending challenge is void.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from zkauth.crypto import Point, RotationStatement, verify
from zkauth.errors import EncodingError, Refused
from zkauth.protocol import check_client_id
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext
from zkauth.service.lockout import refusal_for
from zkauth.service.models import ChallengeId, ClientId, Outcome
from zkauth.service.ports import ChallengeStore, ClientStore, Clock
from zkauth.tokens import TokenClaims


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationRequest:
    """A rotation as sent by the client (PROTOCOL.md §3.4); bytes already base64-decoded."""

    client_id: str
    challenge_id: str
    current_proof: bytes
    new_commitment: bytes
    new_proof: bytes
    channel_binding: bytes


class Lifecycle:
    def __init__(
        self, clients: ClientStore, challenges: ChallengeStore, auditor: Auditor, clock: Clock
    ) -> None:
        self._clients = clients
        self._challenges = challenges
        self._audit = auditor
        self._clock = clock

    async def rotate(
        self, request: RotationRequest, claims: TokenClaims, ctx: RequestContext = NO_CONTEXT
    ) -> datetime:
        """Replace the client's commitment; returns the rotation time or raises ``Refused``.

        ``claims`` come from a token already verified against ``request.channel_binding``.
        """
        check_client_id(request.client_id)
        now = self._clock.now()
        reason = await self._refusal(request, claims, now)
        if reason is not None:
            await self._audit.record(
                "rotation", Outcome.FAILURE, ctx, client_id=request.client_id, reason=reason
            )
            raise Refused()
        await self._challenges.void_for_client(ClientId(request.client_id), now)
        await self._audit.record("rotation", Outcome.SUCCESS, ctx, client_id=request.client_id)
        return now

    async def _refusal(
        self, request: RotationRequest, claims: TokenClaims, now: datetime
    ) -> str | None:
        client_id, binding = request.client_id, request.channel_binding
        if not hmac.compare_digest(claims.subject.encode(), client_id.encode()):
            return "token_subject"
        challenge = await self._challenges.consume(
            ChallengeId(request.challenge_id), ClientId(client_id), now
        )
        client = await self._clients.get(ClientId(client_id))
        if (ineligible := refusal_for(client, now)) is not None:
            return ineligible
        if challenge is None:
            return "challenge_unusable"
        if not hmac.compare_digest(binding, challenge.channel_binding):
            return "channel_binding_mismatch"
        assert client is not None
        try:
            new = Point.decode(request.new_commitment)
        except EncodingError:
            return "invalid_new_commitment"
        old = Point.decode(client.commitment)
        if new == old:
            return "same_commitment"
        nonce = challenge.nonce
        current = RotationStatement.current(old, new, client_id, nonce, binding)
        if not verify(current, request.current_proof).valid:
            return "current_proof"
        proven_new = RotationStatement.new(old, new, client_id, nonce, binding)
        if not verify(proven_new, request.new_proof).valid:
            return "new_proof"
        if not await self._clients.rotate_commitment(
            client.client_id, old.encode(), new.encode(), now
        ):
            return "concurrent_rotation"
        return None

    async def revoke(self, client_id: str, ctx: RequestContext = NO_CONTEXT) -> bool:
        """Revoke a client (admin). Idempotent: ``True`` only if this call changed anything."""
        check_client_id(client_id)
        now = self._clock.now()
        changed = await self._clients.revoke(ClientId(client_id), now)
        if changed:
            await self._challenges.void_for_client(ClientId(client_id), now)
        await self._audit.record(
            "revocation",
            Outcome.SUCCESS,
            ctx,
            client_id=client_id,
            reason=None if changed else "no_change",
        )
        return changed
