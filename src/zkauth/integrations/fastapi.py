"""A FastAPI dependency that admits requests carrying a valid zkauth access token.

::

    jwks = JwksCache("https://auth.example/.well-known/jwks.json")
    tokens = ZkAuthTokens("zkauth", "orders", jwks)
    zkauth = ZkAuthDependency(tokens)
    zkauth.install(app)

    @app.get("/orders")
    async def orders(claims: Annotated[TokenClaims, Depends(zkauth)]) -> ...: ...

Refusals are one 401 (``WWW-Authenticate: Bearer realm="zkauth", error="invalid_token"`` and
the same RFC 9457 body whatever the cause); no usable keys is a 503.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request
from starlette.responses import Response

from zkauth.errors import Refused, ServiceUnavailable
from zkauth.integrations._responses import PROBLEM_JSON, answer_for
from zkauth.integrations.core import ZkAuthTokens
from zkauth.tokens import TokenClaims


class ZkAuthProblem(HTTPException):
    """The 401 or 503 raised by :class:`ZkAuthDependency`; ``body`` is the exact problem.

    An ``HTTPException`` so that FastAPI answers it even when :meth:`ZkAuthDependency.install`
    was not called (then as ``{"detail": <problem>}``, still identical for every cause).
    """

    def __init__(self, status_code: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status_code, detail=json.loads(body), headers=dict(headers))
        self.body = body


async def zkauth_problem_handler(request: Request, exc: Exception) -> Response:
    """Renders :class:`ZkAuthProblem` as ``application/problem+json`` with the prebuilt bytes."""
    assert isinstance(exc, ZkAuthProblem)
    return Response(exc.body, exc.status_code, dict(exc.headers or {}), PROBLEM_JSON)


class ZkAuthDependency:
    """``Depends(ZkAuthDependency(tokens))`` yields the token's
    :class:`~zkauth.tokens.TokenClaims`, or ends the request with the refusal.

    The headers are declared as parameters, so they appear in the OpenAPI document of every
    protected operation.
    """

    def __init__(self, tokens: ZkAuthTokens) -> None:
        self.tokens = tokens

    def install(self, app: FastAPI) -> None:
        """Register :func:`zkauth_problem_handler`, so refusals are ``problem+json`` bytes.

        It is registered for :class:`ZkAuthProblem` only, so it takes precedence over an
        app's own ``HTTPException`` handler without replacing it.
        """
        app.add_exception_handler(ZkAuthProblem, zkauth_problem_handler)

    async def __call__(
        self,
        authorization: Annotated[str | None, Header()] = None,
        x_channel_binding: Annotated[str | None, Header()] = None,
    ) -> TokenClaims:
        try:
            return await self.tokens.authenticate(authorization, x_channel_binding)
        except (Refused, ServiceUnavailable) as error:
            status, headers, body = answer_for(error)
            raise ZkAuthProblem(status, headers, body) from None

    def __repr__(self) -> str:
        return f"ZkAuthDependency({self.tokens!r})"
