"""The plain ASGI middleware around a bare ASGI app and a Starlette app, with real tokens."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from tests.integrations.apps import API, echo_app, get, orders_app
from tests.integrations.conftest import Rig, ZkServer
from zkauth.client import Session
from zkauth.integrations import ZkAuthMiddleware
from zkauth.integrations._responses import UNAVAILABLE_BODY
from zkauth.server.problems import PROBLEM_JSON, REFUSED_BODY, WWW_AUTHENTICATE


@pytest.fixture
async def session(server: ZkServer) -> Session:
    return await server.session("billing-agent")


@pytest.fixture
def app(rig: Rig) -> ZkAuthMiddleware:
    return ZkAuthMiddleware(echo_app, rig.tokens())


async def test_a_valid_request_reaches_the_app_with_its_claims(
    app: ZkAuthMiddleware, session: Session
) -> None:
    response = await get(app, "/anything", headers=session)
    assert response.status_code == 200
    document = response.json()
    assert document["claims"]["sub"] == "billing-agent"
    assert document["claims"]["aud"] == "orders"
    assert document["state_keys"] == ["zkauth"]  # the state dict was created


async def test_existing_state_is_kept(rig: Rig, session: Session) -> None:
    """Lifespan state arrives as ``scope["state"]``: the claims are added beside it."""

    async def with_lifespan_state(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = {"db": "pool"}
        await ZkAuthMiddleware(echo_app, rig.tokens())(scope, receive, send)

    response = await get(with_lifespan_state, headers=session)
    assert response.json()["state_keys"] == ["db", "zkauth"]


async def test_refusals_are_the_same_401_as_everywhere(
    app: ZkAuthMiddleware, rig: Rig, server: ZkServer, session: Session
) -> None:
    wrong_binding = {**session.headers(), "X-Channel-Binding": "AAAA"}
    responses = [
        await get(app),
        await get(app, headers={"Authorization": "Bearer garbage"}),
        await get(app, headers=wrong_binding),
        await get(orders_app(rig.tokens()), headers=wrong_binding),
        await server.call("GET", "/v1/resources/x"),
    ]
    for response in responses:
        assert response.status_code == 401
        assert response.content == REFUSED_BODY
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["www-authenticate"] == WWW_AUTHENTICATE
        assert response.headers["content-length"] == str(len(REFUSED_BODY))


async def test_a_header_sent_twice_is_refused(app: ZkAuthMiddleware, session: Session) -> None:
    headers = list(session.headers().items())
    twice = [*headers, ("Authorization", "Bearer garbage")]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=API) as http:
        assert (await http.get("/x", headers=headers)).status_code == 200
        assert (await http.get("/x", headers=twice)).status_code == 401


async def test_only_the_exact_exempt_paths_are_open(rig: Rig) -> None:
    app = ZkAuthMiddleware(echo_app, rig.tokens(), exempt_paths=["/health", "/metrics"])
    assert (await get(app, "/health")).status_code == 200
    assert (await get(app, "/metrics")).json()["claims"] is None
    for path in ("/health/", "/health/x", "/HEALTH", "/metrics.json", "/"):
        assert (await get(app, path)).status_code == 401, path
    assert rig.net.count() == 0  # neither exempt paths nor token-less requests need keys


async def test_no_usable_keys_is_a_503(app: ZkAuthMiddleware, rig: Rig, session: Session) -> None:
    rig.net.down = True
    response = await get(app, headers=session)
    assert (response.status_code, response.content) == (503, UNAVAILABLE_BODY)
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_starlette_sees_the_claims_as_request_state(rig: Rig, session: Session) -> None:
    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.state.zkauth.subject})

    app = ZkAuthMiddleware(Starlette(routes=[Route("/whoami", whoami)]), rig.tokens())
    response = await get(app, "/whoami", headers=session)
    assert response.json() == {"sub": "billing-agent"}


async def test_lifespan_passes_through(rig: Rig) -> None:
    seen: list[str] = []

    async def lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await ZkAuthMiddleware(lifespan_app, rig.tokens())({"type": "lifespan"}, receive_none, noop)
    assert seen == ["lifespan"]
    assert rig.net.count() == 0


class WebSocketClient:
    """Just enough of an ASGI server to run a WebSocket handshake against the middleware."""

    def __init__(self, headers: dict[str, str], *, denial_extension: bool = False) -> None:
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/ws",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "extensions": {"websocket.http.response": {}} if denial_extension else {},
        }
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return {"type": "websocket.connect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": scope["state"]["zkauth"].subject})


async def test_websocket_handshakes_are_checked_too(rig: Rig, session: Session) -> None:
    app = ZkAuthMiddleware(websocket_app, rig.tokens())
    accepted = WebSocketClient(session.headers())
    await app(accepted.scope, accepted.receive, accepted.send)
    assert accepted.sent == [{"type": "websocket.accept", "subprotocol": "billing-agent"}]

    closed = WebSocketClient({})
    await app(closed.scope, closed.receive, closed.send)
    assert closed.sent == [{"type": "websocket.close", "code": 1008}]

    denied = WebSocketClient({}, denial_extension=True)
    await app(denied.scope, denied.receive, denied.send)
    start, body = denied.sent
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 401)
    assert (b"www-authenticate", WWW_AUTHENTICATE.encode()) in start["headers"]
    assert body == {"type": "websocket.http.response.body", "body": REFUSED_BODY}


async def test_a_websocket_client_gone_before_the_handshake_gets_nothing(rig: Rig) -> None:
    client = WebSocketClient({})

    async def disconnect() -> Message:
        return {"type": "websocket.disconnect", "code": 1001}

    await ZkAuthMiddleware(websocket_app, rig.tokens())(client.scope, disconnect, client.send)
    assert client.sent == []


def test_repr_names_the_app_and_tokens(app: ZkAuthMiddleware) -> None:
    assert "ZkAuthTokens(issuer='zkauth', audience='orders')" in repr(app)


async def receive_none() -> Message:
    raise AssertionError("not expected to receive")


async def noop(message: Message) -> None:
    raise AssertionError("not expected to send")
