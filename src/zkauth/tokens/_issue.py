"""Issuing access tokens: EdDSA-signed RFC 9068 JWTs bound to the login's channel binding.

Pure and synchronous: the clock is an argument (like pyca/cryptography's ``encrypt_at_time``),
so expiry is testable to the second and the service decides what "now" is.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import jwt

from zkauth.errors import ConfigurationError, ProtocolError
from zkauth.protocol import check_channel_binding
from zkauth.tokens._jose import (
    ALGORITHM,
    CNF_METHOD,
    HEADER_TYP,
    MAX_EPOCH_SECONDS,
    b64url_encode,
    binding_thumbprint,
    whole_seconds,
)
from zkauth.tokens._keys import SigningKey

#: A day: access tokens are short-lived; anything longer belongs to a refresh mechanism.
MAX_TTL_SECONDS: Final = 24 * 3600
_JTI_BYTES: Final = 16  # 128 bits: collisions are out of reach, ids are unguessable


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token and the values the HTTP layer returns beside it.

    ``token`` is a bearer credential: it is kept out of ``repr`` so it does not end up in logs.
    """

    token: str = field(repr=False)
    jti: str
    issued_at: datetime
    expires_at: datetime
    expires_in: int


class TokenIssuer:
    """Signs access tokens with the first of ``keys`` (the others are only for verification)."""

    def __init__(self, keys: Sequence[SigningKey], issuer: str, ttl_seconds: int = 900) -> None:
        if not keys:
            raise ConfigurationError("the token issuer needs at least one signing key")
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("the token issuer name must be a non-empty string")
        if (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, int)
            or not 0 < ttl_seconds <= MAX_TTL_SECONDS
        ):
            raise ConfigurationError(f"token lifetime must be 1..{MAX_TTL_SECONDS} seconds")
        self._key = keys[0]
        self._issuer = issuer
        self._ttl = ttl_seconds
        self._headers: Final = {"typ": HEADER_TYP, "kid": self._key.kid}

    @property
    def kid(self) -> str:
        """The ``kid`` of the key that signs new tokens."""
        return self._key.kid

    def issue(
        self, subject: str, audience: str, channel_binding: bytes, now: datetime
    ) -> IssuedToken:
        """Sign a token for ``subject`` usable at ``audience`` from ``now`` for the TTL.

        ``cnf`` holds SHA-256 of the channel binding: a stolen token is useless without the
        binding, and the token itself does not reveal it.
        """
        _check_text("subject", subject)
        _check_text("audience", audience)
        check_channel_binding(channel_binding)
        issued_at = whole_seconds(now)
        expires_at = issued_at + self._ttl
        if issued_at < 0 or expires_at > MAX_EPOCH_SECONDS:
            raise ValueError("now is outside the range a token can express")
        jti = b64url_encode(secrets.token_bytes(_JTI_BYTES))
        claims = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "iat": issued_at,
            "exp": expires_at,
            "jti": jti,
            "cnf": {CNF_METHOD: binding_thumbprint(channel_binding)},
        }
        token = jwt.encode(
            claims, self._key.private_key, algorithm=ALGORITHM, headers=self._headers
        )
        return IssuedToken(
            token=token,
            jti=jti,
            issued_at=datetime.fromtimestamp(issued_at, UTC),
            expires_at=datetime.fromtimestamp(expires_at, UTC),
            expires_in=self._ttl,
        )


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{name} must be a non-empty string")
