"""Access checks for bearer tokens: signature, audience, channel binding, and client status.

Token signatures alone cannot express "revoked at once", so every check also reads the client's
status: a revoked client's tokens stop working on the next request, and each use of one is
audited (``token_use``, reason ``revoked``): activity of a revoked client, which the anomaly
monitor alerts on. A *locked* client's tokens
keep working until they expire: lockout stops new logins, and anyone can cause one with three
bad proofs, so it must not log the real owner out.
"""

from __future__ import annotations

from collections.abc import Mapping

from zkauth.errors import Refused
from zkauth.service.audit import NO_CONTEXT, Auditor, RequestContext
from zkauth.service.models import ClientId, ClientStatus, Outcome
from zkauth.service.ports import ClientStore, Clock
from zkauth.tokens import TokenClaims, TokenVerifier


class Access:
    def __init__(
        self,
        clients: ClientStore,
        verifiers: Mapping[str, TokenVerifier],
        default_audience: str,
        clock: Clock,
        auditor: Auditor,
    ) -> None:
        self._clients = clients
        self._verifiers = dict(verifiers)
        self._verifier = self._verifiers[default_audience]
        self._clock = clock
        self._audit = auditor

    def check_token(self, token: str, channel_binding: bytes | None) -> TokenClaims:
        """Signature, issuer, audience, expiry and binding only: for use cases that check the
        client's standing themselves, as part of their own checklist (rotation)."""
        return self._verifier.verify(token, channel_binding=channel_binding, now=self._clock.now())

    async def authorize(
        self, token: str, channel_binding: bytes | None, ctx: RequestContext = NO_CONTEXT
    ) -> TokenClaims:
        """Claims of a valid token for the server's own audience, presented on its channel by a
        client still in good standing."""
        claims = self.check_token(token, channel_binding)
        if not await self._in_good_standing(claims, ctx):
            raise Refused()
        return claims

    async def _in_good_standing(self, claims: TokenClaims, ctx: RequestContext) -> bool:
        client = await self._clients.get(ClientId(claims.subject))
        if client is not None and client.status is ClientStatus.REVOKED:
            await self._audit.record(
                "token_use", Outcome.FAILURE, ctx, client_id=claims.subject, reason="revoked"
            )
        return client is not None and client.status is not ClientStatus.REVOKED

    async def introspect(self, token: str, ctx: RequestContext = NO_CONTEXT) -> TokenClaims | None:
        """RFC 7662: the claims of an active token for any audience (binding not checked)."""
        now = self._clock.now()
        claims = None
        for verifier in self._verifiers.values():
            try:
                claims = verifier.verify_unbound(token, now=now)
                break
            except Refused:
                continue
        if claims is None or not await self._in_good_standing(claims, ctx):
            return None
        return claims
