"""Plain ASGI middleware that admits only requests carrying a valid zkauth access token.

For any ASGI framework (Starlette, Litestar, Quart, Django's ASGI handler, ...)::

    app = ZkAuthMiddleware(app, tokens, exempt_paths=("/health",))

The claims reach the app as ``scope["state"]["zkauth"]`` (``request.state.zkauth`` in
Starlette and FastAPI). Refusals are answered here, before the app sees the request: the same
401 problem as the zkauth server's own resources, or a 503 when no usable keys are available.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from zkauth.errors import Refused, ServiceUnavailable
from zkauth.integrations._responses import PROBLEM_JSON, answer_for
from zkauth.integrations.core import ZkAuthTokens

#: Key of the claims in ``scope["state"]``.
STATE_KEY: Final = "zkauth"
#: WebSocket close code for a refused handshake when the server cannot send an HTTP denial.
_POLICY_VIOLATION: Final = 1008


class ZkAuthMiddleware:
    """Verifies every HTTP request and WebSocket handshake, except on ``exempt_paths``.

    ``exempt_paths`` match ``scope["path"]`` exactly (no prefixes, no trailing-slash variants),
    so an exemption can never cover more than the paths listed. WebSockets are checked too:
    leaving them out would silently expose every WebSocket route. Lifespan and other scope
    types pass through.
    """

    def __init__(
        self, app: ASGIApp, tokens: ZkAuthTokens, *, exempt_paths: Iterable[str] = ("/health",)
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        authorization, binding = _credentials(scope)
        try:
            claims = await self.tokens.authenticate(authorization, binding)
        except (Refused, ServiceUnavailable) as error:
            if kind == "http":
                await _answer(send, error, "http.response")
            else:
                await _deny_websocket(scope, receive, send, error)
            return
        scope.setdefault("state", {})[STATE_KEY] = claims
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return f"ZkAuthMiddleware({self.app!r}, {self.tokens!r})"


def _credentials(scope: Scope) -> tuple[str | None, str | None]:
    """``Authorization`` and ``X-Channel-Binding``; a header sent twice counts as absent (and
    is refused), so no proxy and app can disagree on which copy counts."""
    found: dict[bytes, list[bytes]] = {b"authorization": [], b"x-channel-binding": []}
    for name, value in scope.get("headers", ()):
        values = found.get(name.lower())
        if values is not None:
            values.append(value)
    authorization, binding = (
        values[0].decode("latin-1") if len(values) == 1 else None for values in found.values()
    )
    return authorization, binding


async def _answer(send: Send, error: Refused | ServiceUnavailable, prefix: str) -> None:
    status, headers, body = answer_for(error)
    raw_headers = [
        (b"content-type", PROBLEM_JSON.encode("ascii")),
        (b"content-length", str(len(body)).encode("ascii")),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        ),
    ]
    await send({"type": f"{prefix}.start", "status": status, "headers": raw_headers})
    await send({"type": f"{prefix}.body", "body": body})


async def _deny_websocket(
    scope: Scope, receive: Receive, send: Send, error: Refused | ServiceUnavailable
) -> None:
    """Refuse the handshake: with the HTTP problem where the server supports the ASGI
    "websocket.http.response" extension, else by closing (servers answer that with 403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client went away first
    if "websocket.http.response" in scope.get("extensions", {}):
        await _answer(send, error, "websocket.http.response")
    else:
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
