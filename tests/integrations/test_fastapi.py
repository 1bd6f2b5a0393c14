"""The FastAPI dependency against a real zkauth server: real logins, real keys, real tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.integrations.apps import get, orders_app
from tests.integrations.conftest import Rig, StartServer, ZkServer
from zkauth.client import ServerError, Session
from zkauth.integrations import ZkAuthDependency
from zkauth.server.problems import PROBLEM_JSON, REFUSED_BODY, WWW_AUTHENTICATE

Headers = dict[str, str]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def with_token(session: Session, token: str) -> Headers:
    return {**session.headers(), "Authorization": f"Bearer {token}"}


def forged_subject(session: Session) -> Headers:
    """The payload rewritten to another subject, the signature kept."""
    header, payload, signature = session.access_token.split(".")
    claims = json.loads(unb64url(payload))
    claims["sub"] = "mallory"
    forged = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return with_token(session, f"{header}.{forged}.{signature}")


def flipped_signature(session: Session) -> Headers:
    """One signature byte changed (in the middle: the last character only carries padding)."""
    header, payload, signature = session.access_token.split(".")
    raw = bytearray(unb64url(signature))
    raw[10] ^= 0x01
    return with_token(session, f"{header}.{payload}.{b64url(bytes(raw))}")


def unsigned(session: Session) -> Headers:
    """``alg: none``, the classic: must never reach a signature routine."""
    _, payload, _ = session.access_token.split(".")
    header = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
    return with_token(session, f"{header}.{payload}.")


async def expired(server: ZkServer, start: StartServer) -> Headers:
    """A token from a zkauth deployment whose clock says yesterday (same signing key)."""
    past = datetime.now(UTC) - timedelta(days=1)
    server.clock.set(past)
    return (await server.session("expired-client")).headers()


async def default_audience(server: ZkServer, start: StartServer) -> Headers:
    """The server's own audience ("default"), not the integrator's ("orders")."""
    return (await server.session("default-client", audience=None)).headers()


async def foreign_issuer_key(server: ZkServer, start: StartServer) -> Headers:
    """A perfectly valid token of ANOTHER zkauth deployment (its key is unknown here)."""
    other = await start("other")
    return (await other.session("foreign-client")).headers()


SessionCase = Callable[[Session], Headers]
ServerCase = Callable[[ZkServer, StartServer], Awaitable[Headers]]

SESSION_CASES: dict[str, SessionCase] = {
    "no headers": lambda s: {},
    "binding without token": lambda s: {"X-Channel-Binding": s.headers()["X-Channel-Binding"]},
    "token without binding": lambda s: {"Authorization": s.headers()["Authorization"]},
    "wrong binding": lambda s: {**s.headers(), "X-Channel-Binding": b64(os.urandom(32))},
    "undecodable binding": lambda s: {**s.headers(), "X-Channel-Binding": "not base64!"},
    "urlsafe binding": lambda s: {
        **s.headers(),
        "X-Channel-Binding": base64.urlsafe_b64encode(s.channel_binding).decode().rstrip("="),
    },
    "basic scheme": lambda s: {**s.headers(), "Authorization": f"Basic {s.access_token}"},
    "empty bearer": lambda s: {**s.headers(), "Authorization": "Bearer "},
    "garbage token": lambda s: with_token(s, "garbage"),
    "garbage jws": lambda s: with_token(s, "a.b.c"),
    "huge token": lambda s: with_token(s, "a" * 10_000 + ".b.c"),
    "forged subject": forged_subject,
    "flipped signature": flipped_signature,
    "alg none": unsigned,
}
SERVER_CASES: dict[str, ServerCase] = {
    "expired": expired,
    "wrong audience": default_audience,
    "unknown key": foreign_issuer_key,
}


@pytest.fixture
async def session(server: ZkServer) -> Session:
    return await server.session("billing-agent")


async def test_valid_token_and_binding_is_admitted_with_its_claims(
    rig: Rig, session: Session
) -> None:
    response = await get(orders_app(rig.tokens()), headers=session)
    assert response.status_code == 200, response.text
    claims = response.json()["claims"]
    assert claims["sub"] == "billing-agent"
    assert claims["aud"] == "orders"
    assert claims["cnf"] == b64url(hashlib.sha256(session.channel_binding).digest())
    assert datetime.fromisoformat(claims["exp"]) > datetime.now(UTC)


async def test_the_server_refuses_an_audience_it_does_not_issue(
    start_server: StartServer,
) -> None:
    """The "orders" tokens here exist only because the zkauth settings list that audience."""
    server = await start_server("strict")
    with pytest.raises(ServerError, match="unknown targetAudience"):
        await server.session("svc", audience="payments")


@pytest.mark.parametrize("case", SESSION_CASES, ids=list(SESSION_CASES))
async def test_request_refusals_are_identical(rig: Rig, session: Session, case: str) -> None:
    response = await get(orders_app(rig.tokens()), headers=SESSION_CASES[case](session))
    assert_refused(response)


@pytest.mark.parametrize("case", SERVER_CASES, ids=list(SERVER_CASES))
async def test_token_refusals_are_identical(
    rig: Rig, server: ZkServer, start_server: StartServer, case: str
) -> None:
    headers = await SERVER_CASES[case](server, start_server)
    response = await get(orders_app(rig.tokens()), headers=headers)
    assert_refused(response)


async def test_refusal_is_byte_identical_to_the_zkauth_servers_own(
    rig: Rig, server: ZkServer
) -> None:
    ours = await get(orders_app(rig.tokens()))
    theirs = await server.call("GET", "/v1/resources/x")
    assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
    for name in ("content-type", "www-authenticate"):
        assert ours.headers[name] == theirs.headers[name]


async def test_a_token_for_the_servers_own_audience_works_there_not_here(
    rig: Rig, server: ZkServer
) -> None:
    """Confused deputy: each audience's tokens are accepted by that audience only."""
    default = await server.session("svc", audience=None)
    orders = await server.session("svc2", audience="orders")
    api = orders_app(rig.tokens())
    assert (await get(api, headers=default)).status_code == 401
    assert (await get(api, headers=orders)).status_code == 200
    own = await server.call("GET", "/v1/resources/x", headers=default.headers())
    assert own.status_code == 200
    assert (
        await server.call("GET", "/v1/resources/x", headers=orders.headers())
    ).status_code == 401


async def test_an_integrator_of_the_default_audience_accepts_default_tokens(
    rig: Rig, server: ZkServer
) -> None:
    default = await server.session("svc", audience=None)
    response = await get(orders_app(rig.tokens("default")), headers=default)
    assert response.status_code == 200
    assert response.json()["claims"]["aud"] == "default"


async def test_unprotected_routes_stay_open(rig: Rig) -> None:
    response = await get(orders_app(rig.tokens()), "/health")
    assert response.status_code == 200
    assert rig.net.count() == 0  # nothing protected was asked for, so no keys were needed


async def test_without_install_fastapi_still_refuses_identically(
    rig: Rig, session: Session
) -> None:
    """The handler is optional: FastAPI's own wraps the same problem in ``detail``."""
    api = orders_app(rig.tokens(), install=False)
    first = await get(api)
    second = await get(api, headers={**session.headers(), "X-Channel-Binding": b64(bytes(32))})
    assert first.status_code == second.status_code == 401
    assert first.content == second.content
    assert first.json() == {"detail": json.loads(REFUSED_BODY)}
    assert first.headers["www-authenticate"] == WWW_AUTHENTICATE
    assert (await get(api, headers=session)).status_code == 200


async def test_keys_unavailable_is_a_503_problem(rig: Rig, session: Session) -> None:
    rig.net.down = True
    response = await get(orders_app(rig.tokens()), headers=session)
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "unavailable"
    assert "www-authenticate" not in response.headers


def test_dependency_repr_names_issuer_and_audience(rig: Rig) -> None:
    assert repr(ZkAuthDependency(rig.tokens())) == (
        "ZkAuthDependency(ZkAuthTokens(issuer='zkauth', audience='orders'))"
    )


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.content == REFUSED_BODY
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == WWW_AUTHENTICATE
