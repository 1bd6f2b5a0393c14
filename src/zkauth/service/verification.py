"""Verification: take a challenge, check the proof, issue an access token (PROTOCOL.md §6).

Reads as a checklist. Every refusal raises the same :class:`~zkauth.errors.Refused`; the audit
trail gets the reason. The client and its live challenge are read first; the proof is checked
against them (against a decoy statement when there is no real one); then one unit of work takes
the challenge, writes the lockout counters and records the audit entry, all or nothing: an
attempt counts, and its entry is kept, only if it took the challenge it was checked against,
so one challenge buys exactly one attempt, and a crash never leaves a consumed challenge
without its entry. Every path does the same work — the two reads, a proof check, a take (of the
decoy's live challenge when there is none to take), a lockout write (the decoy's when the
attempt does not count), an audit entry, a token signature — so an unknown client, a missing
challenge and a wrong proof cost what a valid login costs (measured by ``make bench-timing``).
On PostgreSQL the unit is one statement. An attempt that loses its challenge between the read
and the take (a concurrent attempt took it; it was voided, superseded or expired) keeps nothing
and is settled again as one with no live challenge.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from zkauth.crypto import Credential, LoginStatement, Point, verify
from zkauth.errors import ProtocolError, Refused
from zkauth.protocol import LOGIN_TAG_TEXT, NONCE_SIZE, check_challenge_id, check_client_id
from zkauth.service import lockout
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext
from zkauth.service.decoy import DECOY_CLIENT_ID
from zkauth.service.models import Challenge, ChallengeId, Client, ClientId, Outcome
from zkauth.service.policy import Policy
from zkauth.service.ports import ChallengeStore, ClientStore, Clock, Stale
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
        challenges: ChallengeStore,
        issuer: TokenIssuer,
        auditor: Auditor,
        clock: Clock,
        policy: Policy,
    ) -> None:
        self._clients = clients
        self._challenges = challenges
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
        check_challenge_id(challenge_id)
        audience = self._policy.default_audience if audience is None else audience
        if audience not in self._policy.audiences:
            raise ProtocolError("unknown targetAudience")
        now = self._clock.now()
        # Both read before the unit of work. A revocation or a rotation committed since voids
        # the client's live challenge, so the unit then fails to take it; and a client has one
        # live challenge at a time, issued only once the attempt before it has committed, so no
        # lockout written by an earlier attempt can be missed here.
        client = await self._clients.get(ClientId(client_id))
        challenge = await self._challenges.find_live(
            ChallengeId(challenge_id), ClientId(client_id), now
        )
        attempt = _Attempt(client, client_id, proof, channel_binding, tag, audience, now, ctx)
        try:
            reason = await self._settle(attempt, challenge)
        except Stale:
            # Taken (by a concurrent attempt), superseded, voided or expired since it was read:
            # this attempt keeps nothing and is settled again as one with no live challenge.
            reason = await self._settle(attempt, None)
        # Committed: the token is signed on every path (refusals sign for the decoy, discarded).
        if reason is None:
            return self._issuer.issue(client_id, audience, channel_binding, now)
        self._issuer.issue(DECOY_CLIENT_ID, audience, _DECOY_BINDING, now)
        raise Refused()

    async def _settle(self, attempt: _Attempt, challenge: Challenge | None) -> str | None:
        """Decide the attempt against ``challenge`` (``None``: no live one) and commit what it
        leads to: the challenge taken, the lockout write, the audit event. Every path does the
        same work, one statement on PostgreSQL. Returns the reason it is refused, or ``None``.
        Raises :class:`Stale`, keeping nothing, if the challenge was no longer live."""
        client, now = attempt.client, attempt.now
        reason, counts = self._decide(attempt, challenge)
        async with self._audit.transaction() as tx:
            if challenge is None:
                await tx.challenges.take_decoy(now)
            else:
                await tx.challenges.take(challenge, now)
            extra = {"audience": attempt.audience} if reason is None else {}
            outcome = Outcome.SUCCESS if reason is None else Outcome.FAILURE
            tx.record(
                "verification", outcome, attempt.ctx,
                client_id=attempt.client_id, reason=reason, **extra,
            )  # fmt: skip
            if client is None or not counts:
                # Nothing of the client's to count: the same write, on the decoy.
                await tx.clients.save_lockout_state(DECOY_CLIENT_ID, 0, None, 0)
            else:
                state = lockout.after_attempt(client, reason is None, now, self._policy)
                await tx.clients.save_lockout_state(
                    client.client_id, state.failed_attempts, state.locked_until,
                    state.lockout_count,
                )  # fmt: skip
                if state.locks:
                    # A real attempt on a live challenge failed, and it was one too many.
                    tx.record(
                        "lockout", Outcome.SUCCESS, attempt.ctx, client_id=client.client_id,
                        lockouts=str(state.lockout_count),
                    )  # fmt: skip
        return reason

    def _decide(self, attempt: _Attempt, challenge: Challenge | None) -> tuple[str | None, bool]:
        """The checklist: the first reason to refuse, or ``None``; and whether the attempt
        counts for the client's lockout (an eligible client's attempt on its live challenge).
        The proof is checked on every path, against a decoy statement when there is no real
        one."""
        client = attempt.client
        ineligible = lockout.refusal_for(client, attempt.now)
        reason = ineligible
        if challenge is None:
            reason = reason or "challenge_unusable"
        elif not hmac.compare_digest(attempt.channel_binding, challenge.channel_binding):
            reason = reason or "channel_binding_mismatch"
        if not hmac.compare_digest(attempt.tag.encode("utf-8"), LOGIN_TAG_TEXT.encode("ascii")):
            reason = reason or "domain_separation_tag"

        if reason is None and client is not None and challenge is not None:
            commitment, nonce, binding = client.commitment, challenge.nonce, attempt.channel_binding
        else:
            commitment, nonce, binding = _DECOY, _DECOY_NONCE, _DECOY_BINDING
        statement = LoginStatement(Point.decode(commitment), attempt.client_id, nonce, binding)
        result = verify(statement, attempt.proof)
        if reason is None and not result.valid:
            reason = f"proof:{result.rejection}"
        return reason, ineligible is None and challenge is not None


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One verification request, its client as read before the unit of work."""

    client: Client | None
    client_id: str
    proof: bytes
    channel_binding: bytes
    tag: str
    audience: str
    now: datetime
    ctx: RequestContext
