"""Challenge issuance: a fresh 24-byte nonce, bound to the client's channel binding.

A new challenge supersedes the client's older unconsumed ones (the store does it atomically) and
expires after ``Policy.challenge_ttl``. Unknown, revoked and locked clients, and bindings of the
wrong size, all get the same :class:`~zkauth.errors.Refused`, after the same work: one lookup,
one challenge written (to the decoy, :mod:`zkauth.service.decoy`), one audit entry.
"""

from __future__ import annotations

import base64
import os

from zkauth.crypto import Rng
from zkauth.errors import ProtocolError, Refused
from zkauth.protocol import (
    CHANNEL_BINDING_SIZES,
    NONCE_SIZE,
    SUPPORTED_VERSIONS,
    UNSUPPORTED_VERSION,
    check_client_id,
)
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext
from zkauth.service.decoy import DECOY_CLIENT_ID
from zkauth.service.lockout import refusal_for
from zkauth.service.models import Challenge, ChallengeId, ClientId, Outcome
from zkauth.service.policy import Policy
from zkauth.service.ports import ClientStore, Clock

_ID_BYTES = 18  # 144 bits: unguessable, and 24 base64url characters
_DECOY_BINDING = bytes(32)


class Challenges:
    def __init__(
        self,
        clients: ClientStore,
        auditor: Auditor,
        clock: Clock,
        policy: Policy,
        rng: Rng = os.urandom,
    ) -> None:
        self._clients = clients
        self._audit = auditor
        self._clock = clock
        self._policy = policy
        self._rng = rng

    async def request(
        self,
        client_id: str,
        channel_binding: bytes,
        protocol_version: str | None = None,
        ctx: RequestContext = NO_CONTEXT,
    ) -> Challenge:
        check_client_id(client_id)
        if protocol_version is not None and protocol_version not in SUPPORTED_VERSIONS:
            raise ProtocolError(UNSUPPORTED_VERSION)
        now = self._clock.now()
        # Read before the transaction, not in it: the issue does not depend on the row, and
        # verification reads the client again itself, and a revocation voids the challenge, so
        # a client revoked or locked meanwhile still cannot log in. (The transaction is then one
        # write.)
        client = await self._clients.get(ClientId(client_id))
        reason = refusal_for(client, now)
        if reason is None and len(channel_binding) not in CHANNEL_BINDING_SIZES:
            reason = "channel_binding_size"
        # A refusal issues its challenge to the decoy: the same write as an accepted request
        # (timing), and nothing usable for the requested identifier.
        holder = ClientId(client_id) if reason is None else DECOY_CLIENT_ID
        challenge = Challenge(
            challenge_id=ChallengeId(
                "ch_" + base64.urlsafe_b64encode(self._rng(_ID_BYTES)).decode("ascii")
            ),
            client_id=holder,
            nonce=self._rng(NONCE_SIZE),
            channel_binding=channel_binding if reason is None else _DECOY_BINDING,
            issued_at=now,
            expires_at=now + self._policy.challenge_ttl,
        )
        async with self._audit.transaction() as tx:
            await tx.challenges.issue(challenge)
            outcome = Outcome.SUCCESS if reason is None else Outcome.FAILURE
            tx.record("challenge", outcome, ctx, client_id=client_id, reason=reason)
        if reason is not None:
            raise Refused()
        return challenge
