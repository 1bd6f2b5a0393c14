"""Framework-free token checks shared by the FastAPI dependency and the ASGI middleware.

:meth:`ZkAuthTokens.authenticate` turns the two request headers into verified claims, or raises
the one :class:`~zkauth.errors.Refused` (whatever the cause, README.md "With
zkauth.integrations") or :class:`~zkauth.errors.ServiceUnavailable` when it cannot decide safely
(fail closed).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any, Final

import httpx

from zkauth.errors import ConfigurationError, Refused, ServiceUnavailable
from zkauth.integrations.jwks import JwksCache, KeySet
from zkauth.service.clock import SystemClock
from zkauth.service.ports import Clock
from zkauth.tokens import RefusalReason, TokenClaims, TokenRefused, TokenVerifier

logger = logging.getLogger("zkauth.integrations")

#: Channel bindings are 32 or 48 bytes (PROTOCOL.md); 128 characters leave room, and bound the
#: work an attacker can make us do before the signature check.
_MAX_BINDING_CHARS: Final = 128
_STANDARD_B64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_MAX_INTROSPECTION_BYTES: Final = 16 * 1024


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive, RFC 7235)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def channel_binding(header: str | None) -> bytes | None:
    """``X-Channel-Binding`` decoded (strict standard base64); anything else counts as missing.

    A missing binding is not refused here but by the verifier, after the signature check, so
    a refusal costs the same work whether or not the binding was sent.
    """
    if header is None or len(header) > _MAX_BINDING_CHARS:
        return None
    if _STANDARD_B64.fullmatch(header) is None:
        return None
    try:
        return base64.b64decode(header, validate=True) or None
    except (binascii.Error, ValueError):
        return None


class Introspection:
    """Asks the zkauth server's RFC 7662 endpoint whether a token is still active.

    Signatures cannot say "revoked": a revoked client's token verifies until it expires. With
    introspection every request costs a round trip to zkauth, but a revocation through
    ``DELETE /v1/clients/{id}`` is seen at once. ``url`` is the endpoint itself
    (``https://auth.example/v1/introspect``); ``credential`` is the server's
    ``ZKAUTH_INTROSPECTION_TOKEN`` (or an admin credential). An unreachable endpoint or a refused
    credential raises :class:`~zkauth.errors.ServiceUnavailable`: fail closed.
    """

    def __init__(
        self,
        url: str,
        credential: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 5,
    ) -> None:
        if httpx.URL(url).scheme not in ("https", "http"):
            raise ConfigurationError("the introspection URL must be an http(s) URL")
        if not credential:
            raise ConfigurationError("introspection needs a credential")
        self.url = url
        self._headers = {"Authorization": f"Bearer {credential}", "Accept": "application/json"}
        self._owns_http = http is None
        self._http = httpx.AsyncClient(timeout=timeout) if http is None else http
        self._timeout = timeout

    async def active(self, token: str) -> dict[str, Any] | None:
        """The introspection response of an active token, ``None`` for an inactive one."""
        try:
            response = await self._http.post(
                self.url, data={"token": token}, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            logger.warning("zkauth introspection at %s failed: %s", self.url, type(exc).__name__)
            raise ServiceUnavailable("token introspection is unavailable") from None
        if response.status_code != 200 or len(response.content) > _MAX_INTROSPECTION_BYTES:
            # 401 here means OUR credential was refused: a configuration problem, not the token's.
            logger.warning("zkauth introspection at %s answered HTTP %d", self.url,
                           response.status_code)  # fmt: skip
            raise ServiceUnavailable("token introspection is unavailable")
        try:
            document = response.json()
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("active"), bool):
            logger.warning("zkauth introspection at %s sent no RFC 7662 answer", self.url)
            raise ServiceUnavailable("token introspection is unavailable")
        return document if document["active"] else None

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:  # the credential stays out of logs
        return f"Introspection({self.url!r})"


class ZkAuthTokens:
    """Verifies zkauth access tokens for ONE audience of this resource server.

    Checks, in order: a bearer token is present; the signature against ``jwks`` (one early
    refetch when its ``kid`` is unknown); ``typ``, issuer, audience, expiry; the channel binding
    sent in ``X-Channel-Binding`` against the token's ``cnf``; then, if configured,
    ``introspection`` (only for tokens that passed everything else, so garbage never reaches
    zkauth). ``clock`` is the resource server's clock (default: the system clock, UTC).
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks: JwksCache,
        *,
        introspection: Introspection | None = None,
        clock: Clock | None = None,
        max_clock_skew_seconds: int = 60,
    ) -> None:
        for name, value in (("issuer", issuer), ("audience", audience)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"zkauth {name} must be a non-empty string")
        if not 0 <= max_clock_skew_seconds <= 300:
            raise ConfigurationError("clock skew allowance must be 0..300 seconds")
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.introspection = introspection
        self._clock = clock or SystemClock()
        self._skew = max_clock_skew_seconds

    async def authenticate(
        self, authorization: str | None, x_channel_binding: str | None
    ) -> TokenClaims:
        """Claims of a valid token presented on its channel, or :class:`Refused`.

        ``authorization`` and ``x_channel_binding`` are the raw header values (``None`` when
        absent). Raises :class:`~zkauth.errors.ServiceUnavailable` when no keys (or no
        introspection answer) are available.
        """
        token = bearer_token(authorization)
        if token is None:
            logger.debug("zkauth refusal: no bearer token")
            raise Refused()
        binding = channel_binding(x_channel_binding)
        try:
            claims = await self._verify(token, binding)
        except TokenRefused as refusal:
            # The reason is for the operator only; the caller sees the one refusal.
            logger.debug("zkauth refusal: %s", refusal.reason.value)
            raise
        if self.introspection is not None:
            answer = await self.introspection.active(token)
            if answer is None or answer.get("sub", claims.subject) != claims.subject:
                logger.debug("zkauth refusal: inactive at introspection (revoked, locked)")
                raise Refused()
        return claims

    async def _verify(self, token: str, binding: bytes | None) -> TokenClaims:
        """Verify with the cached keys; once more with a newer set if the ``kid`` was unknown."""
        keys = await self.jwks.current()
        now = self._clock.now()  # after a possible fetch: its duration must not extend a token
        try:
            return self._verifier(keys).verify(token, channel_binding=binding, now=now)
        except TokenRefused as refusal:
            if refusal.reason is not RefusalReason.UNKNOWN_KEY:
                raise
            newer = await self.jwks.refresh_for_unknown_kid(keys)
            if newer is None:
                raise
        return self._verifier(newer).verify(token, channel_binding=binding, now=now)

    def _verifier(self, keys: KeySet) -> TokenVerifier:
        return keys.verifier(self.issuer, self.audience, max_clock_skew_seconds=self._skew)

    def __repr__(self) -> str:
        return f"ZkAuthTokens(issuer={self.issuer!r}, audience={self.audience!r})"
