"""Commitment rotation (PROTOCOL.md §3.4) and revocation.

Rotation needs a token of the client itself, presented on the channel it was bound to, plus two
proofs over a fresh challenge of that channel: one with the old secret and one with the new, each
bound to both commitments. The store swaps the commitment compare-and-set, so two rotations proven
against the same old commitment cannot both win. Afterwards every pending challenge is void.
Refusals do the same work as a rotation (decoy statements and decoy writes), so their timing
does not tell why they were refused. Each use case's writes and its audit entry commit together.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zkauth.crypto import Credential, Point, RotationStatement, verify
from zkauth.errors import EncodingError, Refused
from zkauth.protocol import NONCE_SIZE, check_challenge_id, check_client_id
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext, Transaction
from zkauth.service.decoy import DECOY_CLIENT_ID, decoy_failure
from zkauth.service.lockout import refusal_for
from zkauth.service.models import ChallengeId, ClientId, Outcome
from zkauth.service.ports import Clock
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


# Decoy statement parts for refusal paths (see zkauth.service.decoy): valid, owned by nobody.
_DECOY_OLD: Final = Credential.generate().commitment
_DECOY_NEW: Final = Credential.generate().commitment
_DECOY_NONCE: Final = bytes(NONCE_SIZE)
_DECOY_BINDING: Final = bytes(32)
_DECOY_SUBJECT: Final = "decoy"


class Lifecycle:
    def __init__(self, auditor: Auditor, clock: Clock) -> None:
        self._audit = auditor
        self._clock = clock

    async def rotate(
        self, request: RotationRequest, claims: TokenClaims, ctx: RequestContext = NO_CONTEXT
    ) -> datetime:
        """Replace the client's commitment; returns the rotation time or raises ``Refused``.

        ``claims`` come from a token already verified (signature, audience, expiry, channel
        binding); whether its client may still act is part of this checklist.
        """
        check_client_id(request.client_id)
        check_challenge_id(request.challenge_id)
        now = self._clock.now()
        async with self._audit.transaction() as tx:
            reason, swap = await _checklist(tx, request, claims, now)
            # The same writes on every path: the voiding and the swap, or two decoy writes.
            # Challenges before client rows, as every unit of work takes them: on PostgreSQL,
            # two units taking the same rows in opposite orders can deadlock (refusals of
            # unrelated requests all write the decoy's two rows).
            if reason is None and swap is not None:
                await tx.challenges.void_for_client(ClientId(request.client_id), now)
                if not await tx.clients.rotate_commitment(*swap, now):
                    reason = "concurrent_rotation"
            else:
                await tx.challenges.void_for_client(DECOY_CLIENT_ID, now)
                await decoy_failure(tx.clients)
            outcome = Outcome.SUCCESS if reason is None else Outcome.FAILURE
            tx.record("rotation", outcome, ctx, client_id=request.client_id, reason=reason)
        if reason is not None:
            raise Refused()
        return now

    async def revoke(self, client_id: str, ctx: RequestContext = NO_CONTEXT) -> bool:
        """Revoke a client (admin). Idempotent: ``True`` only if this call changed anything."""
        check_client_id(client_id)
        now = self._clock.now()
        async with self._audit.transaction() as tx:
            # The client's live challenge before its row, as a login and a rotation take them
            # (else, on PostgreSQL, a revocation and a login of the client could deadlock).
            # Voiding first is harmless: a client already revoked has no live challenge.
            await tx.challenges.void_for_client(ClientId(client_id), now)
            changed = await tx.clients.revoke(ClientId(client_id), now)
            reason = None if changed else "no_change"
            tx.record("revocation", Outcome.SUCCESS, ctx, client_id=client_id, reason=reason)
        return changed


async def _checklist(
    tx: Transaction, request: RotationRequest, claims: TokenClaims, now: datetime
) -> tuple[str | None, tuple[ClientId, bytes, bytes] | None]:
    """Every check runs on every path (no early return): a consume, a lookup and two proof
    checks (against decoy statements where there is nothing real). The first failed check is
    the reason; when all passed, the compare-and-set to make (client, old and new
    commitment)."""
    client_id, binding = request.client_id, request.channel_binding
    reasons: list[str] = []
    owner = ClientId(client_id)
    if not hmac.compare_digest(claims.subject.encode(), client_id.encode()):
        reasons.append("token_subject")
        # Same query, aimed where it cannot match: another client's token must not burn
        # the victim's challenge.
        owner = DECOY_CLIENT_ID
    challenge = await tx.challenges.consume(ChallengeId(request.challenge_id), owner, now)
    client = await tx.clients.get(ClientId(client_id))
    if (ineligible := refusal_for(client, now)) is not None:
        reasons.append(ineligible)
    if challenge is None:
        reasons.append("challenge_unusable")
    elif not hmac.compare_digest(binding, challenge.channel_binding):
        reasons.append("channel_binding_mismatch")
    try:
        new = Point.decode(request.new_commitment)
    except EncodingError:
        reasons.append("invalid_new_commitment")
        new = _DECOY_NEW
    old = Point.decode(client.commitment if client is not None else _DECOY_OLD.encode())
    if new == old:
        reasons.append("same_commitment")
    real = not reasons and challenge is not None
    nonce = challenge.nonce if real and challenge is not None else _DECOY_NONCE
    cb = binding if real else _DECOY_BINDING
    who = client_id if real else _DECOY_SUBJECT
    current = RotationStatement.current(old, new, who, nonce, cb)
    proven_new = RotationStatement.new(old, new, who, nonce, cb)
    current_ok = verify(current, request.current_proof).valid
    new_ok = verify(proven_new, request.new_proof).valid
    if not current_ok:
        reasons.append("current_proof")
    if not new_ok:
        reasons.append("new_proof")
    if reasons:
        return reasons[0], None
    assert client is not None
    return None, (client.client_id, old.encode(), new.encode())
