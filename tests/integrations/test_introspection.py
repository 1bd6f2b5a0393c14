"""Introspection: revocations seen at once, and only asked about tokens that passed locally."""

from __future__ import annotations

import httpx
import pytest

from tests.integrations.apps import get, orders_app
from tests.integrations.conftest import (
    ADMIN_TOKEN,
    INTROSPECT_URL,
    INTROSPECTION_TOKEN,
    Rig,
    ZkServer,
)
from zkauth.client import Session
from zkauth.errors import ConfigurationError
from zkauth.integrations import Introspection
from zkauth.integrations._responses import UNAVAILABLE_BODY
from zkauth.server.problems import REFUSED_BODY

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def session(server: ZkServer) -> Session:
    return await server.session("billing-agent")


async def test_a_revoked_client_is_refused_at_once(
    rig: Rig, server: ZkServer, session: Session
) -> None:
    checked = orders_app(rig.tokens(introspection=INTROSPECTION_TOKEN))
    unchecked = orders_app(rig.tokens())
    assert (await get(checked, headers=session)).status_code == 200
    revoked = await server.call("DELETE", "/v1/clients/billing-agent", headers=ADMIN)
    assert revoked.status_code == 204
    response = await get(checked, headers=session)
    assert (response.status_code, response.content) == (401, REFUSED_BODY)
    # Why introspection exists: the signature alone still verifies until the token expires.
    assert (await get(unchecked, headers=session)).status_code == 200


async def test_an_admin_credential_may_introspect_too(rig: Rig, session: Session) -> None:
    api = orders_app(rig.tokens(introspection=ADMIN_TOKEN))
    assert (await get(api, headers=session)).status_code == 200


async def test_introspection_is_asked_only_after_local_checks_pass(
    rig: Rig, session: Session
) -> None:
    api = orders_app(rig.tokens(introspection=INTROSPECTION_TOKEN))
    wrong_binding = {**session.headers(), "X-Channel-Binding": "AAAA"}
    for headers in ({}, {"Authorization": "Bearer garbage"}, wrong_binding):
        assert (await get(api, headers=headers)).status_code == 401
    assert rig.net.count("/v1/introspect") == 0
    assert (await get(api, headers=session)).status_code == 200
    assert rig.net.count("/v1/introspect") == 1


async def test_unreachable_introspection_fails_closed(rig: Rig, session: Session) -> None:
    api = orders_app(rig.tokens(introspection=INTROSPECTION_TOKEN))
    assert (await get(api, headers=session)).status_code == 200  # keys now cached
    rig.net.down = True
    response = await get(api, headers=session)
    assert (response.status_code, response.content) == (503, UNAVAILABLE_BODY)


async def test_a_refused_introspection_credential_fails_closed(rig: Rig, session: Session) -> None:
    """A 401 from zkauth means OUR credential is wrong: a 503, not the client's refusal."""
    api = orders_app(rig.tokens(introspection="not-" + INTROSPECTION_TOKEN))
    response = await get(api, headers=session)
    assert (response.status_code, response.content) == (503, UNAVAILABLE_BODY)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"active": "true"}),
        httpx.Response(200, json=[True]),
        httpx.Response(500),
    ],
    ids=["not json", "active as text", "not an object", "server error"],
)
async def test_an_answer_that_is_not_rfc_7662_fails_closed(
    rig: Rig, session: Session, answer: httpx.Response
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    async with httpx.AsyncClient(transport=transport) as http:
        asker = Introspection(INTROSPECT_URL, INTROSPECTION_TOKEN, http=http)
        tokens = rig.tokens()
        tokens.introspection = asker
        response = await get(orders_app(tokens), headers=session)
    assert (response.status_code, response.content) == (503, UNAVAILABLE_BODY)


async def test_an_answer_about_another_subject_is_refused(rig: Rig, session: Session) -> None:
    answer = {"active": True, "sub": "someone-else"}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    async with httpx.AsyncClient(transport=transport) as http:
        tokens = rig.tokens()
        tokens.introspection = Introspection(INTROSPECT_URL, INTROSPECTION_TOKEN, http=http)
        response = await get(orders_app(tokens), headers=session)
    assert (response.status_code, response.content) == (401, REFUSED_BODY)


async def test_the_request_is_rfc_7662(session: Session) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"active": False})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        asker = Introspection(INTROSPECT_URL, INTROSPECTION_TOKEN, http=http)
        assert await asker.active(session.access_token) is None
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == INTROSPECT_URL
    assert request.headers["authorization"] == f"Bearer {INTROSPECTION_TOKEN}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == f"token={session.access_token}".encode()


async def test_the_credential_stays_out_of_repr() -> None:
    asker = Introspection(INTROSPECT_URL, INTROSPECTION_TOKEN)
    assert INTROSPECTION_TOKEN not in repr(asker)
    await asker.aclose()


@pytest.mark.parametrize(("url", "credential"), [("file:///x", "c" * 40), (INTROSPECT_URL, "")])
def test_unworkable_settings_are_refused(url: str, credential: str) -> None:
    with pytest.raises(ConfigurationError):
        Introspection(url, credential)
