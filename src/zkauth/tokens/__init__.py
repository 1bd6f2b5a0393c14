"""Access tokens: Ed25519-signed RFC 9068 JWTs, bound to the login's channel binding.

PROTOCOL.md §9: tokens carry ``iss, sub, aud, iat, exp, jti`` and ``cnf``, are signed
with a key kept outside the database and published as a JWKS. Pure and synchronous; the clock
is always an argument.

Public surface::

    SigningKey, load_signing_key, load_or_create_signing_key, jwks   key management
    TokenIssuer, IssuedToken                                          issuing
    TokenVerifier, TokenClaims, TokenRefused, RefusalReason           verifying
"""

from __future__ import annotations

from zkauth.tokens._issue import IssuedToken, TokenIssuer
from zkauth.tokens._jose import ALGORITHM, CNF_METHOD, HEADER_TYP
from zkauth.tokens._keys import SigningKey, jwks, load_or_create_signing_key, load_signing_key
from zkauth.tokens._verify import RefusalReason, TokenClaims, TokenRefused, TokenVerifier

__all__ = [
    "ALGORITHM",
    "CNF_METHOD",
    "HEADER_TYP",
    "IssuedToken",
    "RefusalReason",
    "SigningKey",
    "TokenClaims",
    "TokenIssuer",
    "TokenRefused",
    "TokenVerifier",
    "jwks",
    "load_or_create_signing_key",
    "load_signing_key",
]
