"""The integrator's side: a small FastAPI API and a bare ASGI app, protected by zkauth tokens.

No ``from __future__ import annotations`` here: FastAPI reads the route signatures at runtime,
and the dependency instance is a local of the factory.
"""

import json
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from zkauth.client import Session
from zkauth.integrations import TokenClaims, ZkAuthDependency, ZkAuthTokens

API = "http://orders.test"


def claims_json(claims: TokenClaims) -> dict[str, Any]:
    return {
        "sub": claims.subject,
        "aud": claims.audience,
        "jti": claims.jti,
        "exp": claims.expires_at.isoformat(),
        "cnf": claims.cnf_thumbprint,
    }


def orders_app(tokens: ZkAuthTokens, *, install: bool = True) -> FastAPI:
    """The integrator's API: ``/orders`` needs a token, ``/health`` does not."""
    app = FastAPI()
    zkauth = ZkAuthDependency(tokens)
    if install:
        zkauth.install(app)

    @app.get("/orders")
    async def orders(claims: Annotated[TokenClaims, Depends(zkauth)]) -> dict[str, Any]:
        return {"orders": [], "claims": claims_json(claims)}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app that answers with the claims the middleware left in the scope."""
    assert scope["type"] == "http"
    found = scope.get("state", {}).get("zkauth")
    document = {
        "path": scope["path"],
        "claims": None if found is None else claims_json(found),
        "state_keys": sorted(scope.get("state", {})),
    }
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def get(
    app: Any, path: str = "/orders", headers: dict[str, str] | Session | None = None
) -> httpx.Response:
    """``GET path`` on an ASGI ``app``; a ``Session`` sends its token and binding."""
    sent = headers.headers() if isinstance(headers, Session) else headers
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API) as http:
        return await http.get(path, headers=sent)
