"""Verification: consume a challenge, check the proof, issue an access token (PROTOCOL.md §6).

Reads as a checklist. Every refusal raises the same :class:`~zkauth.errors.Refused`; the audit
trail gets the reason. Every path does the same work — a consume, a lookup, a proof check
(against a decoy statement when there is no real one), a lockout write, a token signature, an
audit entry — so an unknown client, a missing challenge and a wrong proof cost what a valid
login costs (measured by ``make bench-timing``). The consume, the lockout write and the audit
entry commit together: a crash never leaves a consumed challenge without its entry.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final

from zkauth.crypto import Credential, LoginStatement, Point, verify
from zkauth.errors import ProtocolError, Refused
from zkauth.protocol import LOGIN_TAG_TEXT, NONCE_SIZE, check_client_id
from zkauth.service import lockout
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext, Transaction
from zkauth.service.decoy import DECOY_CLIENT_ID, decoy_failure
from zkauth.service.models import ChallengeId, Client, ClientId, Outcome
from zkauth.service.policy import Policy
from zkauth.service.ports import ClientStore, Clock
from zkauth.tokens import IssuedToken, TokenIssuer

# A decoy statement for refusal paths: nobody holds an opening of this commitment once the
# process drops the credential it came from.
_DECOY: Final = Credential.generate().commitment.encode()
_DECOY_NONCE: Final = bytes(NONCE_SIZE)
_DECOY_BINDING: Final = bytes(32)


class Verification:
    def __init__(
        self,
        clients: ClientStore,
        issuer: TokenIssuer,
        auditor: Auditor,
        clock: Clock,
        policy: Policy,
    ) -> None:
        self._clients = clients
        self._issuer = issuer
        self._audit = auditor
        self._clock = clock
        self._policy = policy

    async def verify(
        self,
        client_id: str,
        challenge_id: str,
        proof: bytes,
        channel_binding: bytes,
        tag: str,
        audience: str | None = None,
        ctx: RequestContext = NO_CONTEXT,
    ) -> IssuedToken:
        # Input validation first: a 400 consumes nothing and changes nothing.
        check_client_id(client_id)
        audience = self._policy.default_audience if audience is None else audience
        if audience not in self._policy.audiences:
            raise ProtocolError("unknown targetAudience")
        now = self._clock.now()
        # Read before the transaction: a revocation or a rotation committed after this read
        # voids the client's live challenge, so the consume below then finds nothing; and a
        # client has one live challenge at a time, issued only once the attempt before it has
        # committed (its consume holds the row the issue must replace), so no lockout written
        # by an earlier attempt can be missed here.
        client = await self._clients.get(ClientId(client_id))
        async with self._audit.transaction() as tx:
            reason, counts = await self._decide(
                tx, client, client_id, challenge_id, proof, channel_binding, tag, now
            )
            outcome = Outcome.SUCCESS if reason is None else Outcome.FAILURE
            extra = {"audience": audience} if reason is None else {}
            tx.record("verification", outcome, ctx, client_id=client_id, reason=reason, **extra)
            # Appended before the lockout write, so on PostgreSQL the event goes with it.
            await tx.append_recorded()
            await self._count(tx, client if counts else None, reason, now, ctx)
        # Committed: the token is signed on every path (refusals sign for the decoy, discarded).
        if reason is None:
            return self._issuer.issue(client_id, audience, channel_binding, now)
        self._issuer.issue(DECOY_CLIENT_ID, audience, _DECOY_BINDING, now)
        raise Refused()

    async def _decide(
        self,
        tx: Transaction,
        client: Client | None,
        client_id: str,
        challenge_id: str,
        proof: bytes,
        channel_binding: bytes,
        tag: str,
        now: datetime,
    ) -> tuple[str | None, bool]:
        """The checklist, inside the transaction: the first reason to refuse, or ``None``; and
        whether the attempt counts for the client's lockout (an eligible client's attempt on
        its live challenge)."""
        # Consumed before anything is checked: one challenge buys exactly one attempt.
        challenge = await tx.challenges.consume(ChallengeId(challenge_id), ClientId(client_id), now)

        ineligible = lockout.refusal_for(client, now)
        reason = ineligible
        if challenge is None:
            reason = reason or "challenge_unusable"
        elif not hmac.compare_digest(channel_binding, challenge.channel_binding):
            reason = reason or "channel_binding_mismatch"
        if not hmac.compare_digest(tag.encode("utf-8"), LOGIN_TAG_TEXT.encode("ascii")):
            reason = reason or "domain_separation_tag"

        if reason is None and client is not None and challenge is not None:
            commitment, nonce, binding = client.commitment, challenge.nonce, channel_binding
        else:
            commitment, nonce, binding = _DECOY, _DECOY_NONCE, _DECOY_BINDING
        statement = LoginStatement(Point.decode(commitment), client_id, nonce, binding)
        result = verify(statement, proof)
        if reason is None and not result.valid:
            reason = f"proof:{result.rejection}"
        return reason, ineligible is None and client is not None and challenge is not None

    async def _count(
        self,
        tx: Transaction,
        client: Client | None,
        reason: str | None,
        now: datetime,
        ctx: RequestContext,
    ) -> None:
        """Every path does the same work here: one lockout write, for ``client`` if the attempt
        counts (refusals that do not spend theirs on the decoy)."""
        if client is None:
            await decoy_failure(tx.clients)
        elif reason is None:
            await lockout.record_success(tx.clients, client)
        elif await lockout.record_failure(tx.clients, client, now, self._policy):
            # A real attempt on a live challenge failed, and it was one too many.
            tx.record(
                "lockout", Outcome.SUCCESS, ctx, client_id=client.client_id,
                lockouts=str(client.lockout_count + 1),
            )  # fmt: skip
