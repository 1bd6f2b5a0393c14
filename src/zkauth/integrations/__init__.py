"""Protect your own API with zkauth access tokens.

A resource server verifies zkauth's tokens itself with the keys zkauth publishes
(``/.well-known/jwks.json``): signature, issuer, ONE audience, expiry, and the channel binding
the client sends in ``X-Channel-Binding``. Optionally it also asks zkauth's RFC 7662 endpoint,
so that revocations are seen at once. Every refusal is the same 401; a missing key set is a 503.

Public surface::

    JwksCache, KeySet                        the published keys, fetched and cached
    ZkAuthTokens, Introspection              framework-free checks (``authenticate``)
    ZkAuthDependency, ZkAuthProblem,         FastAPI: ``Depends(ZkAuthDependency(tokens))``
      zkauth_problem_handler
    ZkAuthMiddleware                         any ASGI app: claims in ``scope["state"]["zkauth"]``
    TokenClaims                              what a verified token says (from ``zkauth.tokens``)
"""

from __future__ import annotations

from zkauth.integrations.asgi import ZkAuthMiddleware
from zkauth.integrations.core import Introspection, ZkAuthTokens
from zkauth.integrations.fastapi import ZkAuthDependency, ZkAuthProblem, zkauth_problem_handler
from zkauth.integrations.jwks import JwksCache, KeySet
from zkauth.tokens import TokenClaims

__all__ = [
    "Introspection",
    "JwksCache",
    "KeySet",
    "TokenClaims",
    "ZkAuthDependency",
    "ZkAuthMiddleware",
    "ZkAuthProblem",
    "ZkAuthTokens",
    "zkauth_problem_handler",
]
